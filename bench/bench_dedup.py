"""Benchmark deduplication on bench38: MinHash stage speed, clustering memory, duplicates found.

    .venv/bin/python bench/bench_dedup.py                      # /tmp/bench38, 2 workers
    .venv/bin/python bench/bench_dedup.py CORPUS_DIR --workers 1 --scale 1000000,4000000

Stage 1 (workers): exact hash + MinHash signature + band keys per document, band keys appended
to an on-disk file in input order. Stage 2 (one process): exact keep mask, then LSH clustering
over the memory-mapped band keys. Reported per corpus size (half and all of bench38): documents/s
and MB/s of stage 1, seconds of stage 2, peak RSS of the parent and of the workers, exact and
near duplicates found. `--scale` clusters random band keys for N documents (with 1% planted
duplicates) in a fresh process each, to show clustering memory per document. With datatrove
installed, its MinHash signature stage (stage 1 of 4, 98% of its time) runs on the same
documents for a ratio.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_filters import load_corpus  # noqa: E402

_HASHER = None


def peak_rss_mb() -> float:
    """This process' peak RSS (VmHWM; ru_maxrss is inherited across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _init(cfg) -> None:
    global _HASHER
    from lit_llm.data.dedup import MinHasher

    _HASHER = MinHasher(cfg)


def _stage1(texts: list[str]):
    from lit_llm.data.dedup import exact_hash

    start = time.process_time()
    keys = _HASHER.band_keys(_HASHER.signatures(texts))
    hashes = np.array([exact_hash(t) for t in texts], dtype=np.uint64)
    return hashes, keys, peak_rss_mb(), time.process_time() - start


def run_kit(texts: list[str], workers: int, workdir: Path) -> dict:
    from lit_llm.data.dedup import BandKeyWriter, MinHashConfig, exact_keep_mask, near_duplicate_mask

    cfg = MinHashConfig()
    path = workdir / f"bands_{len(texts)}.u64"
    hashes, worker_rss, cpu = [], 0.0, 0.0
    start = time.perf_counter()
    with (
        BandKeyWriter(path, cfg.bands) as writer,
        mp.get_context("spawn").Pool(workers, _init, (cfg,)) as pool,
    ):
        chunks = [texts[i : i + 64] for i in range(0, len(texts), 64)]
        for h, keys, rss, seconds in pool.imap(_stage1, chunks):
            hashes.append(h)
            writer.write(keys)
            worker_rss, cpu = max(worker_rss, rss), cpu + seconds
    stage1 = time.perf_counter() - start
    start = time.perf_counter()
    exact_keep = exact_keep_mask(np.concatenate(hashes))
    keep, stats = near_duplicate_mask(path, cfg, alive=exact_keep)
    stage2 = time.perf_counter() - start
    return {
        "stage1": stage1,
        "cpu": cpu,
        "stage2": stage2,
        "worker_rss": worker_rss,
        "exact": int((~exact_keep).sum()),
        "stats": stats,
        "kept": int(keep.sum()),
    }


def _scale_child(n: int) -> None:
    """In a fresh process: cluster N random documents' band keys; print seconds and peak RSS."""
    from lit_llm.data.dedup import BandKeyWriter, MinHashConfig, near_duplicate_mask

    cfg = MinHashConfig()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bands.u64"
        with BandKeyWriter(path, cfg.bands) as writer:  # 1% of documents repeat the previous one's band 3
            for s in range(0, n, 1 << 15):
                keys = rng.integers(0, 2**63, (min(1 << 15, n - s), cfg.bands), dtype=np.uint64)
                dup = rng.random(len(keys)) < 0.01
                dup[0] = False
                keys[dup, 3] = keys[np.nonzero(dup)[0] - 1, 3]
                writer.write(keys)
        before = peak_rss_mb()
        start = time.perf_counter()
        _, stats = near_duplicate_mask(path, cfg)
        seconds = time.perf_counter() - start
        peak = peak_rss_mb()
    print(json.dumps({"n": n, "seconds": seconds, "rss_before": before, "rss_peak": peak, **stats}))


def run_scale(sizes: list[int]) -> None:
    print("\nclustering memory on random band keys (a fresh process each, band keys read from disk):")
    for n in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--scale-child", str(n)], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        grow = r["rss_peak"] - r["rss_before"]
        print(
            f"  N={n:>9,d}: {r['seconds']:6.2f} s, peak RSS {r['rss_peak']:7.1f} MB "
            f"(+{grow:6.1f} MB = {grow * 2**20 / n:5.1f} B/doc), {r['near_duplicates_removed']:,d} near dups"
        )


def _dt_signatures(texts: list[str]) -> float:
    import datatrove.pipeline.dedup.minhash as dm

    start = time.process_time()
    step = dm.MinhashDedupSignature(output_folder=tempfile.gettempdir(), config=dm.MinhashConfig())
    # datatrove 0.10.1 passes str to xxhash, which xxhash 4 refuses: encode first (the extra
    # cost is negligible next to its spaCy word tokenizer).
    step._hash_func = lambda s: xxhash.xxh64_intdigest(s.encode("utf-8", "surrogatepass"))
    for t in texts:
        sh = step.get_shingles(t)
        if sh.size:
            step.get_signature(sh)
    return time.process_time() - start


def run_datatrove(texts: list[str], workers: int) -> tuple[float, float] | None:
    try:
        import datatrove.pipeline.dedup.minhash  # noqa: F401
        from datatrove.utils.word_tokenizers import load_word_tokenizer

        load_word_tokenizer("en").word_tokenize("probe")
    except Exception as e:
        print(f"datatrove MinHash not run ({type(e).__name__}: {str(e).splitlines()[0]})")
        return None
    start = time.perf_counter()
    with mp.get_context("fork").Pool(workers) as pool:
        cpu = sum(pool.imap(_dt_signatures, [texts[i : i + 64] for i in range(0, len(texts), 64)]))
    return time.perf_counter() - start, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", nargs="?", default="/tmp/bench38", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--scale", default="1000000,4000000", help="N for the clustering-memory runs ('' to skip)"
    )
    ap.add_argument("--no-datatrove", action="store_true")
    ap.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.scale_child:
        return _scale_child(args.scale_child)

    from lit_llm.data.dedup import MinHashConfig, scurve_table

    cfg = MinHashConfig()
    print(
        f"MinHash {cfg.n_gram}-grams, {cfg.bands} bands x {cfg.rows} rows: {scurve_table(cfg.bands, cfg.rows)}"
    )
    texts = [t for _, t in load_corpus(args.corpus, None)]
    with tempfile.TemporaryDirectory() as tmp:
        for frac in (0.5, 1.0):
            part = texts[: int(len(texts) * frac)]
            mb = sum(len(t.encode("utf-8", "surrogatepass")) for t in part) / 1e6
            r = run_kit(part, args.workers, Path(tmp))
            s = r["stats"]
            print(
                f"{len(part):5d} docs {mb:6.2f} MB: stage 1 {r['stage1']:5.1f} s = {len(part) / r['stage1']:6.0f} docs/s "
                f"{mb / r['stage1']:5.2f} MB/s ({args.workers} workers; {mb / r['cpu']:.2f} MB per CPU-second); stage 2 {r['stage2']:.2f} s; "
                f"peak RSS parent {peak_rss_mb():.0f} MB, worker {r['worker_rss']:.0f} MB; "
                f"exact dups {r['exact']}, near dups {s['near_duplicates_removed']} in {s['clusters']} clusters "
                f"(largest {s['largest_cluster']}), kept {r['kept']}"
            )
    if not args.no_datatrove:
        timed = run_datatrove(texts, args.workers)
        if timed:
            seconds, cpu = timed
            mb = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 1e6
            print(
                f"datatrove MinHash signatures (its stage 1): {seconds:.1f} s = {len(texts) / seconds:.0f} docs/s "
                f"{mb / seconds:.2f} MB/s ({mb / cpu:.2f} MB per CPU-second); kit stage 1 is "
                f"{seconds / r['stage1']:.1f}x faster (wall), {cpu / r['cpu']:.1f}x (CPU)"
            )
    if args.scale:
        run_scale([int(n) for n in args.scale.split(",") if n])


if __name__ == "__main__":
    main()
