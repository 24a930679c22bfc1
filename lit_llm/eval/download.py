"""Fetch the benchmark files from the Hugging Face Hub into the layout the kit's tasks read.

    lit-llm evaluate --download true                         # into $LIT_LLM_DATA or ~/.cache/lit-llm/benchmarks
    lit-llm evaluate --download true --data_dir DIR --tasks mmlu,gsm8k

    DIR/mmlu/{dev,test}/<subject>_{dev,test}.csv   from cais/mmlu (all)
    DIR/gsm8k/{train,test}.jsonl                   from openai/gsm8k (main)
    DIR/humaneval/HumanEval.jsonl.gz               from openai/openai_humaneval
    DIR/wikitext2/test.txt                         from Salesforce/wikitext (wikitext-2-raw-v1)

Offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE, or no network) it fails with one line saying
where to put the files instead. Each file is written atomically and replaces an older copy.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from lit_llm.errors import UserError
from lit_llm.eval.tasks.utils import MMLU_COLUMNS, data_root

LAYOUT = (
    "mmlu/{dev,test}/<subject>_{dev,test}.csv (question,choice0..choice3,answer 0-3), "
    "gsm8k/{train,test}.jsonl, humaneval/HumanEval.jsonl.gz, wikitext2/test.txt"
)


def write_mmlu(rows_by_split: dict[str, Iterable[dict]], root: Path) -> list[Path]:
    """cais/mmlu rows ({question, subject, choices, answer}) -> one CSV per subject and split."""
    written = []
    for split, rows in rows_by_split.items():
        by_subject: dict[str, list[list]] = {}
        for row in rows:
            by_subject.setdefault(row["subject"], []).append(
                [row["question"], *row["choices"], int(row["answer"])]
            )
        for subject, records in sorted(by_subject.items()):
            text = io.StringIO()
            writer = csv.writer(text)
            writer.writerow(MMLU_COLUMNS)
            writer.writerows(records)
            written.append(_write(root / "mmlu" / split / f"{subject}_{split}.csv", text.getvalue().encode()))
    return written


def write_gsm8k(rows_by_split: dict[str, Iterable[dict]], root: Path) -> list[Path]:
    """openai/gsm8k rows ({question, answer}) -> JSON Lines per split."""
    return [
        _write(
            root / "gsm8k" / f"{split}.jsonl",
            _jsonl({"question": r["question"], "answer": r["answer"]} for r in rows),
        )
        for split, rows in rows_by_split.items()
    ]


def write_humaneval(rows: Iterable[dict], root: Path) -> list[Path]:
    """openai/openai_humaneval rows -> HumanEval.jsonl.gz, the layout of OpenAI's release."""
    keys = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    data = gzip.compress(_jsonl({k: r[k] for k in keys} for r in rows), mtime=0)
    return [_write(root / "humaneval" / "HumanEval.jsonl.gz", data)]


def write_wikitext(rows: Iterable[dict], root: Path) -> list[Path]:
    """Salesforce/wikitext rows ({text}) -> one text file."""
    return [_write(root / "wikitext2" / "test.txt", "".join(r["text"] for r in rows).encode())]


# task -> (hub data set, config, splits, writer taking {split: rows} or rows)
SOURCES: dict[str, tuple[str, str | None, tuple[str, ...], Callable]] = {
    "mmlu": ("cais/mmlu", "all", ("dev", "test"), write_mmlu),
    "gsm8k": ("openai/gsm8k", "main", ("train", "test"), write_gsm8k),
    "humaneval": (
        "openai/openai_humaneval",
        None,
        ("test",),
        lambda rows, root: write_humaneval(rows["test"], root),
    ),
    "perplexity": (
        "Salesforce/wikitext",
        "wikitext-2-raw-v1",
        ("test",),
        lambda rows, root: write_wikitext(rows["test"], root),
    ),
}


def download_benchmarks(tasks: Iterable[str], data_dir: str | Path | None = None) -> Path:
    """Fetch the files of `tasks` (mmlu*, gsm8k, humaneval, perplexity) into the data folder; return it."""
    root = data_root(data_dir)
    wanted = sorted({_family(t) for t in tasks} & set(SOURCES))
    offline = [
        v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if os.environ.get(v, "0") not in ("", "0")
    ]
    if offline:
        flags = " and ".join(offline)
        raise UserError(
            f"cannot download benchmarks while {flags} is set: put the files in {root} ({LAYOUT})"
        )
    from datasets import load_dataset

    for task in wanted:
        name, config, splits, writer = SOURCES[task]
        try:
            rows = {split: load_dataset(name, config, split=split) for split in splits}
        except Exception as err:  # datasets raises many types for network and hub failures
            why = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
            raise UserError(
                f"could not download {name} from the Hugging Face Hub ({why}): put the files in {root} ({LAYOUT})"
            ) from None
        paths = writer(rows, root)
        print(f"{task}: {name} -> {len(paths)} file(s) under {root}")
    return root


def _family(task: str) -> str:
    return "mmlu" if task.startswith("mmlu") else task


def _jsonl(rows: Iterable[dict]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
