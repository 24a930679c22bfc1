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
from lit_llm.command_options import command_options
from lit_llm.eval.config import EvalConfig
from lit_llm.eval.tasks.utils import data_root


def default_output(ckpt_file: Path) -> Path:
    """RUN/eval/<stem>.json for RUN/checkpoints/<stem>.ckpt, else <stem>-eval.json next to the checkpoint."""
    if ckpt_file.parent.name == "checkpoints":
        return ckpt_file.parent.parent / "eval" / f"{ckpt_file.stem}.json"
    return ckpt_file.with_name(f"{ckpt_file.stem}-eval.json")


@command_options(EvalConfig)
def evaluate_command(
    ckpt_path: str,
    output: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    max_length: int | None = None,
    bootstrap_iters: int = 100,
    log_samples: bool = False,
    download: bool = False,
    **options,
) -> dict:
    """Evaluate a checkpoint on lm-eval tasks; write the results JSON and print the table.

    Args:
        ckpt_path: Checkpoint file, or a run folder containing checkpoints/last.ckpt.
        output: Results JSON path (default: RUN/eval/<checkpoint name>.json).
        device: Torch device (default: cuda when available, else cpu).
        dtype: Cast the model to this dtype (float32, bfloat16, float16).
        max_length: Context in tokens (default: the model's max_seq_len).
        bootstrap_iters: Bootstrap resamples for the standard error of non-mean metrics (0: skip).
        log_samples: Also write every request and response to <output>-samples.jsonl.
        download: First fetch the tasks' files from the Hugging Face Hub into the data folder (needs network).
    """
    config = EvalConfig(**options)
    file = resolve_checkpoint(ckpt_path)
    if download:
        from lit_llm.eval.download import download_benchmarks

        download_benchmarks(config.tasks, config.data_dir)
    from lit_llm.eval.runner import prepare, run_tasks
    from lit_llm.eval.wrapper import LitLLMEval

    manager = prepare(config)
    started = time.time()
    lm = LitLLMEval(
        str(file), config.tokenizer, max_length=max_length, device=device, dtype=dtype, **config.model_args()
    )
    results = run_tasks(lm, config, manager=manager, bootstrap_iters=bootstrap_iters, log_samples=log_samples)
    seconds = time.time() - started
    results["config"] = results_config(config, file, bootstrap_iters, seconds, lm.get_model_info())
    path = Path(output) if output else default_output(file)
    write_results(results, path)
    print_table(results)
    print(f"wrote {path}")
    return results


def results_config(
    config: EvalConfig, ckpt_file: Path, bootstrap_iters: int, seconds: float, model_info: dict
) -> dict:
    """The results JSON's "config": the run's settings (data_dir resolved to the folder read) and the model's."""
    keys = ("tasks", "limit", "data_dir", "text_file", "batch_size", "num_fewshot", "task_source", "seed")
    settings = {key: getattr(config, key) for key in keys}
    settings["data_dir"] = str(data_root(config.data_dir).resolve())
    return {
        "model": "lit-llm",
        "ckpt_path": str(ckpt_file),
        **settings,
        "bootstrap_iters": bootstrap_iters,
        "seconds": round(seconds, 1),
        **model_info,
    }


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
