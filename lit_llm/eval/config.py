"""`EvalConfig`: which benchmarks to run and how, written once for `lit-llm evaluate` and `BenchmarkEval`.

    config = EvalConfig(tasks="mmlu,perplexity", limit=20, data_dir="../shared/data")
    results = run_tasks(LitLLMEval(gpt, tokenizer, **config.model_args()), config)

Its fields are the command's flags and the callback's flat init arguments (`command_options`; the
callback shows its own defaults, `BenchmarkEval`'s `TRAINING_DEFAULTS`).
"""

from __future__ import annotations

from dataclasses import dataclass

from lit_llm.errors import UserError
from lit_llm.eval.tasks import TaskSource, check_code_execution, check_task_names, parse_tasks


@dataclass
class EvalConfig:
    """The benchmark settings shared by `lit-llm evaluate` and the `BenchmarkEval` callback."""

    tasks: str | list[str] = "mmlu,gsm8k,perplexity"
    """Comma-separated tasks or groups: mmlu (or mmlu_stem, mmlu_anatomy, ...), gsm8k, humaneval, perplexity."""
    limit: int | None = None
    """Examples per task (MMLU: per subject); None evaluates everything."""
    data_dir: str | None = None
    """Folder with mmlu/, gsm8k/, humaneval/ and wikitext2/ (layout: lit_llm/eval/download.py; default:
    $LIT_LLM_DATA, else ~/.cache/lit-llm/benchmarks; `lit-llm evaluate --download true` fills it)."""
    text_file: str | None = None
    """Text file of the perplexity task (default: DATA_DIR/wikitext2/test.txt)."""
    task_source: TaskSource = "local"
    """local = the kit's task files over DATA_DIR (offline); hub = lm-eval's stock tasks (downloads)."""
    num_fewshot: int | None = None
    """Override the tasks' few-shot count (MMLU 5, GSM8K 5; HumanEval stays 0-shot)."""
    allow_code_execution: bool = False
    """Confirm that HumanEval may run model-written (untrusted) code on this machine."""
    batch_size: int = 16
    """Sequences per forward pass."""
    max_gen_toks: int = 256
    """Generated tokens for tasks that set no limit of their own."""
    seed: int = 1234
    """Seed of the private generator used by sampled generation (greedy tasks do not use it)."""
    tokenizer: str | None = None
    """Tokenizer folder (default: the one the checkpoint records; in training, the data module's)."""
    progress: bool = True
    """Show lm-eval's progress bars over requests (rank 0)."""

    def __post_init__(self) -> None:
        self.tasks = parse_tasks(self.tasks)
        if self.limit is not None and self.limit < 1:
            raise UserError(f"limit must be >= 1 or None, got {self.limit}")
        if self.task_source == "local":  # hub names are checked against lm-eval's index in `prepare`
            check_task_names(self.tasks)
        check_code_execution(self.tasks, self.allow_code_execution)

    def model_args(self) -> dict:
        """The keyword arguments of `LitLLMEval` that come from this config."""
        return {
            "batch_size": self.batch_size,
            "max_gen_toks": self.max_gen_toks,
            "seed": self.seed,
            "progress": self.progress,
        }


__all__ = ["EvalConfig"]
