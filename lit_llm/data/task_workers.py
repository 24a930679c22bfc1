"""The worker processes of a `lit-llm data prepare` task: each filters, decontaminates, hashes, MinHashes
and tokenizes batches of one source's documents (`Worker.run`) and sends back the results and its
filter and decontamination counters.

    with worker_pool(num_workers, WorkerSetup(tokenizer, recipe)) as submit:
        future = submit((filter_set, texts, ids))   # -> Worker.run(...) in a worker process
        result = future.result()                    # kept, tokens, hashes, band keys, filter state

`num_workers == 0` runs the same `Worker` inline (no processes), with the same results.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash

from lit_llm.data.decontaminate import Decontaminator
from lit_llm.data.dedup import MinHasher, exact_hash
from lit_llm.data.filters import FilterPipeline
from lit_llm.data.recipe import Recipe
from lit_llm.data.shards import token_dtype


@dataclass
class WorkerSetup:
    """What every worker process needs (pickled once per worker)."""

    tokenizer: object  # lit_llm.tokenizer.Tokenizer
    recipe: Recipe
    decontamination: Path | None = None
    """The benchmark n-gram index folder (built once by the task, memory-mapped by every worker)."""


class Worker:
    """Filter, decontaminate, hash, MinHash and tokenize batches of one source's documents."""

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
        index = setup.decontamination
        self.decontaminate = Decontaminator(index, recipe.filters) if index is not None else None

    def run(self, filter_set: str, texts: list[str], ids: list[str]) -> dict:
        """One batch: the indexes of the kept texts and, for those, tokens (eos after each), lengths,
        hashes, band keys and bytes; plus the filter and decontamination counters of the batch and CPU
        seconds per stage."""
        clock = [time.process_time()]
        pipe = self.pipelines[filter_set]
        out = pipe.filter_batch(texts, ids)
        clock.append(time.process_time())
        if self.decontaminate is not None:
            out = self.decontaminate(out, ids)
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
        seconds = dict(
            zip(("filter", "decontaminate", "hash", "minhash", "tokenize"), np.diff(clock).tolist())
        )
        return {
            "kept": np.array(kept, dtype=np.int64),
            "tokens": tokens,
            "lengths": lengths + 1,
            "exact": exact,
            "split": split,
            "num_bytes": np.array([len(r) for r in raw], dtype=np.uint64),
            "bands": bands,
            "filters": pipe.pop_state(),
            "decontamination": self.decontaminate.pop_counts() if self.decontaminate else None,
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
def worker_pool(num_workers: int, setup: WorkerSetup):
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
