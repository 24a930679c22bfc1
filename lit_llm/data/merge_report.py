"""What a merge reports: manifest.json's content (`build_manifest`), prepare.log (`write_log`), the
per-source and per-filter-set filter and decontamination counters, and the errors that explain an
empty result.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lit_llm.data.chunks import RunChunks
from lit_llm.data.decontaminate import SAMPLES_FILE
from lit_llm.data.filters import FilterCounts, FilterPipeline, merge_stats, write_samples
from lit_llm.data.output_folder import LOG, REJECTED
from lit_llm.data.recipe import FORMAT_VERSION, Recipe
from lit_llm.data.shards import atomic_write_bytes
from lit_llm.errors import UserError

STAGES = ("filter", "decontaminate", "hash", "minhash", "tokenize", "write")
DECONTAMINATION_RULE = (
    "a document (block) is removed when it shares one word n-gram with a benchmark test item; words are "
    "lowercased, ASCII punctuation deleted and split on whitespace (lm-eval's janitor); n-grams of mostly "
    "numbers and single letters are not indexed; items shorter than n words are matched whole from 8 words"
)


@dataclass
class MergeOutcome:
    """What a merge read and decided, document by document (arrays in global order)."""

    recipe: Recipe
    state: dict
    """.work/state.json: the recipe's and tokenizer's sha256 and description, the token dtype."""
    tasks: list[dict]
    """Each task's task.json."""
    records: np.ndarray
    """Every document's `chunks.RECORD`."""
    keep: np.ndarray
    """Documents left after dedup."""
    val: np.ndarray
    """Validation documents (kept ones only); the other kept ones train."""
    forced_val: int
    """Documents sent to validation so that their source has one."""
    dedup: dict
    """The manifest's dedup section."""
    reads: list[dict]
    """Per source: read statistics summed over tasks."""
    by_source: list[FilterPipeline]
    """Per source: filter counters summed over chunks."""
    by_set: dict[str, FilterPipeline]
    """Per filter set: filter counters and rejected samples."""
    decontamination: list[FilterCounts] = field(default_factory=list)
    """Per source: documents checked and removed by the decontamination (reasons: benchmark names)."""


def build_manifest(run: MergeOutcome, shards: list[dict]) -> dict:
    """manifest.json's content (all but `stages`, which `stage_seconds` gives)."""
    recipe, state, recs, keep = run.recipe, run.state, run.records, run.keep
    sources = _source_entries(run)
    if recipe.natural_weights:
        total = sum(x["train"]["num_tokens"] for x in sources) or 1
        for x in sources:
            x["weight"] = round(x["train"]["num_tokens"] / total, 6) if x["train"]["num_tokens"] else 1e-6
    return {
        "format_version": FORMAT_VERSION,
        "created_by": "lit-llm data prepare",
        **_counts(recs, keep),
        "vocab_size": state["tokenizer"]["vocab_size"],
        "dtype": state["dtype"],
        "tokenizer": state["tokenizer"],
        "sources": sources,
        "skipped_sources": recipe.skipped_sources,
        "shards": shards,
        "filters": _filter_summary(run.by_source, run.by_set, recipe),
        "dedup": run.dedup,
        "decontamination": _decontamination_section(run),
        "split": _split_section(run, sources),
        "recipe_sha256": state["recipe_sha256"],
        "config": state["recipe"],
        "log": LOG,
    }


def _source_entries(run: MergeOutcome) -> list[dict]:
    """The manifest's `sources`: per source, its settings and what became of its documents."""
    recs, train, entries = run.records, run.keep & ~run.val, []
    for s, src in enumerate(run.recipe.sources):
        mine = recs["source"] == s
        cut = {
            k: sum(t["sources"][s][k] for t in run.tasks) for k in ("documents_cut", "blocks", "sampled_out")
        }
        entries.append(
            {
                "name": src.name,
                "weight": src.weight,
                "kind": src.kind,
                "paths": src.paths,
                "filters": src.filter_set,
                "split": src.split,
                "documents_read": run.reads[s].get("documents", 0),
                **cut,
                "documents_after_filters": run.by_source[s].stats()["documents_out"],
                "decontaminated": run.decontamination[s].documents_removed if run.decontamination else 0,
                "exact_duplicates_removed": run.dedup["by_source"][src.name]["exact"],
                "near_duplicates_removed": run.dedup["by_source"][src.name]["near"],
                **_counts(recs, run.keep & mine),
                "train": _counts(recs, train & mine),
                "val": _counts(recs, run.val & mine),
                "read": run.reads[s],
            }
        )
    return entries


def _split_section(run: MergeOutcome, sources: list[dict]) -> dict:
    """The manifest's `split`: the method, its rule and parameters, blocks, and train/val totals."""
    recipe, split = run.recipe, run.recipe.split
    return {
        "method": "hash" if recipe.hash_split else "sources",
        "val_fraction": split.val_fraction if recipe.hash_split else None,
        "seed": split.seed,
        "rule": "val when xxh3_64(UTF-8 text after filters, seed) / 2^64 < val_fraction; a source of "
        "2+ documents with none in val gives it the one with the smallest hash"
        if recipe.hash_split
        else "documents of sources with split: val are validation, all others train",
        "val_sources": [s.name for s in recipe.sources if s.split == "val"],
        "forced_val_documents": run.forced_val,
        "max_doc_chars": split.max_doc_chars,
        "blocks": "documents longer than max_doc_chars characters are cut before filtering into blocks of at "
        "most that size, at the last blank line (else line end) of each window; block k of "
        "document ID has the id ID#k and is split on its own",
        "documents_cut": sum(x["documents_cut"] for x in sources),
        "blocks_made": sum(x["blocks"] for x in sources),
        "train": _counts(run.records, run.keep & ~run.val),
        "val": _counts(run.records, run.val),
    }


def filter_pipelines(
    recipe: Recipe, chunks: RunChunks
) -> tuple[list[FilterPipeline], dict[str, FilterPipeline]]:
    """Filter counters merged per source and per filter set (the latter for the rejected samples)."""
    by_source = [FilterPipeline(recipe.filters, s.filter_set) for s in recipe.sources]
    by_set = {s.filter_set: FilterPipeline(recipe.filters, s.filter_set) for s in recipe.sources}
    for base, meta in zip(chunks.bases, chunks.metas):
        s = int(base.parent.name[1:])
        by_source[s].merge_state(meta["filters"])
        by_set[meta["filter_set"]].merge_state(meta["filters"])
    return by_source, by_set


def _filter_summary(pipes: list[FilterPipeline], by_set: dict, recipe: Recipe) -> dict:
    """The manifest's `filters`: totals, per filter, per source."""
    stats = [p.stats() for p in pipes]
    total = merge_stats(*stats) if stats else {}
    return {
        **{k: total.get(k, 0) for k in ("documents_in", "documents_out", "chars_in", "chars_out")},
        "per_filter": merge_stats(*(p.stats()["filters"] for p in by_set.values())),
        "by_source": {
            src.name: {"filter_set": src.filter_set, **st} for src, st in zip(recipe.sources, stats)
        },
        "rejected_samples": f"{REJECTED}/<filter set>/<filter>.jsonl",
    }


def decontamination_report(recipe: Recipe, chunks: RunChunks, output: Path) -> list[FilterCounts]:
    """The decontamination counters merged per source; writes the samples of what it removed (over all
    sources) to rejected/decontamination.jsonl when it ran."""
    k = recipe.filters.samples_per_filter
    by_source, total = [FilterCounts() for _ in recipe.sources], FilterCounts()
    for base, meta in zip(chunks.bases, chunks.metas):
        if meta.get("decontamination") is not None:
            by_source[int(base.parent.name[1:])].merge(meta["decontamination"], k)
    for counts in by_source:
        total.merge(counts, k)
    if recipe.decontaminate.active:
        write_samples(output / REJECTED / SAMPLES_FILE, "decontamination", total)
    return by_source


def _decontamination_section(run: MergeOutcome) -> dict:
    """The manifest's `decontamination`: settings, what was indexed, what was removed per benchmark and source."""
    plan = run.recipe.decontaminate
    section = {
        "enabled": plan.enabled,
        "checked": plan.active,
        "ngram": plan.ngram,
        "data_dir": plan.data_dir,
    }
    section["not_found"] = plan.not_found
    if not plan.active:
        return section
    total = FilterCounts()
    for counts in run.decontamination:
        total.merge(counts, 0)
    info = run.tasks[0].get("decontamination_index") or {}
    per = info.get("per_benchmark", {})
    benchmarks = {
        b.name: {"files": len(b.paths), "sha256": b.sha256, **per.get(b.name, {})} for b in plan.benchmarks
    }
    for name, entry in benchmarks.items():
        entry["documents_removed"] = total.reasons.get(name, 0)
    return {
        **section,
        "rule": DECONTAMINATION_RULE,
        "benchmarks": benchmarks,
        "index": {k: info.get(k) for k in ("ngrams", "whole", "bytes", "build_seconds")},
        "documents_checked": total.documents_in,
        "documents_removed": total.documents_removed,
        "chars_removed": total.chars_removed,
        "by_source": {
            src.name: {
                "documents_checked": c.documents_in,
                "documents_removed": c.documents_removed,
                "by_benchmark": dict(sorted(c.reasons.items())),
            }
            for src, c in zip(run.recipe.sources, run.decontamination)
        },
        "rejected_samples": f"{REJECTED}/{SAMPLES_FILE}",
    }


def nothing_left_error(
    recipe: Recipe, reads: list[dict], pipes: list[FilterPipeline], output: Path
) -> UserError:
    """No document survived: say what each source read and what its filters removed."""
    parts = []
    for src, read, pipe in zip(recipe.sources, reads, pipes):
        skipped = ", ".join(
            f"{k}: {v}"
            for k, v in {**read.get("skipped_files", {}), **read.get("skipped_records", {})}.items()
        )
        parts.append(
            f"source {src.name!r} read {read.get('documents', 0)} documents"
            + (f" (skipped {skipped})" if skipped else "")
            + f"; {pipe.describe()}"
        )
    return UserError(
        f"{output}: no documents left after filtering: "
        + " | ".join(parts)
        + f" (samples in {output / REJECTED}, log in {output / LOG})"
    )


def no_validation_error(
    recipe: Recipe, reads: list[dict], pipes: list[FilterPipeline], output: Path
) -> UserError:
    """The validation split ended empty: say which sources should have fed it and what removed their documents."""
    if recipe.hash_split:
        why = (
            f"the hash split (val_fraction {recipe.split.val_fraction}) sent no document to validation; "
            "every source kept fewer than 2 documents"
        )
        feeding = range(len(recipe.sources))
    else:
        why = "the validation sources have no document left"
        feeding = [i for i, src in enumerate(recipe.sources) if src.split == "val"]
    parts = [
        f"source {recipe.sources[i].name!r} read {reads[i].get('documents', 0)} documents; "
        f"{pipes[i].describe()}"
        for i in feeding
    ]
    return UserError(
        f"{output}: the validation split is empty: {why}: "
        + " | ".join(parts)
        + " (set `filters: none` on a source whose text is not web prose, or pass "
        "--split.allow_empty_val true to train without validation)"
    )


def stage_seconds(chunks: RunChunks, tasks: list[dict], merge_seconds: dict) -> dict:
    """The manifest's `stages`: time per stage over all tasks and workers, and the merge's own."""
    cpu: Counter = Counter()
    for meta in chunks.metas:
        cpu.update(meta["seconds"])
    return {
        "read": round(sum(t["seconds"]["read"] for t in tasks), 3),
        **{name: round(cpu[name], 3) for name in STAGES},
        "tasks_wall": round(max(t["seconds"]["wall"] for t in tasks), 3),
        "tasks_parent_cpu": round(sum(t["seconds"]["parent_cpu"] for t in tasks), 3),
        "merge": {k: round(v, 3) for k, v in merge_seconds.items()},
        "units": "seconds; read is the readers' time in the task processes (sum over tasks), filter/hash/"
        "minhash/tokenize are CPU seconds summed over worker processes, write is chunk writing, "
        "tasks_wall the slowest task's wall time of its last run, tasks_parent_cpu the CPU time of "
        "the task processes themselves (reading, batching, writing; summed over tasks)",
        "workers": tasks[0]["workers"],
        "num_tasks": len(tasks),
        "chunks": {
            "processed": sum(t["chunks_processed"] for t in tasks),
            "skipped": sum(t["chunks_skipped"] for t in tasks),
        },
    }


def _counts(recs: np.ndarray, mask: np.ndarray) -> dict:
    """Documents, tokens and bytes of the masked records."""
    return {
        "num_documents": int(mask.sum()),
        "num_tokens": int(recs["num_tokens"][mask].sum()),
        "num_bytes": int(recs["num_bytes"][mask].sum()),
    }


def merge_reads(reads: list[dict]) -> dict:
    """Sum the tasks' read statistics; skipped folders once (every task walks the whole tree)."""
    return {**merge_stats(*reads), "skipped_dirs": max(r.get("skipped_dirs", 0) for r in reads)}


def write_log(output: Path, tasks: list[dict], recipe: Recipe) -> None:
    """prepare.log: skipped optional sources, then every task's skipped and repaired input."""
    lines = [f"# lit-llm data prepare: skipped and repaired input (file:line: reason), {len(tasks)} task(s)"]
    lines += [f"# optional source {s['name']} skipped: {s['reason']}" for s in recipe.skipped_sources]
    for t in tasks:
        lines += t["log"]
    atomic_write_bytes(output / LOG, lambda f: f.write(("\n".join(lines) + "\n").encode()))
