"""One task of `lit-llm data prepare`: read this task's share of the sources, cut very long documents
into blocks, then filter, hash, MinHash and tokenize them in worker processes, and write chunk files
that the merge step (`lit_llm.data.merge`) deduplicates into the final shards.

`prepare_dataset` runs it (once on one machine, or once per SLURM array task); it has no command of
its own. The work folder of task i of n is OUTPUT/.work/task-IIIII-of-NNNNN/:

    sSSS/cCCCCC.bin        the chunk's documents that passed the filters, tokenized + eos (shard format)
    sSSS/cCCCCC.bands.npy  their MinHash LSH band keys (uint64, one row per document)
    sSSS/cCCCCC.pkl        written last, so it marks the chunk finished: one record per document
                           (order key, exact hash, split hash, tokens, bytes), filter counters, timings
    task.json              written when the task ends: read statistics and log, chunk counts, timings

A chunk is a run of consecutive documents of one source in this task worth `chunk_chars`
characters. A re-run skips finished chunks (it reads their documents again but does not process
them), so a killed task resumes where it stopped. Exact duplicates inside a chunk are dropped
here; everything else about duplicates is decided by the merge, across all tasks.

Every document gets a global order key (source, file, record, block): the source's position in
the recipe, the file's index in the source's sorted file list (the same whatever the number of
tasks, since task i reads files[i::n]), the record's position in its file and the block's
position in its document. Dedup keeps the smallest key, and shards list documents by key, so
n tasks + merge write the same shards as one task.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import pickle
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash
from tqdm import tqdm

from lit_llm.data.dedup import MinHasher, exact_hash
from lit_llm.data.filters import FilterPipeline
from lit_llm.data.recipe import Recipe, Source
from lit_llm.data.shards import Shard, atomic_write_bytes, token_dtype, write_shard
from lit_llm.data.sources import ReadStats, iter_documents, source_files
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
BATCH_CHARS = 1 << 19  # characters per worker batch: enough to amortise pickling, small enough to balance
BATCH_DOCS = 512
INFLIGHT_PER_WORKER = 3  # batches queued per worker (bounds the parent's memory)


def task_dir(work: Path, task_index: int, num_tasks: int) -> Path:
    return work / f"task-{task_index:05d}-of-{num_tasks:05d}"


def cut_blocks(text: str, max_chars: int | None) -> list[str]:
    """Cut text into blocks of at most `max_chars` characters: at the last blank line of each window,
    else its last line end, else hard. The blocks concatenate back to the text; blank ones are dropped."""
    if max_chars is None or len(text) <= max_chars:
        return [text]
    blocks, start = [], 0
    while len(text) - start > max_chars:
        end = start + max_chars
        cut = text.rfind("\n\n", start, end)
        if cut > start:
            end = cut + 2
        elif (cut := text.rfind("\n", start, end)) > start:
            end = cut + 1
        blocks.append(text[start:end])
        start = end
    blocks.append(text[start:])
    return [b for b in blocks if b.strip()]


# ---------------------------------------------------------------- worker processes


@dataclass
class WorkerSetup:
    """What every worker process needs (pickled once per worker)."""

    tokenizer: object  # lit_llm.tokenizer.Tokenizer
    recipe: Recipe


class Worker:
    """Filter, hash, MinHash and tokenize batches of one source's documents."""

    def __init__(self, setup: WorkerSetup):
        recipe = setup.recipe
        self.tokenizer = setup.tokenizer
        self.eos = self.tokenizer.eos_id
        self.dtype = token_dtype(self.tokenizer.vocab_size)
        self.pipelines = {fs: FilterPipeline(recipe.filters, fs) for fs in ("prose", "code", "none")}
        self.exact = recipe.dedup.exact
        self.hasher = MinHasher(recipe.dedup.minhash) if recipe.dedup.minhash.enabled else None
        self.bands = recipe.dedup.minhash.bands if self.hasher else 0
        self.split_seed = recipe.split.seed

    def run(self, filter_set: str, texts: list[str], ids: list[str]) -> dict:
        clock = [time.process_time()]
        pipe = self.pipelines[filter_set]
        out = pipe.filter_batch(texts, ids)
        kept = [i for i, t in enumerate(out) if t is not None]
        texts = [out[i] for i in kept]
        clock.append(time.process_time())
        raw = [t.encode("utf-8", "surrogatepass") for t in texts]
        exact = np.array([exact_hash(t) for t in texts] if self.exact else [0] * len(texts), dtype=np.uint64)
        split = np.array([xxhash.xxh3_64_intdigest(r, seed=self.split_seed) for r in raw], dtype=np.uint64)
        clock.append(time.process_time())
        if self.hasher is not None and texts:
            bands = self.hasher.band_keys(self.hasher.signatures(texts))
        else:
            bands = np.zeros((len(texts), self.bands), dtype=np.uint64)
        clock.append(time.process_time())
        encoded = self.tokenizer.encode_batch(texts)
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        flat = np.fromiter(itertools.chain.from_iterable(encoded), dtype=self.dtype, count=int(lengths.sum()))
        tokens = np.insert(flat, np.cumsum(lengths), self.eos)  # eos after every document
        clock.append(time.process_time())
        seconds = dict(zip(("filter", "hash", "minhash", "tokenize"), np.diff(clock).tolist()))
        return {
            "kept": np.array(kept, dtype=np.int64),
            "tokens": tokens,
            "lengths": lengths + 1,
            "exact": exact,
            "split": split,
            "num_bytes": np.array([len(r) for r in raw], dtype=np.uint64),
            "bands": bands,
            "filters": pipe.pop_state(),
            "seconds": seconds,
            "chars": sum(map(len, texts)),
        }


_WORKER: Worker | None = None


def _init_worker(setup: WorkerSetup) -> None:
    global _WORKER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker process
    _WORKER = Worker(setup)


def _run_in_worker(args: tuple) -> dict:
    assert _WORKER is not None
    return _WORKER.run(*args)


class _Ready:
    """A finished result with the `.result()` interface of a future (inline mode)."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


@contextmanager
def _executor(num_workers: int, setup: WorkerSetup):
    """Yield submit(args) -> future: worker processes, or inline when num_workers == 0. A worker
    that dies (killed, out of memory) fails the run with BrokenProcessPool instead of hanging it."""
    if num_workers == 0:
        worker = Worker(setup)
        yield lambda args: _Ready(worker.run(*args))
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(num_workers, mp_context=ctx, initializer=_init_worker, initargs=(setup,))
    try:
        yield lambda args: pool.submit(_run_in_worker, args)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- reading


def _unit(key: str) -> float:
    return xxhash.xxh3_64_intdigest(key.encode("utf-8", "surrogatepass")) / 2**64


def sample_rate(src: Source) -> float:
    """Fraction of documents kept for `max_chars` (from the source's size on disk)."""
    if src.max_chars is None or src.kind == "hf":
        return 1.0
    from lit_llm.tokenizer import estimate_chars

    total = estimate_chars([src]) or 0
    return min(1.0, src.max_chars / total) if total else 1.0


@dataclass
class _Counts:
    """Per-source counts of the reading stage in this task."""

    documents_cut: int = 0
    blocks: int = 0
    sampled_out: int = 0


def split_by_record(src: Source, num_files: int, num_tasks: int) -> bool:
    """True when tasks share this source by record, not by file (it has fewer files than tasks)."""
    return src.kind != "hf" and num_tasks > 1 and num_files < num_tasks


def iter_items(
    src: Source,
    index: int,
    stats: ReadStats,
    counts: _Counts,
    strict: bool,
    task_index: int,
    num_tasks: int,
    max_doc_chars: int | None,
) -> Iterator[tuple]:
    """(file, record, block, text, id) for each document (block) of this task's share of `src`.

    The share is files[task_index::num_tasks]; a file source with fewer files than tasks is split by
    record instead (every task reads its files, task i keeps the records with (file + record) % n == i,
    and only task 0 counts what was read, so the merged read statistics count each record once)."""
    files = {str(p): i for i, (p, _) in enumerate(source_files(src))} if src.kind != "hf" else {}
    by_record = split_by_record(src, len(files), num_tasks)
    rate = sample_rate(src)
    current, rec = None, -1
    if by_record:
        docs = iter_documents(src, stats if task_index == 0 else ReadStats(), strict)
    else:
        docs = iter_documents(src, stats, strict, task_index, num_tasks)
    for doc in docs:
        path = doc.meta.get("path")
        if path is None:  # a hub data set: records of this task's share of it
            file, rec = task_index, int(doc.meta.get("index", rec + 1))
        else:
            if path != current:
                current, rec = path, -1
            file, rec = files[path], rec + 1
        if by_record and (file + rec) % num_tasks != task_index:
            continue
        if rate < 1.0 and _unit(f"{src.name}:{file}:{rec}") >= rate:
            counts.sampled_out += 1
            continue
        blocks = cut_blocks(doc.text, max_doc_chars)
        if len(blocks) > 1:
            counts.documents_cut += 1
            counts.blocks += len(blocks)
        for b, text in enumerate(blocks):
            yield file, rec, b, text, doc.id if len(blocks) == 1 else f"{doc.id}#{b}"


class _Timed:
    """Wraps an iterator and adds the time spent in `next` to `seconds`."""

    def __init__(self, it):
        self.it, self.seconds = it, 0.0

    def __iter__(self):
        return self

    def __next__(self):
        start = time.perf_counter()
        try:
            return next(self.it)
        finally:
            self.seconds += time.perf_counter() - start


# ---------------------------------------------------------------- chunks


class _Chunk:
    """Results of one chunk's batches, in order; `write` makes its files."""

    def __init__(self, recipe: Recipe, source: int, dtype: np.dtype):
        src = recipe.sources[source]
        self.source, self.dtype, self.exact = source, dtype, recipe.dedup.exact
        self.pipe = FilterPipeline(recipe.filters, src.filter_set)
        self.docs: list[np.ndarray] = []
        self.records: list[np.ndarray] = []
        self.bands: list[np.ndarray] = []
        self.seen: set[int] = set()
        self.documents_in = self.chars_in = self.exact_removed = 0
        self.seconds: Counter = Counter()

    def add(self, keys: np.ndarray, chars_in: int, res: dict) -> None:
        self.pipe.merge_state(res["filters"])
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


def _work_items(recipe: Recipe, done: set, reader_args: dict, bar) -> Iterator[tuple]:
    """("batch", source, chunk, items) and ("end", source, chunk) in stream order; finished chunks'
    documents are read (to find where the next chunk starts) but not yielded."""
    for s, src in enumerate(recipe.sources):
        chunk, chunk_chars, batch, batch_chars = 0, 0, [], 0
        for item in iter_items(src, s, *reader_args[s]):
            if chunk_chars >= recipe.chunk_chars:
                if batch:
                    yield "batch", s, chunk, batch
                if (s, chunk) not in done:
                    yield "end", s, chunk, None
                chunk, chunk_chars, batch, batch_chars = chunk + 1, 0, [], 0
            chunk_chars += len(item[3])
            bar.update(len(item[3]))
            if (s, chunk) in done:
                continue
            batch.append(item)
            batch_chars += len(item[3])
            if batch_chars >= BATCH_CHARS or len(batch) >= BATCH_DOCS:
                yield "batch", s, chunk, batch
                batch, batch_chars = [], 0
        if batch:
            yield "batch", s, chunk, batch
        if (s, chunk) not in done:
            yield "end", s, chunk, None


def _estimate_task_chars(recipe: Recipe, task_index: int, num_tasks: int) -> int | None:
    total = 0
    for src in recipe.sources:
        if src.kind == "hf":
            return None
        if split_by_record(src, len(source_files(src)), num_tasks):
            size = sum(p.stat().st_size for p, _ in source_files(src)) / num_tasks
        else:
            size = sum(p.stat().st_size for p, _ in source_files(src, task_index, num_tasks))
        total += int(size * sample_rate(src))
    return total


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
    tdir.mkdir(parents=True, exist_ok=True)
    remove_temp_files(tdir)
    (tdir / "task.json").unlink(missing_ok=True)
    done = {
        (int(p.parent.name[1:]), int(p.stem[1:]))
        for p in tdir.glob("s*/c*.pkl")
        if load_chunk(p.with_suffix("")) is not None
    }
    stats = [ReadStats() for _ in recipe.sources]
    counts = [_Counts() for _ in recipe.sources]
    reader_args = [
        (stats[s], counts[s], strict, task_index, num_tasks, recipe.split.max_doc_chars)
        for s in range(len(recipe.sources))
    ]
    desc = "prepare" if num_tasks == 1 else f"prepare task {task_index + 1}/{num_tasks}"
    bar = tqdm(
        total=_estimate_task_chars(recipe, task_index, num_tasks),
        unit="char",
        unit_scale=True,
        desc=desc,
        disable=not progress,
        smoothing=0.1,
    )
    items = _Timed(_work_items(recipe, done, reader_args, bar))
    with bar, _executor(num_workers, WorkerSetup(tokenizer, recipe)) as submit:
        pipe = _Pipeline(
            recipe, tdir, token_dtype(tokenizer.vocab_size), submit, max(1, num_workers) * INFLIGHT_PER_WORKER
        )
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
        "sources": [
            {
                "name": src.name,
                "read": stats[s].as_dict(),
                **counts[s].__dict__,
                "chunks": len(list((tdir / f"s{s:03d}").glob("c*.pkl"))),
            }
            for s, src in enumerate(recipe.sources)
        ],
        "log": [line for st in stats for line in st.log],
        "seconds": {
            "read": items.seconds,
            "wait_for_workers": pipe.wait,
            "wall": time.perf_counter() - started,
            "parent_cpu": time.process_time() - cpu_started,
        },
    }
    atomic_write_bytes(tdir / "task.json", lambda f: f.write(json.dumps(summary, indent=1).encode()))
    return summary
