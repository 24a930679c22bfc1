"""`lit-llm evaluate`: benchmark a checkpoint with lm-eval (MMLU, GSM8K, HumanEval, perplexity), offline.

    lit-llm evaluate --ckpt_path runs/demo --tasks mmlu,gsm8k,perplexity --limit 50
    lit-llm evaluate --ckpt_path runs/demo --tasks humaneval --allow_code_execution true --limit 20
    lit-llm evaluate --ckpt_path runs/demo --tasks perplexity --text_file my_held_out.txt
    lit-llm evaluate --ckpt_path runs/demo --tasks hellaswag --task_source hub     # lm-eval's stock tasks, online

Writes lm-eval's results JSON (default: RUN/eval/<checkpoint>.json) and prints its table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lit_llm.checkpoint import resolve_checkpoint
from lit_llm.errors import UserError
from lit_llm.eval.tasks import TaskSource, parse_tasks
from lit_llm.eval.tasks.utils import data_root


def default_output(ckpt_file: Path) -> Path:
    """RUN/eval/<stem>.json for RUN/checkpoints/<stem>.ckpt, else <stem>-eval.json next to the checkpoint."""
    if ckpt_file.parent.name == "checkpoints":
        return ckpt_file.parent.parent / "eval" / f"{ckpt_file.stem}.json"
    return ckpt_file.with_name(f"{ckpt_file.stem}-eval.json")


def evaluate_command(
    ckpt_path: str,
    tasks: str = "mmlu,gsm8k,perplexity",
    limit: int | None = None,
    data_dir: str | None = None,
    text_file: str | None = None,
    batch_size: int = 16,
    num_fewshot: int | None = None,
    output: str | None = None,
    allow_code_execution: bool = False,
    task_source: TaskSource = "local",
    tokenizer: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    max_length: int | None = None,
    max_gen_toks: int = 256,
    bootstrap_iters: int = 100,
    log_samples: bool = False,
    seed: int = 1234,
    progress: bool = True,
    download: bool = False,
) -> dict:
    """Evaluate a checkpoint on lm-eval tasks; write the results JSON and print the table.

    Args:
        ckpt_path: Checkpoint file, or a run folder containing checkpoints/last.ckpt.
        tasks: Comma-separated tasks or groups: mmlu (or mmlu_stem, mmlu_anatomy, ...), gsm8k, humaneval, perplexity.
        limit: Examples per task (None: all). MMLU counts per subject.
        data_dir: Folder with mmlu/, gsm8k/, humaneval/ and wikitext2/ (layout: lit_llm/eval/download.py);
            default: $LIT_LLM_DATA, else ~/.cache/lit-llm/benchmarks.
        text_file: Text file of the perplexity task (default: DATA_DIR/wikitext2/test.txt).
        batch_size: Sequences per forward pass.
        num_fewshot: Override the tasks' few-shot count (MMLU 5, GSM8K 5; HumanEval stays 0-shot).
        output: Results JSON path (default: RUN/eval/<checkpoint name>.json).
        allow_code_execution: Confirm that HumanEval may run model-written (untrusted) code on this machine.
        task_source: local = the kit's task files over DATA_DIR (offline); hub = lm-eval's stock tasks (downloads).
        tokenizer: Tokenizer folder (default: the one recorded in the checkpoint).
        device: Torch device (default: cuda when available, else cpu).
        dtype: Cast the model to this dtype (float32, bfloat16, float16).
        max_length: Context in tokens (default: the model's max_seq_len).
        max_gen_toks: Generated tokens for tasks that set no limit of their own.
        bootstrap_iters: Bootstrap resamples for the standard error of non-mean metrics (0: skip).
        log_samples: Also write every request and response to <output>-samples.jsonl.
        seed: Seed for sampled generation (greedy tasks do not use it).
        progress: Show progress bars.
        download: First fetch the tasks' files from the Hugging Face Hub into the data folder (needs network).
    """
    names = parse_tasks(tasks)
    file = resolve_checkpoint(ckpt_path)
    if download:
        from lit_llm.eval.download import download_benchmarks

        download_benchmarks(names, data_dir)
    from lit_llm.eval.runner import prepare, run_tasks

    manager = prepare(
        names,
        data_dir=data_dir,
        text_file=text_file,
        allow_code_execution=allow_code_execution,
        source=task_source,
    )
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1 (got {limit})")
    from lit_llm.eval.wrapper import LitLLMEval

    started = time.time()
    lm = LitLLMEval(
        pretrained=str(file),
        tokenizer=tokenizer,
        batch_size=batch_size,
        max_length=max_length,
        max_gen_toks=max_gen_toks,
        device=device,
        dtype=dtype,
        seed=seed,
        progress=progress,
    )
    results = run_tasks(
        lm,
        names,
        manager=manager,
        limit=limit,
        num_fewshot=num_fewshot,
        allow_code_execution=allow_code_execution,
        bootstrap_iters=bootstrap_iters,
        log_samples=log_samples,
        progress=progress,
    )
    results["config"] = {
        "model": "lit-llm",
        "ckpt_path": str(file),
        "tasks": names,
        "limit": limit,
        "data_dir": str(data_root(data_dir).resolve()),
        "text_file": text_file,
        "batch_size": batch_size,
        "num_fewshot": num_fewshot,
        "task_source": task_source,
        "seed": seed,
        "bootstrap_iters": bootstrap_iters,
        "seconds": round(time.time() - started, 1),
        **lm.get_model_info(),
    }
    path = Path(output) if output else default_output(file)
    write_results(results, path)
    print_table(results)
    print(f"wrote {path}")
    return results


def write_results(results: dict, path: Path) -> None:
    """lm-eval's results JSON (samples, when logged, to a JSON Lines file next to it)."""
    from lm_eval.utils import handle_non_serializable

    path.parent.mkdir(parents=True, exist_ok=True)
    samples = results.pop("samples", None)
    path.write_text(json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False))
    if samples:
        with open(path.with_name(f"{path.stem}-samples.jsonl"), "w", encoding="utf-8") as f:
            for task, rows in samples.items():
                for row in rows:
                    f.write(
                        json.dumps({"task": task, **row}, default=handle_non_serializable, ensure_ascii=False)
                    )
                    f.write("\n")


def print_table(results: dict) -> None:
    from lm_eval.utils import make_table

    print(make_table(results))
    if results.get("groups"):
        print(make_table(results, "groups"))
