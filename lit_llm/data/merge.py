"""The merge step of `lit-llm data prepare`: cross-task dedup, train/val split, final shards, manifest.

Runs at the end of a one-machine `prepare`, or as `lit-llm data merge --output DIR` after every
task of a scale-out run. It reads the chunk files of all tasks (`lit_llm.data.chunks`), then:

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
5. writes shards per (split, source) of about `shard_tokens` tokens (a shard closes at the first
   document boundary at or past the size), documents in global order; a shard already on disk
   with the checksum this merge recorded for it is kept, not rewritten;
6. writes `rejected/`, `prepare.log` and `manifest.json`, then removes `.work/` (unless kept).

Memory: about 60 bytes per document (records and masks) plus `dedup`'s ~40 bytes per document
while clustering; the token data is copied shard by shard through memory maps.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lit_llm.data.chunks import ORDER_FIELDS, RECORD, load_chunk, remove_temp_files
from lit_llm.data.dedup import describe_minhash, exact_keep_mask, near_duplicate_mask
from lit_llm.data.filters import FilterPipeline, merge_stats
from lit_llm.data.recipe import FORMAT_VERSION, Recipe, file_stem
from lit_llm.data.shards import MANIFEST_NAME, Manifest, Shard, atomic_write_bytes, sha256_file, write_shard
from lit_llm.errors import UserError
from lit_llm.safe_pickle import DATA_WORK_FILES, load_restricted

WORK = ".work"
STATE = "state.json"
RECIPE = "recipe.pkl"
MERGED = "merged.json"
LOG = "prepare.log"
REJECTED = "rejected"
STAGES = ("filter", "hash", "minhash", "tokenize", "write")


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


class _Chunks:
    """All finished chunks of a run: metadata, records in global order and their locations."""

    def __init__(self, tdirs: list[Path]):
        self.bases, self.metas = [], []
        for tdir in tdirs:
            for pkl in sorted(tdir.glob("s*/c*.pkl")):
                meta = load_chunk(pkl.with_suffix(""))
                if meta is None:
                    raise UserError(
                        f"{pkl}: chunk files are corrupt or incomplete; re-run prepare for task {tdir.name}"
                    )
                self.bases.append(pkl.with_suffix(""))
                self.metas.append(meta)
        parts = [m["records"] for m in self.metas]
        records = np.concatenate(parts) if parts else np.zeros(0, dtype=RECORD)
        chunk = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
        row = np.concatenate([np.arange(len(p)) for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        self.order = np.lexsort(tuple(records[f] for f in reversed(ORDER_FIELDS)))
        self.records, self.chunk, self.row = records[self.order], chunk[self.order], row[self.order]
        self._shards: dict[int, Shard] = {}

    def __len__(self) -> int:
        return len(self.records)

    def write_band_file(self, path: Path, bands: int) -> Path:
        """One N x bands uint64 file of band keys in global order (rows scattered from the chunks)."""
        position = np.empty(len(self.order), dtype=np.int64)
        position[self.order] = np.arange(len(self.order))
        with open(path, "wb") as f:
            f.truncate(len(self.order) * bands * 8)
        if len(self.order):
            out = np.memmap(path, dtype="<u8", mode="r+", shape=(len(self.order), bands))
            start = 0
            for base, meta in zip(self.bases, self.metas):
                n = len(meta["records"])
                out[position[start : start + n]] = np.load(base.with_suffix(".bands.npy"))
                start += n
            out.flush()
            del out
        return path

    def document(self, i: int) -> np.ndarray:
        """Tokens of document i (global order) from its chunk's shard (memory-mapped)."""
        k = int(self.chunk[i])
        if k not in self._shards:
            self._shards[k] = Shard(self.bases[k].with_suffix(".bin"))
        return self._shards[k].document(int(self.row[i]))


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


def _plan_shards(idx: np.ndarray, tokens: np.ndarray, shard_tokens: int) -> list[np.ndarray]:
    """Cut document indices into shards: each closes at the first document that reaches shard_tokens."""
    cum = np.cumsum(tokens[idx])
    out, start = [], 0
    while start < len(idx):
        base = cum[start - 1] if start else 0
        end = int(np.searchsorted(cum, base + shard_tokens, side="left")) + 1
        out.append(idx[start:end])
        start = end
    return out


def _write_shards(
    folder: Path,
    recipe: Recipe,
    chunks: _Chunks,
    keep: np.ndarray,
    val: np.ndarray,
    dtype: np.dtype,
    known: dict,
    progress: bool,
) -> list[dict]:
    """Write (or keep, when on disk with the recorded checksum) every shard; return manifest entries."""
    recs = chunks.records
    plans = []
    for split, mask in (("train", keep & ~val), ("val", val)):
        for s, src in enumerate(recipe.sources):
            idx = np.nonzero(mask & (recs["source"] == s))[0]
            for k, part in enumerate(_plan_shards(idx, recs["num_tokens"], recipe.shard_tokens)):
                plans.append((f"{split}/{file_stem(src.name)}-{k:05d}.bin", split, src.name, part))
    entries, merged_path = [], folder / WORK / MERGED
    total = int(recs["num_tokens"][keep].sum())
    with tqdm(total=total, unit="tok", unit_scale=True, desc="write shards", disable=not progress) as bar:
        for file, split, source, part in plans:
            path = folder / file
            counts = {"num_tokens": int(recs["num_tokens"][part].sum()), "num_documents": len(part)}
            old = known.get(file)
            if (
                old
                and path.exists()
                and all(old.get(k) == v for k, v in counts.items())
                and sha256_file(path) == old["sha256"]
            ):
                entry = {k: old[k] for k in ("num_tokens", "num_documents", "sha256")}
            else:
                entry = write_shard(path, [chunks.document(i) for i in part], dtype)
            entries.append(
                {
                    "file": file,
                    "split": split,
                    "source": source,
                    **entry,
                    "num_bytes": int(recs["num_bytes"][part].sum()),
                }
            )
            known[file] = entries[-1]
            if merged_path.parent.exists():
                atomic_write_bytes(merged_path, lambda f: f.write(json.dumps(known).encode()))
            bar.update(counts["num_tokens"])
    listed = {folder / e["file"] for e in entries}
    for stale in [*folder.glob("train/*.bin"), *folder.glob("val/*.bin")]:
        if stale not in listed:
            stale.unlink()
    return entries


def _filter_pipelines(
    recipe: Recipe, chunks: _Chunks
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


def _nothing_left(recipe: Recipe, reads: list[dict], pipes: list[FilterPipeline], output: Path) -> UserError:
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


def _no_validation(recipe: Recipe, reads: list[dict], pipes: list[FilterPipeline], output: Path) -> UserError:
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


def _stage_seconds(chunks: _Chunks, tasks: list[dict], merge_seconds: dict) -> dict:
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
    return {
        "num_documents": int(mask.sum()),
        "num_tokens": int(recs["num_tokens"][mask].sum()),
        "num_bytes": int(recs["num_bytes"][mask].sum()),
    }


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
    tasks = [json.loads((d / "task.json").read_text()) for d in tdirs]
    for t in tasks:
        if (
            t["recipe_sha256"] != state["recipe_sha256"]
            or t["tokenizer_sha256"] != state["tokenizer"]["sha256"]
        ):
            raise UserError(
                f"{output}: task {t['task_index']} ran with another recipe or tokenizer; re-run it"
            )
    chunks = _Chunks(tdirs)
    recs = chunks.records
    seconds["load"] = time.perf_counter() - clock
    keep, dedup = _dedup(recipe, chunks, work, seconds)
    by_source, by_set = _filter_pipelines(recipe, chunks)
    for fs, pipe in by_set.items():
        pipe.write_rejected_samples(output / REJECTED / fs)
    reads = [_merge_reads([t["sources"][s]["read"] for t in tasks]) for s in range(len(recipe.sources))]
    _write_log(output, tasks, recipe)
    if not keep.any():
        raise _nothing_left(recipe, reads, by_source, output)
    val, forced = _split(recipe, recs, keep)
    if not val.any() and not recipe.split.allow_empty_val:
        raise _no_validation(recipe, reads, by_source, output)
    if not (keep & ~val).any():
        raise UserError(
            f"{output}: no training documents: all {int(keep.sum())} kept documents are validation data"
        )
    clock = time.perf_counter()
    for split in ("train", "val"):
        if (output / split).is_dir():
            remove_temp_files(output / split)
    dtype = np.dtype(state["dtype"])
    known = _known_shards(output, state)
    shards = _write_shards(output, recipe, chunks, keep, val, dtype, known, progress)
    seconds["write_shards"] = time.perf_counter() - clock
    data = _manifest(recipe, state, tasks, chunks, keep, val, forced, dedup, reads, by_source, by_set, shards)
    data["stages"] = _stage_seconds(chunks, tasks, seconds)
    Manifest(output, data).save()
    if not keep_parts:
        shutil.rmtree(work, ignore_errors=True)
    return data


def _merge_reads(reads: list[dict]) -> dict:
    """Sum the tasks' read statistics; skipped folders once (every task walks the whole tree)."""
    return {**merge_stats(*reads), "skipped_dirs": max(r.get("skipped_dirs", 0) for r in reads)}


def _known_shards(output: Path, state: dict) -> dict:
    """Shards written earlier for this recipe (an earlier manifest or this merge's progress file)."""
    known = {}
    try:
        old = json.loads((output / MANIFEST_NAME).read_text())
        if old.get("recipe_sha256") == state["recipe_sha256"]:
            known = {s["file"]: s for s in old["shards"]}
    except (OSError, ValueError, KeyError):
        pass
    with contextlib.suppress(OSError, ValueError):
        known.update(json.loads((output / WORK / MERGED).read_text()))
    return known


def _dedup(recipe: Recipe, chunks: _Chunks, work: Path, seconds: dict) -> tuple[np.ndarray, dict]:
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


def _write_log(output: Path, tasks: list[dict], recipe: Recipe) -> None:
    lines = [f"# lit-llm data prepare: skipped and repaired input (file:line: reason), {len(tasks)} task(s)"]
    lines += [f"# optional source {s['name']} skipped: {s['reason']}" for s in recipe.skipped_sources]
    for t in tasks:
        lines += t["log"]
    atomic_write_bytes(output / LOG, lambda f: f.write(("\n".join(lines) + "\n").encode()))


def _manifest(
    recipe, state, tasks, chunks, keep, val, forced, dedup, reads, by_source, by_set, shards
) -> dict:
    recs = chunks.records
    train = keep & ~val
    sources = []
    for s, src in enumerate(recipe.sources):
        mine = recs["source"] == s
        fstats = by_source[s].stats()
        cut = {k: sum(t["sources"][s][k] for t in tasks) for k in ("documents_cut", "blocks", "sampled_out")}
        sources.append(
            {
                "name": src.name,
                "weight": src.weight,
                "kind": src.kind,
                "paths": src.paths,
                "filters": src.filter_set,
                "split": src.split,
                "documents_read": reads[s].get("documents", 0),
                **cut,
                "documents_after_filters": fstats["documents_out"],
                "exact_duplicates_removed": dedup["by_source"][src.name]["exact"],
                "near_duplicates_removed": dedup["by_source"][src.name]["near"],
                **_counts(recs, keep & mine),
                "train": _counts(recs, train & mine),
                "val": _counts(recs, val & mine),
                "read": reads[s],
            }
        )
    if recipe.natural_weights:
        total = sum(x["train"]["num_tokens"] for x in sources) or 1
        for x in sources:
            x["weight"] = round(x["train"]["num_tokens"] / total, 6) if x["train"]["num_tokens"] else 1e-6
    split = recipe.split
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
        "filters": _filter_summary(by_source, by_set, recipe),
        "dedup": dedup,
        "split": {
            "method": "hash" if recipe.hash_split else "sources",
            "val_fraction": split.val_fraction if recipe.hash_split else None,
            "seed": split.seed,
            "rule": "val when xxh3_64(UTF-8 text after filters, seed) / 2^64 < val_fraction; a source of "
            "2+ documents with none in val gives it the one with the smallest hash"
            if recipe.hash_split
            else "documents of sources with split: val are validation, all others train",
            "val_sources": [s.name for s in recipe.sources if s.split == "val"],
            "forced_val_documents": forced,
            "max_doc_chars": split.max_doc_chars,
            "blocks": "documents longer than max_doc_chars characters are cut before filtering into blocks of at "
            "most that size, at the last blank line (else line end) of each window; block k of "
            "document ID has the id ID#k and is split on its own",
            "documents_cut": sum(x["documents_cut"] for x in sources),
            "blocks_made": sum(x["blocks"] for x in sources),
            "train": _counts(recs, train),
            "val": _counts(recs, val),
        },
        "recipe_sha256": state["recipe_sha256"],
        "config": state["recipe"],
        "log": LOG,
    }
