"""The merge step of `lit-llm data prepare`: cross-task dedup, train/val split, final shards, manifest.

Runs at the end of a one-machine `prepare`, or as `lit-llm data merge --output DIR` after every
task of a scale-out run. It reads the chunk files of all tasks (`chunks.RunChunks`), then:

1. puts every document in global order (source, file, record, block): the same order whatever
   the number of tasks;
2. exact dedup: the first document in that order of every exact hash is kept
   (`dedup.exact_keep_mask`); tasks already dropped repeats inside each chunk;
3. near dedup: the band keys are gathered into one on-disk N x bands array in global order and
   clustered (`dedup.near_duplicate_mask`): the first document of each cluster is kept;
4. split: documents of validation sources go to val; otherwise, with the hash split on,
   xxh3_64(text, seed) / 2^64 < val_fraction sends a document to val (and a source of two or more
   documents left without one gives its document with the smallest hash, so every source, even
   one huge file cut into blocks, has validation data);
5. writes shards per (split, source) of about `shard_tokens` tokens, documents in global order
   (`merge_shards`);
6. writes `rejected/` (samples of what the filters and the decontamination removed), `prepare.log`
   and `manifest.json` (`merge_report`), then removes `.work/` (unless kept).

Memory: about 60 bytes per document (records and masks) plus `dedup`'s ~40 bytes per document
while clustering; the token data is copied shard by shard through memory maps.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np

from lit_llm.data.chunks import RunChunks
from lit_llm.data.dedup import describe_minhash, exact_keep_mask, near_duplicate_mask
from lit_llm.data.filters import FilterPipeline
from lit_llm.data.merge_report import (
    MergeOutcome,
    build_manifest,
    decontamination_report,
    filter_pipelines,
    merge_reads,
    no_validation_error,
    nothing_left_error,
    stage_seconds,
    write_log,
)
from lit_llm.data.merge_shards import write_shards
from lit_llm.data.output_folder import RECIPE, REJECTED, STATE, WORK
from lit_llm.data.recipe import Recipe
from lit_llm.data.shards import Manifest
from lit_llm.errors import UserError
from lit_llm.safe_pickle import DATA_WORK_FILES, load_restricted


def find_tasks(work: Path, num_tasks: int | None = None) -> list[Path]:
    """The task folders of a complete run (every task of n finished); the newest complete set."""
    sets: dict[int, list[Path]] = {}
    for tdir in sorted(work.glob("task-*-of-*")):
        sets.setdefault(int(tdir.name.rsplit("-", 1)[1]), []).append(tdir)
    complete = {
        n: dirs
        for n, dirs in sets.items()
        if len(dirs) == n and all((d / "task.json").exists() for d in dirs)
    }
    if num_tasks is not None:
        complete = {n: d for n, d in complete.items() if n == num_tasks}
    if not complete:
        found = ", ".join(
            f"{sum((d / 'task.json').exists() for d in dirs)} of {n} tasks done" for n, dirs in sets.items()
        )
        raise UserError(
            f"{work.parent}: no complete set of prepare tasks to merge ({found or 'no task started'}); "
            "run the missing `lit-llm data prepare --task_index i` first"
        )
    return max(complete.values(), key=lambda dirs: max((d / "task.json").stat().st_mtime for d in dirs))


def merge_dataset(
    output: str | Path, num_tasks: int | None = None, keep_parts: bool = False, progress: bool = True
) -> dict:
    """Merge the finished tasks in OUTPUT/.work into shards and manifest.json; return the manifest."""
    output = Path(output)
    work = output / WORK
    if not (work / STATE).exists():
        raise UserError(f"{output}: nothing to merge (no {WORK}/{STATE}; run `lit-llm data prepare` first)")
    state = json.loads((work / STATE).read_text())
    recipe: Recipe = load_restricted(work / RECIPE, DATA_WORK_FILES)
    clock, seconds = time.perf_counter(), {}
    tdirs = find_tasks(work, num_tasks)
    tasks = _load_tasks(tdirs, state, output)
    chunks = RunChunks(tdirs)
    seconds["load"] = time.perf_counter() - clock
    keep, dedup = _dedup(recipe, chunks, work, seconds)
    by_source, by_set = filter_pipelines(recipe, chunks)
    for fs, pipe in by_set.items():
        pipe.write_rejected_samples(output / REJECTED / fs)
    decon = decontamination_report(recipe, chunks, output)
    reads = [merge_reads([t["sources"][s]["read"] for t in tasks]) for s in range(len(recipe.sources))]
    write_log(output, tasks, recipe)
    val, forced = _split_or_explain(recipe, chunks.records, keep, reads, by_source, output)
    clock = time.perf_counter()
    shards = write_shards(output, recipe, chunks, keep & ~val, val, state, progress)
    seconds["write_shards"] = time.perf_counter() - clock
    outcome = MergeOutcome(
        recipe, state, tasks, chunks.records, keep, val, forced, dedup, reads, by_source, by_set, decon
    )
    data = build_manifest(outcome, shards)
    data["stages"] = stage_seconds(chunks, tasks, seconds)
    Manifest(output, data).save()
    if not keep_parts:
        shutil.rmtree(work, ignore_errors=True)
    return data


def _load_tasks(tdirs: list[Path], state: dict, output: Path) -> list[dict]:
    """Every task's task.json; a task run with another recipe or tokenizer than the folder's fails."""
    tasks = [json.loads((d / "task.json").read_text()) for d in tdirs]
    for t in tasks:
        if (
            t["recipe_sha256"] != state["recipe_sha256"]
            or t["tokenizer_sha256"] != state["tokenizer"]["sha256"]
        ):
            raise UserError(
                f"{output}: task {t['task_index']} ran with another recipe or tokenizer; re-run it"
            )
    return tasks


def _split_or_explain(
    recipe: Recipe,
    recs: np.ndarray,
    keep: np.ndarray,
    reads: list[dict],
    by_source: list[FilterPipeline],
    output: Path,
) -> tuple[np.ndarray, int]:
    """`_split`; a run left without documents, validation (unless allowed) or training data fails,
    saying which sources and filters emptied it."""
    if not keep.any():
        raise nothing_left_error(recipe, reads, by_source, output)
    val, forced = _split(recipe, recs, keep)
    if not val.any() and not recipe.split.allow_empty_val:
        raise no_validation_error(recipe, reads, by_source, output)
    if not (keep & ~val).any():
        raise UserError(
            f"{output}: no training documents: all {int(keep.sum())} kept documents are validation data"
        )
    return val, forced


def _split(recipe: Recipe, recs: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, int]:
    """Boolean val mask over documents (kept ones only) and the number forced into val."""
    role = (
        np.array([s.split for s in recipe.sources])[recs["source"]] if len(recs) else np.zeros(0, dtype="<U5")
    )
    val = keep & (role == "val")
    auto = keep & (role == "auto")
    frac, forced = recipe.split.val_fraction, 0
    if recipe.hash_split and frac > 0:
        threshold = np.uint64(min(int(frac * 2**64), 2**64 - 1))
        val |= auto & (recs["split"] < threshold)
        for s in range(len(recipe.sources)):  # every source of 2+ documents gets a validation document
            mine = np.nonzero(auto & (recs["source"] == s))[0]
            if len(mine) >= 2 and not val[mine].any():
                val[mine[np.argmin(recs["split"][mine])]] = True
                forced += 1
    return val, forced


def _dedup(recipe: Recipe, chunks: RunChunks, work: Path, seconds: dict) -> tuple[np.ndarray, dict]:
    """Exact then near dedup over all documents in global order; return (keep mask, manifest section)."""
    recs, n = chunks.records, len(chunks)
    clock = time.perf_counter()
    exact_keep = exact_keep_mask(recs["exact"]) if recipe.dedup.exact else np.ones(n, dtype=bool)
    keep, exact_across = exact_keep.copy(), n - int(exact_keep.sum())
    seconds["exact_dedup"] = time.perf_counter() - clock
    cfg = recipe.dedup.minhash
    near: dict = {"enabled": cfg.enabled, **describe_minhash(cfg)}
    clock = time.perf_counter()
    if cfg.enabled:
        path = chunks.write_band_file(work / "bands.u64", cfg.bands)
        near_keep, stats = near_duplicate_mask(path, cfg, alive=keep)
        path.unlink()
        near.update(stats)
        near_removed = keep & ~near_keep
        keep = near_keep
    else:
        near_removed = np.zeros(n, dtype=bool)
    seconds["near_dedup"] = time.perf_counter() - clock
    within = Counter()
    for base, meta in zip(chunks.bases, chunks.metas):
        within[int(base.parent.name[1:])] += meta["exact_removed"]
    exact_dropped = ~exact_keep
    by_source = {
        src.name: {
            "exact": within[s] + int((exact_dropped & (recs["source"] == s)).sum()),
            "near": int((near_removed & (recs["source"] == s)).sum()),
        }
        for s, src in enumerate(recipe.sources)
    }
    section = {
        "exact_duplicates_removed": sum(within.values()) + exact_across,
        "near_duplicates_removed": int(near_removed.sum()),
        "exact": {
            "enabled": recipe.dedup.exact,
            "removed_within_chunks": sum(within.values()),
            "removed_across_chunks": exact_across,
            "hash": "xxh3-64 of NFC text with whitespace runs collapsed (case kept)",
            "keep_rule": "first document in global order (source, file, record, block)",
        },
        "near": near,
        "by_source": by_source,
    }
    return keep, section
