"""Where the benchmark files live: one folder that `lit-llm evaluate` reads its tasks from and
`lit-llm data prepare` checks training data against (decontaminate.py).

    from lit_llm.data.benchmark_files import data_root, gsm8k_files
    root = data_root(None)          # $LIT_LLM_DATA, else ~/.cache/lit-llm/benchmarks
    gsm8k_files(root)["test"]       # root/gsm8k/test.jsonl

    DIR/mmlu/{dev,test}/<subject>_{dev,test}.csv   header question,choice0..choice3,answer (0-3)
    DIR/gsm8k/{train,test}.jsonl                   {"question": ..., "answer": "... #### 42"}
    DIR/humaneval/HumanEval.jsonl.gz               OpenAI HumanEval (164 problems)

It sits in the data layer so that both the data pipeline and `lit_llm.eval` (above it) use it;
`lit-llm evaluate --download true` fills the folder (lit_llm/eval/download.py).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "LIT_LLM_DATA"  # where benchmark files live when no data_dir is given
MMLU_COLUMNS = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]


def default_data_dir() -> Path:
    """$LIT_LLM_DATA, else the user cache: $XDG_CACHE_HOME/lit-llm/benchmarks (~/.cache/lit-llm/benchmarks)."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return cache / "lit-llm" / "benchmarks"


def data_root(data_dir: str | Path | None) -> Path:
    """The benchmark folder: `data_dir` when given, else `default_data_dir()`."""
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def mmlu_files(subject: str, data_dir: str | Path | None = None) -> dict[str, Path]:
    root = data_root(data_dir) / "mmlu"
    return {split: root / split / f"{subject}_{split}.csv" for split in ("dev", "test")}


def mmlu_test_files(data_dir: str | Path | None = None) -> list[Path]:
    """Every MMLU subject's test file present in the folder, sorted."""
    return sorted((data_root(data_dir) / "mmlu" / "test").glob("*_test.csv"))


def gsm8k_files(data_dir: str | Path | None = None) -> dict[str, Path]:
    return {split: data_root(data_dir) / "gsm8k" / f"{split}.jsonl" for split in ("train", "test")}


def humaneval_file(data_dir: str | Path | None = None) -> Path:
    return data_root(data_dir) / "humaneval" / "HumanEval.jsonl.gz"
