"""`lit-llm data prepare` and `lit-llm data merge`: raw sources -> filtered, deduplicated, tokenized shards.

    lit-llm data prepare --input corpus/ --tokenizer tok --output data/mine
    lit-llm data prepare --input '[corpus/, "code:src/"]' --val_input held_out.txt --tokenizer tok --output d
    lit-llm data prepare --config configs/data/default.yaml --tokenizer tok --output data/default
    # scale-out (scripts/slurm/data_prepare_array.sbatch): every task its share, then one merge
    lit-llm data prepare --config X.yaml --tokenizer tok --output data/x --num_tasks 8 --task_index 3
    lit-llm data merge --output data/x

    from lit_llm.data.prepare import prepare_dataset
    manifest = prepare_dataset(input=["corpus/"], tokenizer="tok", output="data/mine")

Stages (docs/data_pipeline.md): read (`sources`) -> cut very long documents into blocks -> quality
filters (`filters`, each source's filter set) -> exact hash, split hash and MinHash band keys
(`dedup`) -> tokenize + eos; all in worker processes, chunk by chunk, resumable (`task`) -> exact and
near dedup across everything, train/val split, shards, manifest (`merge`).

The output folder holds manifest.json, train/ and val/ shards, tokenizer/ (a copy of the tokenizer, so
the folder is self-contained), rejected/ (samples of what each filter removed), prepare.log (skipped
and malformed input as file:line: reason) and, while running, .work/ (chunk files; removed after
the merge unless keep_parts). The recipe's sha256 and the tokenizer's are stored: a re-run with the
same ones resumes or finds the work done, a run with other ones refuses to mix into the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import shutil
import socket
import time
from pathlib import Path

from lit_llm.data.chunks import run_task
from lit_llm.data.dedup import DedupConfig
from lit_llm.data.filters import FilterConfig
from lit_llm.data.merge import LOG, RECIPE, REJECTED, STATE, WORK, merge_dataset
from lit_llm.data.recipe import (
    Recipe,
    Source,
    SplitConfig,
    absolute_paths,
    describe_change,
    natural_sources,
    resolve_sources,
    to_source,
)
from lit_llm.data.shards import MANIFEST_NAME, Shard, atomic_write_bytes, token_dtype
from lit_llm.data.sources import source_files
from lit_llm.errors import UserError

OUTPUT_ENTRIES = (MANIFEST_NAME, "train", "val", "tokenizer", REJECTED, LOG, WORK)


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


def build_recipe(
    input=None,
    sources=None,
    val_input=None,
    filters=None,
    dedup=None,
    split=None,
    shard_tokens: int = 50_000_000,
    chunk_chars: int = 32_000_000,
    text_field: str = "text",
) -> Recipe:
    """Resolve inputs or recipe sources (+ validation input) into a `Recipe`; missing paths fail here."""
    if input and sources:
        raise UserError("give either --input or a recipe's sources, not both")
    if isinstance(input, str):
        input = [input]
    if isinstance(val_input, str):
        val_input = [val_input]
    srcs = natural_sources(list(input), text_field) if input else [to_source(s) for s in sources or []]
    if val_input:
        if any(s.name == "val" for s in srcs):
            raise UserError("a source is already named 'val'; rename it to use --val_input")
        srcs.append(Source(paths=list(val_input), name="val", split="val", text_field=text_field))
    resolved, skipped = resolve_sources(srcs)
    if not resolved and skipped:
        raise UserError(
            f"no sources: every source is optional and missing ({', '.join(s['name'] for s in skipped)})"
        )
    resolved = [absolute_paths(s) for s in resolved]
    for src in resolved:
        if src.kind != "hf":
            source_files(src)  # a missing path or an empty directory is a UserError now, not mid-run
    return Recipe(
        sources=resolved,
        filters=filters or FilterConfig(),
        dedup=dedup or DedupConfig(),
        split=split or SplitConfig(),
        shard_tokens=shard_tokens,
        chunk_chars=chunk_chars,
        natural_weights=bool(input),
        skipped_sources=skipped,
    )


def _tokenizer_info(tok) -> dict:
    return {
        "path": "tokenizer",
        "source_path": str(Path(tok.path).resolve()),
        "sha256": tok.sha256,
        "eos_id": tok.eos_id,
        "pad_id": tok.pad_id,
        "vocab_size": tok.vocab_size,
    }


def _existing(out: Path) -> dict | None:
    """{"recipe_sha256", "recipe", "tokenizer"} of what the folder was prepared with, or None."""
    for path in (out / MANIFEST_NAME, out / WORK / STATE):
        try:
            data = json.loads(path.read_text())
            return {
                "recipe_sha256": data["recipe_sha256"],
                "recipe": data.get("config") or data.get("recipe"),
                "tokenizer": data["tokenizer"],
            }
        except (OSError, ValueError, KeyError):
            continue
    return None


def _complete(out: Path, recipe_sha: str) -> dict | None:
    """The manifest when the folder is finished for this recipe and every shard is whole, else None."""
    try:
        data = json.loads((out / MANIFEST_NAME).read_text())
        if data.get("recipe_sha256") != recipe_sha or (out / WORK).exists():
            return None
        for entry in data["shards"]:
            shard = Shard(out / entry["file"])
            if (shard.num_tokens, shard.num_documents) != (entry["num_tokens"], entry["num_documents"]):
                return None
    except (OSError, ValueError, KeyError, UserError):
        return None
    return data


LOCK_PREFIX = ".lock-"


@contextlib.contextmanager
def folder_lock(out: Path, name: str):
    """Hold OUT/.lock-<name> (flock) while writing: a second writer of the same part is refused at once."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{LOCK_PREFIX}{name}"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            why = f"another `lit-llm data prepare`/`merge` is writing this folder ({holder})"
            raise UserError(f"{out}: {why}; wait for it or choose another --output") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def claim_folder(out: Path, recipe: Recipe, tok, overwrite: bool) -> dict | None:
    """Check the output folder against this recipe and tokenizer and record them in it.

    Returns the manifest when the folder is already complete for them (nothing to do)."""
    sha = recipe.sha256()
    old = _existing(out)
    entries = [p for p in out.iterdir() if not p.name.startswith(LOCK_PREFIX)] if out.is_dir() else []
    if entries and old is None and not (out / WORK).exists():
        raise UserError(
            f"{out}: folder is not empty and holds no lit-llm data (no {MANIFEST_NAME}); "
            "choose another --output"
        )
    if old is not None and not overwrite:
        if old["tokenizer"].get("sha256") != tok.sha256:
            raise UserError(
                f"{out}: prepared with another tokenizer ({old['tokenizer'].get('source_path')}, sha256 "
                f"{str(old['tokenizer'].get('sha256'))[:12]}), not {tok.path} (sha256 {tok.sha256[:12]}); "
                "use a new --output or pass --overwrite true"
            )
        if old["recipe_sha256"] != sha:
            raise UserError(
                f"{out}: prepared with a different recipe (changed: "
                f"{describe_change(old['recipe'] or {}, recipe.to_dict())}); "
                "use a new --output or pass --overwrite true"
            )
        done = _complete(out, sha)
        if done is not None:
            return done
    if overwrite:
        for name in OUTPUT_ENTRIES:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    _write_state(out, recipe, tok, sha)
    return None


def _write_state(out: Path, recipe: Recipe, tok, sha: str) -> None:
    work = out / WORK
    work.mkdir(parents=True, exist_ok=True)
    state = {
        "recipe_sha256": sha,
        "recipe": recipe.to_dict(),
        "tokenizer": _tokenizer_info(tok),
        "dtype": token_dtype(tok.vocab_size).name,
    }
    atomic_write_bytes(work / STATE, lambda f: f.write(json.dumps(state, indent=1).encode()))
    atomic_write_bytes(work / RECIPE, lambda f: pickle.dump(recipe, f))
    copy = out / "tokenizer"
    copy.mkdir(exist_ok=True)
    for file in sorted(Path(tok.path).iterdir()):
        if file.is_file():
            data = file.read_bytes()
            atomic_write_bytes(copy / file.name, lambda f, data=data: f.write(data))


def prepare_dataset(
    input: list[str] | str | None = None,
    tokenizer: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    sources: list[Source | dict] | None = None,
    val_input: list[str] | str | None = None,
    filters: FilterConfig | None = None,
    dedup: DedupConfig | None = None,
    split: SplitConfig | None = None,
    shard_tokens: int = 50_000_000,
    chunk_chars: int = 32_000_000,
    text_field: str = "text",
    num_workers: int | None = None,
    num_tasks: int | None = None,
    task_index: int | None = None,
    strict: bool = False,
    overwrite: bool = False,
    keep_parts: bool = False,
    progress: bool = True,
) -> dict:
    """Prepare a shard folder; return its manifest (for task i of n > 1, that task's summary).

    Arguments are those of `prepare_command` (`lit-llm data prepare --help`); `sources` also takes
    plain `SourceSpec`s or dicts."""
    from lit_llm.tokenizer import load_tokenizer

    if tokenizer is None or output is None:
        raise UserError("--tokenizer DIR and --output DIR are required")
    started = time.perf_counter()
    tok = load_tokenizer(tokenizer)
    recipe = build_recipe(
        input, sources, val_input, filters, dedup, split, shard_tokens, chunk_chars, text_field
    )
    num_tasks, task_index = task_from_env(num_tasks, task_index)
    if overwrite and num_tasks > 1:
        raise UserError(
            "--overwrite with --num_tasks > 1 would let tasks delete each other's work; "
            "empty the folder first"
        )
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: --output names a file, not a folder; choose another --output")
    with folder_lock(out, "prepare" if num_tasks == 1 else f"task-{task_index}"):
        done = claim_folder(out, recipe, tok, overwrite)
        if done is not None:
            print(f"{out}: already prepared with this recipe and tokenizer; nothing to do")
            return done
        workers = default_workers() if num_workers is None else num_workers
        summary = run_task(recipe, tok, out / WORK, task_index, num_tasks, workers, strict, progress)
        if num_tasks > 1:
            print(
                f"task {task_index + 1}/{num_tasks} done in {time.perf_counter() - started:.0f} s; when every "
                f"task is done: lit-llm data merge --output {out}"
            )
            return summary
        manifest = merge_dataset(out, num_tasks=1, keep_parts=keep_parts, progress=progress)
    if progress:
        from lit_llm.data.summary import summarize

        print(summarize(manifest, out))
        print(f"prepared {out} in {time.perf_counter() - started:.1f} s")
    return manifest


def prepare_command(
    input: list[str] | str | None = None,
    tokenizer: str | None = None,
    output: str | None = None,
    sources: list[Source] | None = None,
    val_input: list[str] | str | None = None,
    filters: FilterConfig | None = None,
    dedup: DedupConfig | None = None,
    split: SplitConfig | None = None,
    shard_tokens: int = 50_000_000,
    chunk_chars: int = 32_000_000,
    text_field: str = "text",
    num_workers: int | None = None,
    num_tasks: int | None = None,
    task_index: int | None = None,
    strict: bool = False,
    overwrite: bool = False,
    keep_parts: bool = False,
    progress: bool = True,
) -> None:
    """Turn raw sources into a folder of filtered, deduplicated, tokenized shards with a manifest.

    Args:
        input: Files, directories or globs, one source each ("KIND:PATH" picks the reader, e.g.
            "code:src/"); mixture weights follow their token counts. Or use a recipe's `sources`.
        tokenizer: Tokenizer folder (`lit-llm tokenizer train`); copied into the output folder.
        output: Output folder (manifest.json, train/, val/, tokenizer/, rejected/, prepare.log).
        sources: Recipe sources (YAML list: paths, name, kind, weight, filters, split, optional,
            max_chars, text_field, ...); `{stdlib}` in a path is Python's standard library.
        val_input: Validation files: they replace the hash split (every other document trains).
        filters: Quality filters, each with `enabled` and thresholds (e.g. --filters.c4.enabled false).
        dedup: Exact and MinHash near-duplicate removal across all sources.
        split: Train/validation split: val_fraction, seed, max_doc_chars (long documents become blocks).
        shard_tokens: Tokens per shard (a shard ends at the first document boundary past this).
        chunk_chars: Characters per unit of resumable work (a re-run skips finished chunks).
        text_field: JSON/Parquet field with the text, for --input and --val_input.
        num_workers: Worker processes (default: the CPU cores available; 0 = in this process).
        num_tasks: Split the input over this many tasks by file (default: SLURM_ARRAY_TASK_COUNT or 1);
            with more than one, run `lit-llm data merge` after all of them.
        task_index: This task's index (default: SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN, or 0).
        strict: Fail on malformed input lines and binary files instead of skipping and logging them.
        overwrite: Replace a folder prepared with another recipe or tokenizer.
        keep_parts: Keep the per-task chunk files in OUTPUT/.work after the merge.
        progress: Show progress bars and print a summary.
    """
    prepare_dataset(**locals())


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
        from lit_llm.data.summary import summarize

        print(summarize(manifest, out))
        print(f"merged {out} in {time.perf_counter() - started:.1f} s")


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
