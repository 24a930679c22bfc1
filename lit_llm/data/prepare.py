"""`lit-llm data prepare` and `lit-llm data merge`: raw sources -> filtered, deduplicated, tokenized shards.

    lit-llm data prepare --input corpus/ --tokenizer tok --output data/mine
    lit-llm data prepare --input '[corpus/, "code:src/"]' --val_input held_out.txt --tokenizer tok --output d
    lit-llm data prepare --config configs/data/default.yaml --tokenizer tok --output data/default
    # scale-out (scripts/slurm/data_prepare_array.sbatch): every task its share, then one merge
    lit-llm data prepare --config X.yaml --tokenizer tok --output data/x --num_tasks 8 --task_index 3
    lit-llm data merge --output data/x

    from lit_llm.data.prepare import prepare_dataset
    manifest = prepare_dataset(input=["corpus/"], tokenizer="tok", output="data/mine")
    manifest = prepare_dataset(PrepareConfig(...), output="data/other")   # a config, fields replaced

Stages (docs/data_pipeline.md): read (`sources`) -> cut very long documents into blocks -> quality
filters (`filters`, each source's filter set) -> benchmark decontamination (`decontaminate`: MMLU,
GSM8K and HumanEval test items in `lit-llm evaluate`'s data folder) -> exact hash, split hash and
MinHash band keys (`dedup`) -> tokenize + eos; all in worker processes, chunk by chunk, resumable
(`chunks`) -> exact and near dedup across everything, train/val split, shards, manifest (`merge`).
Every setting is a field of `PrepareConfig` (prepare_config.py); the output folder's layout and
checks are in output_folder.py.

The output folder holds manifest.json, train/ and val/ shards, tokenizer/ (a copy of the tokenizer, so
the folder is self-contained), rejected/ (samples of what each filter and the decontamination
removed), prepare.log (skipped and malformed input as file:line: reason) and, while running, .work/
(chunk files and the benchmark n-gram index; removed after the merge unless keep_parts). The
recipe's sha256 and the tokenizer's are stored: a re-run with the same ones resumes or finds the
work done, a run with other ones refuses to mix into the folder.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from lit_llm.command_options import command_options
from lit_llm.data.chunks import run_task
from lit_llm.data.merge import merge_dataset
from lit_llm.data.output_folder import WORK, claim_folder, folder_lock
from lit_llm.data.prepare_config import PrepareConfig, build_recipe
from lit_llm.errors import UserError
from lit_llm.tokenizer import load_tokenizer


def default_workers() -> int:
    """CPU cores this process may use (the SLURM allocation, a taskset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def task_from_env(num_tasks: int | None, task_index: int | None) -> tuple[int, int]:
    """(num_tasks, task_index), defaulting from a SLURM array's environment, else (1, 0)."""
    env = os.environ
    if num_tasks is None:
        num_tasks = int(env.get("SLURM_ARRAY_TASK_COUNT", 1))
    if task_index is None:
        task_index = (
            int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))
            if "SLURM_ARRAY_TASK_ID" in env and num_tasks > 1
            else 0
        )
    if num_tasks < 1 or not 0 <= task_index < num_tasks:
        raise UserError(
            f"task_index must be in [0, num_tasks) and num_tasks >= 1, got {task_index} of {num_tasks}"
        )
    return num_tasks, task_index


def tokenizer_folder(name: str) -> Path:
    """`--tokenizer`: a folder, or a Hugging Face Hub model id (owner/name) whose tokenizer files are fetched
    into the Hugging Face cache (`lit_llm.hf_import.resolve_model`; a cached copy is used offline)."""
    path = Path(name)
    if path.exists() or path.is_absolute() or name.count("/") != 1:
        return path  # load_tokenizer says what is wrong with a missing folder
    from lit_llm.hf_import import resolve_model
    from lit_llm.tokenizer import HF_TOKENIZER_FILES

    return resolve_model(name, files=HF_TOKENIZER_FILES)


def prepare_dataset(config: PrepareConfig | None = None, /, **options) -> dict:
    """Prepare a shard folder; return its manifest (for task i of n > 1, that task's summary).

    Takes a `PrepareConfig`, or its fields as keyword arguments (the flags of `lit-llm data prepare`),
    or both (the keywords replace the config's fields)."""
    cfg = dataclasses.replace(config, **options) if config is not None else PrepareConfig(**options)
    if cfg.tokenizer is None or cfg.output is None:
        raise UserError("--tokenizer DIR and --output DIR are required")
    started = time.perf_counter()
    tok = load_tokenizer(tokenizer_folder(cfg.tokenizer))
    recipe = build_recipe(cfg)
    note = recipe.decontaminate.note()
    if note:
        print(note)
    num_tasks, task_index = task_from_env(cfg.num_tasks, cfg.task_index)
    if cfg.overwrite and num_tasks > 1:
        raise UserError(
            "--overwrite with --num_tasks > 1 would let tasks delete each other's work; "
            "empty the folder first"
        )
    out = Path(cfg.output)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: --output names a file, not a folder; choose another --output")
    with folder_lock(out, "prepare" if num_tasks == 1 else f"task-{task_index}"):
        done = claim_folder(out, recipe, tok, cfg.overwrite)
        if done is not None:
            print(f"{out}: already prepared with this recipe and tokenizer; nothing to do")
            return done
        workers = default_workers() if cfg.num_workers is None else cfg.num_workers
        summary = run_task(recipe, tok, out / WORK, task_index, num_tasks, workers, cfg.strict, cfg.progress)
        if num_tasks > 1:
            print(
                f"task {task_index + 1}/{num_tasks} done in {time.perf_counter() - started:.0f} s; when every "
                f"task is done: lit-llm data merge --output {out}"
            )
            return summary
        manifest = merge_dataset(out, num_tasks=1, keep_parts=cfg.keep_parts, progress=cfg.progress)
    if cfg.progress:
        _print_summary(manifest, out, f"prepared {out}", started)
    return manifest


@command_options(PrepareConfig)
def prepare_command(**options) -> None:
    """Turn raw sources into a folder of filtered, deduplicated, tokenized shards with a manifest."""
    prepare_dataset(**options)


def merge_command(
    output: str, num_tasks: int | None = None, keep_parts: bool = False, progress: bool = True
) -> None:
    """Merge the tasks of a scale-out `lit-llm data prepare` run (cross-task dedup, split, shards, manifest).

    Args:
        output: The output folder the tasks wrote to.
        num_tasks: Merge the run with this many tasks (default: the newest complete set of tasks).
        keep_parts: Keep the per-task chunk files in OUTPUT/.work after the merge.
        progress: Show progress bars and print a summary.
    """
    started = time.perf_counter()
    out = Path(output)
    if not out.is_dir():
        raise UserError(f"{out}: no such data folder")
    with folder_lock(out, "prepare"):
        manifest = merge_dataset(out, num_tasks=num_tasks, keep_parts=keep_parts, progress=progress)
    if progress:
        _print_summary(manifest, out, f"merged {out}", started)


def _print_summary(manifest: dict, out: Path, done: str, started: float) -> None:
    from lit_llm.data.summary import summarize

    print(summarize(manifest, out))
    print(f"{done} in {time.perf_counter() - started:.1f} s")


def load_recipe(path: str | os.PathLike) -> dict:
    """A recipe YAML (configs/data/*.yaml) as typed keyword arguments for `prepare_dataset`, parsed
    exactly as `lit-llm data prepare --config PATH` parses it (only the keys the file sets)."""
    import yaml
    from jsonargparse import ArgumentParser

    try:
        keys = set(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"{path}: cannot read the recipe ({err})") from err
    parser = ArgumentParser(exit_on_error=False)
    parser.add_function_arguments(prepare_command)
    try:
        cfg = parser.instantiate_classes(parser.parse_path(str(path)))
    except Exception as err:  # jsonargparse reports bad keys and types in several exception types
        raise UserError(f"{path}: not a valid data recipe ({' '.join(str(err).split())[:300]})") from err
    return {key: cfg[key] for key in keys}
