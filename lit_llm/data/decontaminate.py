"""Benchmark decontamination in `lit-llm data prepare`: training and validation documents that share
a word n-gram with a test item of MMLU, GSM8K or HumanEval (or of files the user names) are removed.

    lit-llm data prepare ... --decontaminate.data_dir ../shared/data      # default: lit-llm evaluate's folder
    lit-llm data prepare ... --decontaminate.extra_files '[my_eval.jsonl]' --decontaminate.ngram 13
    lit-llm data prepare ... --decontaminate.enabled false

    plan = resolve_plan(DecontaminateConfig())        # files found (+ sha256), in the recipe and its hash
    folder, info = prepare_index(plan, work_dir)      # built once per run, memory-mapped by the workers
    stage = Decontaminator(folder, filters_cfg)       # in each worker: stage(texts, ids) -> texts or None

What is indexed (the test split only; training and few-shot splits may be trained on): MMLU's question
with its four choices, GSM8K's question with its worked answer, HumanEval's prompt (signature and
docstring) with its canonical solution. Words are normalised as lm-eval's decontamination does
(ngram_index.py), and every n-gram of an item is indexed except those of mostly numbers and single
letters; an item shorter than n words is matched whole if it has 8 words or more, and not at all below
that. A document (a block, when `split.max_doc_chars` cut it) sharing one n-gram is removed whole:
the rest of a text that quotes a test item is usually its answer or its neighbours (docs/data_pipeline.md).
It runs in the workers after the quality filters, on what would be tokenized.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from lit_llm.data.benchmark_files import data_root, gsm8k_files, humaneval_file, mmlu_test_files
from lit_llm.data.filters import FilterConfig, FilterCounts
from lit_llm.data.ngram_index import INFO, MAX_NGRAM, NgramIndex, item_ngrams, save_index
from lit_llm.data.shards import sha256_file
from lit_llm.data.sources import Source, iter_documents, source_files, to_source
from lit_llm.errors import UserError

BENCHMARKS = ("mmlu", "gsm8k", "humaneval")
SAMPLES_FILE = "decontamination.jsonl"  # in rejected/
MAX_BENCHMARKS = 255  # owners are uint8


@dataclass
class DecontaminateConfig:
    """Benchmark decontamination: remove documents sharing a word n-gram with a benchmark's test items."""

    enabled: bool = True
    """Check training and validation documents against MMLU, GSM8K and HumanEval test items (those
    found in data_dir) and extra_files; with none found, a one-line note says nothing was checked."""
    data_dir: str | None = None
    """Benchmark folder, the one `lit-llm evaluate` reads (mmlu/test/*_test.csv, gsm8k/test.jsonl,
    humaneval/HumanEval.jsonl.gz; default: $LIT_LLM_DATA, else ~/.cache/lit-llm/benchmarks)."""
    extra_files: list[str] = field(default_factory=list)
    """More test sets, each a benchmark named after its path: files, folders or globs in any --input
    format ("KIND:PATH" picks the reader): a .txt/.md file is one item, a .jsonl line one item (its
    "text" field), a code file one item."""
    ngram: int = 13
    """Words per n-gram (lm-eval's decontamination uses 13)."""

    def __post_init__(self) -> None:
        if not 5 <= self.ngram <= MAX_NGRAM:
            raise UserError(f"decontaminate.ngram must be in [5, {MAX_NGRAM}], got {self.ngram}")
        if isinstance(self.extra_files, str):
            self.extra_files = [self.extra_files]


@dataclass
class BenchmarkSet:
    """One benchmark's test files as a run found them."""

    name: str
    reader: str
    """mmlu | gsm8k | humaneval, or a source kind (auto, text, jsonl, ...) for extra files."""
    paths: list[str]
    sha256: str
    """Of the files' contents, in order: a change to a benchmark file changes the recipe's hash."""


@dataclass
class DecontaminationPlan:
    """The resolved settings (a field of the recipe: stored with it and part of its hash)."""

    enabled: bool = False
    ngram: int = 13
    data_dir: str | None = None
    benchmarks: list[BenchmarkSet] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    """Standard benchmarks without files in data_dir."""

    @property
    def active(self) -> bool:
        return self.enabled and bool(self.benchmarks)

    def sha256(self) -> str:
        text = json.dumps([self.ngram, [(b.name, b.reader, b.sha256) for b in self.benchmarks]])
        return hashlib.sha256(text.encode()).hexdigest()

    def note(self) -> str | None:
        """The line to print before a run: which benchmarks are missing (None when all are there or off)."""
        if not self.enabled or not self.not_found:
            return None
        where = f"in {self.data_dir}"
        if not self.benchmarks:
            return (
                f"decontamination: no benchmark files {where} (mmlu/test, gsm8k/test.jsonl, "
                "humaneval/HumanEval.jsonl.gz), so the data is not checked against benchmarks (fetch them with "
                "`lit-llm evaluate --download true`, or point --decontaminate.data_dir at them; "
                "--decontaminate.enabled false turns the check and this line off)"
            )
        names = ", ".join(b.name for b in self.benchmarks)
        return f"decontamination: checking against {names}; not found {where}: {', '.join(self.not_found)}"


def resolve_plan(cfg: DecontaminateConfig) -> DecontaminationPlan:
    """Find the benchmark files (and the extra files: missing ones fail here) and hash them."""
    if not cfg.enabled:
        return DecontaminationPlan(enabled=False, ngram=cfg.ngram)
    root = data_root(cfg.data_dir).resolve()
    found = {
        "mmlu": mmlu_test_files(root),
        "gsm8k": [p for p in [gsm8k_files(root)["test"]] if p.is_file()],
        "humaneval": [p for p in [humaneval_file(root)] if p.is_file()],
    }
    sets = [
        BenchmarkSet(name, name, [str(p) for p in paths], _sha256(paths))
        for name, paths in found.items()
        if paths
    ]
    names = set(BENCHMARKS)
    for entry in cfg.extra_files:
        src = to_source(entry)
        paths = [path for path, _ in source_files(src)]  # a missing path is a UserError
        name, n = src.name, 2
        while name in names:
            name, n = f"{src.name}-{n}", n + 1
        names.add(name)
        sets.append(BenchmarkSet(name, src.kind, [str(p.resolve()) for p in paths], _sha256(paths)))
    if len(sets) > MAX_BENCHMARKS:
        raise UserError(f"decontaminate: at most {MAX_BENCHMARKS} benchmarks, got {len(sets)}")
    missing = [name for name, paths in found.items() if not paths]
    return DecontaminationPlan(True, cfg.ngram, str(root), sets, missing)


def _sha256(paths: list[Path]) -> str:
    """One sha256 over the files' own, in order."""
    return hashlib.sha256(" ".join(sha256_file(p) for p in paths).encode()).hexdigest()


# ---------------------------------------------------------------- test items


def read_items(bench: BenchmarkSet) -> list[str]:
    """The text of every test item of a benchmark (what `item_ngrams` indexes)."""
    paths = [Path(p) for p in bench.paths]
    try:
        if bench.reader == "mmlu":
            return [text for p in paths for text in _mmlu_items(p)]
        if bench.reader == "gsm8k":
            return [r["question"] + "\n" + r["answer"] for p in paths for r in _jsonl(p)]
        if bench.reader == "humaneval":
            return [r["prompt"] + r["canonical_solution"] for p in paths for r in _jsonl(p)]
    except (KeyError, TypeError, ValueError, csv.Error) as err:
        raise UserError(f"{bench.name}: a benchmark file is not in the expected layout ({err!r})") from None
    src = Source(paths=bench.paths, name=bench.name, kind=bench.reader)
    return [doc.text for doc in iter_documents(src)]


def _mmlu_items(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [" ".join([r["question"], *(r[f"choice{i}"] for i in range(4))]) for r in csv.DictReader(f)]


def _jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def prepare_index(plan: DecontaminationPlan, work: Path, progress: bool = True) -> tuple[Path | None, dict]:
    """Build the n-gram index of the plan's benchmarks under WORK (or find it built by an earlier
    run or another task); return its folder and its info (None, {} when the plan is not active)."""
    if not plan.active:
        return None, {}
    folder = work / f"decontamination-{plan.sha256()[:16]}"
    if (folder / INFO).exists():
        return folder, json.loads((folder / INFO).read_text())
    started = time.perf_counter()
    parts = [item_ngrams(read_items(b), plan.ngram) for b in plan.benchmarks]
    info = {"ngram": plan.ngram, "benchmarks": [b.name for b in plan.benchmarks], "per_benchmark": {}}
    for bench, (*_, stats) in zip(plan.benchmarks, parts):
        info["per_benchmark"][bench.name] = stats
    info["build_seconds"] = round(time.perf_counter() - started, 3)
    info = save_index(folder, parts, info)
    if progress:
        items = sum(s["items"] for *_, s in parts)
        print(
            f"decontamination: indexed {info['ngrams']:,} word {plan.ngram}-grams of {items:,} test items "
            f"({', '.join(info['benchmarks'])}) in {info['build_seconds']:.1f} s"
        )
    return folder, info


# ---------------------------------------------------------------- the stage (in workers)


class Decontaminator:
    """Removes the documents of a batch that match the index; counts them per benchmark (the reasons of
    a `FilterCounts`) and keeps a deterministic sample, like a quality filter (filters/pipeline.py)."""

    def __init__(self, folder: Path, filters: FilterConfig):
        self.index = NgramIndex(folder)
        self.names = self.index.info["benchmarks"]
        self.k, self.max_chars = filters.samples_per_filter, filters.sample_max_chars
        self.seed = filters.seed & 0xFFFF_FFFF_FFFF_FFFF
        self.counts = FilterCounts()

    def __call__(self, texts: list[str | None], ids: list[str]) -> list[str | None]:
        """The texts with those sharing an n-gram with a benchmark replaced by None (None stays None)."""
        live = [i for i, t in enumerate(texts) if t is not None]
        found = self.index.matches([texts[i] for i in live])
        self.counts.documents_in += len(live)
        out = list(texts)
        for j, (owner, words) in sorted(found.items()):
            i, text, name = live[j], texts[live[j]], self.names[owner]
            self.counts.documents_removed += 1
            self.counts.chars_removed += len(text)
            self.counts.reasons[name] += 1
            key = xxhash.xxh3_64_intdigest(text.encode("utf-8", "surrogatepass"), seed=self.seed)
            shared = b" ".join(words).decode("utf-8", "replace")
            self.counts.add_sample(key, f"{name}: shares {shared!r}", text[: self.max_chars], ids[i], self.k)
            out[i] = None
        return out

    def pop_counts(self) -> FilterCounts:
        counts, self.counts = self.counts, FilterCounts()
        return counts
