"""One task of `lit-llm data prepare`: read this task's share of the sources (`task_input`: sampled,
long documents cut into blocks), filter, decontaminate, hash, MinHash and tokenize them in worker
processes (`task_workers`), and write chunk files that the merge step (`lit_llm.data.merge`)
deduplicates into the final shards.

`prepare_dataset` runs it (once on one machine, or once per SLURM array task); it has no command of
its own. The work folder of task i of n is OUTPUT/.work/task-IIIII-of-NNNNN/:

    sSSS/cCCCCC.bin        the chunk's documents that passed the filters, tokenized + eos (shard format)
    sSSS/cCCCCC.bands.npy  their MinHash LSH band keys (uint64, one row per document)
    sSSS/cCCCCC.pkl        written last, so it marks the chunk finished: one record per document
                           (order key, exact hash, split hash, tokens, bytes), filter and
                           decontamination counters, timings
    task.json              written when the task ends: read statistics and log, chunk counts, timings,
                           the decontamination index's description

The benchmark n-gram index (decontaminate.py) is built once per run in OUTPUT/.work before the
workers start (a later task or re-run finds it there) and memory-mapped by every worker.

A chunk is a run of consecutive documents of one source in this task worth `chunk_chars`
characters. A re-run skips finished chunks (it reads their documents again but does not process
them), so a killed task resumes where it stopped. Exact duplicates inside a chunk are dropped
here; everything else about duplicates is decided by the merge, across all tasks.

Every document gets a global order key (source, file, record, block): the source's position in
the recipe, the file's index in the source's sorted file list (the same whatever the number of
tasks, since task i reads files[i::n]), the record's position in its file and the block's
position in its document. Dedup keeps the smallest key, and shards list documents by key, so
n tasks + merge write the same shards as one task. `RunChunks` reads every finished chunk of a
run back, in that order, for the merge.
"""

from __future__ import annotations

import json
import pickle
import time
from collections import Counter, deque
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lit_llm.data.decontaminate import prepare_index
from lit_llm.data.filters import FilterCounts, FilterPipeline
from lit_llm.data.recipe import Recipe
from lit_llm.data.shards import Shard, atomic_write_bytes, token_dtype, write_shard
from lit_llm.data.task_input import TaskReader, TimedIterator
from lit_llm.data.task_workers import WorkerSetup, worker_pool
from lit_llm.errors import UserError
from lit_llm.safe_pickle import DATA_WORK_FILES, RefusedFile, load_restricted

RECORD = np.dtype(
    [
        ("source", "<u2"),
        ("file", "<u4"),
        ("rec", "<u8"),
        ("block", "<u4"),
        ("exact", "<u8"),
        ("split", "<u8"),
        ("num_tokens", "<u8"),
        ("num_bytes", "<u8"),
    ]
)
ORDER_FIELDS = ("source", "file", "rec", "block")
INFLIGHT_PER_WORKER = 3  # batches queued per worker (bounds the parent's memory)


def task_dir(work: Path, task_index: int, num_tasks: int) -> Path:
    return work / f"task-{task_index:05d}-of-{num_tasks:05d}"


class _Chunk:
    """Results of one chunk's batches, in order; `write` makes its files."""

    def __init__(self, recipe: Recipe, source: int, dtype: np.dtype):
        src = recipe.sources[source]
        self.source, self.dtype, self.exact = source, dtype, recipe.dedup.exact
        self.pipe = FilterPipeline(recipe.filters, src.filter_set)
        self.decontamination, self.samples = FilterCounts(), recipe.filters.samples_per_filter
        self.docs: list[np.ndarray] = []
        self.records: list[np.ndarray] = []
        self.bands: list[np.ndarray] = []
        self.seen: set[int] = set()
        self.documents_in = self.chars_in = self.exact_removed = 0
        self.seconds: Counter = Counter()

    def add(self, keys: np.ndarray, chars_in: int, res: dict) -> None:
        self.pipe.merge_state(res["filters"])
        if res["decontamination"] is not None:
            self.decontamination.merge(res["decontamination"], self.samples)
        self.seconds.update(res["seconds"])
        self.documents_in += len(keys)
        self.chars_in += chars_in
        rows = []
        for j, h in enumerate(res["exact"].tolist()):
            if self.exact and h in self.seen:
                self.exact_removed += 1
                continue
            self.seen.add(h)
            rows.append(j)
        ends = np.cumsum(res["lengths"])
        self.docs += [res["tokens"][ends[j] - res["lengths"][j] : ends[j]] for j in rows]
        rec = np.zeros(len(rows), dtype=RECORD)
        rec["source"] = self.source
        for name in ("file", "rec", "block"):
            rec[name] = keys[name][res["kept"][rows]]
        for name in ("exact", "split", "num_bytes"):
            rec[name] = res[name][rows]
        rec["num_tokens"] = res["lengths"][rows]
        self.records.append(rec)
        self.bands.append(res["bands"][rows])

    def write(self, base: Path, bands: int) -> None:
        start = time.perf_counter()
        entry = write_shard(base.with_suffix(".bin"), self.docs, self.dtype)
        keys = np.concatenate(self.bands) if self.bands else np.zeros((0, bands), dtype=np.uint64)
        atomic_write_bytes(base.with_suffix(".bands.npy"), lambda f: np.save(f, keys))
        meta = {
            "records": np.concatenate(self.records) if self.records else np.zeros(0, dtype=RECORD),
            "filter_set": self.pipe.filter_set,
            "filters": self.pipe.state,
            "decontamination": self.decontamination,
            "documents_in": self.documents_in,
            "chars_in": self.chars_in,
            "exact_removed": self.exact_removed,
            "shard": entry,
            "seconds": {**self.seconds, "write": time.perf_counter() - start},
        }
        atomic_write_bytes(base.with_suffix(".pkl"), lambda f: pickle.dump(meta, f, protocol=5))


def chunk_base(tdir: Path, source: int, chunk: int) -> Path:
    return tdir / f"s{source:03d}" / f"c{chunk:05d}"


def load_chunk(base: Path) -> dict | None:
    """A finished chunk's metadata, or None when its files are missing, partial or inconsistent."""
    try:
        meta = load_restricted(base.with_suffix(".pkl"), DATA_WORK_FILES)  # RefusedFile propagates
        n = len(meta["records"])
        bands = np.load(base.with_suffix(".bands.npy"), mmap_mode="r")
        if Shard(base.with_suffix(".bin")).num_documents != n or len(bands) != n:
            return None
    except RefusedFile:
        raise
    except (OSError, EOFError, ValueError, pickle.UnpicklingError, UserError, KeyError):
        return None
    return meta


def remove_temp_files(folder: Path) -> None:
    """Delete the temp files a killed atomic write left under folder."""
    for tmp in folder.rglob(".*.tmp-*"):  # left by a killed atomic write
        tmp.unlink(missing_ok=True)


class RunChunks:
    """All finished chunks of a run (the merge's input): metadata, records in global order and where each
    document's tokens are."""

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


class _Pipeline:
    """The task process' loop: submit batches to the workers in stream order, take results back in
    the same order, and write each chunk when its last batch is in (at most `limit` batches queued)."""

    def __init__(self, recipe: Recipe, tdir: Path, dtype: np.dtype, submit, limit: int):
        self.recipe, self.tdir, self.dtype, self.submit, self.limit = recipe, tdir, dtype, submit, limit
        self.bands = recipe.dedup.minhash.bands if recipe.dedup.minhash.enabled else 0
        self.inflight: deque = deque()
        self.chunks: dict[tuple[int, int], _Chunk] = {}
        self.processed, self.wait = 0, 0.0

    def feed(self, kind: str, s: int, c: int, batch: list | None) -> None:
        if kind == "batch":
            keys = np.array(
                [(f, r, b) for f, r, b, _, _ in batch],
                dtype=[("file", "<u4"), ("rec", "<u8"), ("block", "<u4")],
            )
            texts = [it[3] for it in batch]
            future = self.submit((self.recipe.sources[s].filter_set, texts, [it[4] for it in batch]))
            self.inflight.append((kind, s, c, (keys, sum(map(len, texts)), future)))
        else:
            self.inflight.append((kind, s, c, None))
        while len(self.inflight) > self.limit or (self.inflight and self.inflight[0][0] == "end"):
            self.drain()

    def drain(self) -> None:
        kind, s, c, payload = self.inflight.popleft()
        if kind == "end":
            chunk = self.chunks.pop((s, c), None) or _Chunk(self.recipe, s, self.dtype)  # empty: no batch
            chunk.write(chunk_base(self.tdir, s, c), self.bands)
            self.processed += 1
            return
        keys, chars, future = payload
        start = time.perf_counter()
        try:
            result = future.result()
        except BrokenProcessPool as err:
            raise RuntimeError(
                "a data worker process died (killed or out of memory?); re-run to resume after the finished chunks"
            ) from err
        self.wait += time.perf_counter() - start
        self.chunks.setdefault((s, c), _Chunk(self.recipe, s, self.dtype)).add(keys, chars, result)

    def finish(self) -> None:
        while self.inflight:
            self.drain()


def run_task(
    recipe: Recipe,
    tokenizer,
    work: Path,
    task_index: int = 0,
    num_tasks: int = 1,
    num_workers: int = 1,
    strict: bool = False,
    progress: bool = True,
) -> dict:
    """Process this task's share of the recipe's sources into chunk files; return (and save) its summary."""
    started, cpu_started = time.perf_counter(), time.process_time()
    tdir = task_dir(work, task_index, num_tasks)
    done = _start_task_folder(tdir)
    reader = TaskReader(recipe, task_index, num_tasks, strict)
    index, index_info = prepare_index(recipe.decontaminate, work, progress)
    bar = _progress_bar(reader, progress)
    items = TimedIterator(reader.work_items(done, bar))
    with bar, worker_pool(num_workers, WorkerSetup(tokenizer, recipe, index)) as submit:
        limit = max(1, num_workers) * INFLIGHT_PER_WORKER
        pipe = _Pipeline(recipe, tdir, token_dtype(tokenizer.vocab_size), submit, limit)
        for item in items:
            pipe.feed(*item)
        pipe.finish()
    summary = {
        "task_index": task_index,
        "num_tasks": num_tasks,
        "recipe_sha256": recipe.sha256(),
        "tokenizer_sha256": tokenizer.sha256,
        "workers": num_workers,
        "chunks_processed": pipe.processed,
        "chunks_skipped": len(done),
        "sources": _source_summaries(reader, tdir),
        "log": [line for st in reader.stats for line in st.log],
        "decontamination_index": index_info,
        "seconds": {
            "read": items.seconds,
            "wait_for_workers": pipe.wait,
            "wall": time.perf_counter() - started,
            "parent_cpu": time.process_time() - cpu_started,
        },
    }
    atomic_write_bytes(tdir / "task.json", lambda f: f.write(json.dumps(summary, indent=1).encode()))
    return summary


def _start_task_folder(tdir: Path) -> set[tuple[int, int]]:
    """Make the task folder ready for a (re-)run; return the (source, chunk) pairs already finished."""
    tdir.mkdir(parents=True, exist_ok=True)
    remove_temp_files(tdir)
    (tdir / "task.json").unlink(missing_ok=True)
    return {
        (int(p.parent.name[1:]), int(p.stem[1:]))
        for p in tdir.glob("s*/c*.pkl")
        if load_chunk(p.with_suffix("")) is not None
    }


def _progress_bar(reader: TaskReader, progress: bool) -> tqdm:
    """Characters read by this task, out of its estimated share."""
    n, i = reader.num_tasks, reader.task_index
    return tqdm(
        total=reader.estimated_chars(),
        unit="char",
        unit_scale=True,
        desc="prepare" if n == 1 else f"prepare task {i + 1}/{n}",
        disable=not progress,
        smoothing=0.1,
    )


def _source_summaries(reader: TaskReader, tdir: Path) -> list[dict]:
    """Per source: its name, read statistics, reading-stage counts and number of finished chunks."""
    return [
        {
            "name": src.name,
            "read": reader.stats[s].as_dict(),
            **reader.counts[s].__dict__,
            "chunks": len(list((tdir / f"s{s:03d}").glob("c*.pkl"))),
        }
        for s, src in enumerate(reader.recipe.sources)
    ]
