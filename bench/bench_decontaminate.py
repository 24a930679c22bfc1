"""Benchmark for benchmark decontamination in `lit-llm data prepare`: whole-prepare MB/s with it on and
off, the stage's own speed, the n-gram index (build time, size, memory) and what it removes on bench38.

    python ../shared/tools/build_bench_corpus.py --out /tmp/bench38      # once (37.9 MB, 8 jsonl files)
    .venv/bin/python bench/bench_decontaminate.py --corpus /tmp/bench38 --benchmarks ../shared/data

Runs, each `prepare_dataset` in its own subprocess (so peak RSS is per run), on all of bench38:
  full, off / on       prose filters, exact + MinHash dedup, tokenize (bench_data_pipeline's "full"),
                       decontamination off, then on;
  nofilter, off / on   filters off, so the decontamination checks every document (its worst case).
The index is also built alone in a subprocess: build seconds, files on disk, peak RSS. Stage times
are CPU seconds summed over the worker processes; the machine is shared, so wall times are noisy
(--repeats runs each pair again and keeps the fastest).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench_data_pipeline import REPO, RssSampler, ensure_inputs


def child(args: argparse.Namespace) -> None:
    """Inside the subprocess: one prepare run; print its figures as JSON."""
    from lit_llm.data.decontaminate import DecontaminateConfig
    from lit_llm.data.prepare import prepare_dataset

    sampler = RssSampler()
    sampler.start()
    files = sorted(Path(args.corpus).glob("*.jsonl"))
    filters = "none" if args.mode.startswith("nofilter") else "prose"
    source = {"paths": [str(f) for f in files], "name": "bench38", "kind": "jsonl", "filters": filters}
    on = args.mode.endswith("on")
    start = time.perf_counter()
    m = prepare_dataset(
        sources=[source],
        tokenizer=args.tokenizer,
        output=args.out,
        num_workers=args.workers,
        overwrite=True,
        progress=False,
        decontaminate=DecontaminateConfig(enabled=on, data_dir=args.benchmarks),
    )
    wall = time.perf_counter() - start
    sampler.running = False
    sampler.join()
    d = m["decontamination"]
    samples = Path(args.out) / "rejected" / "decontamination.jsonl"
    result = {
        "mode": args.mode,
        "wall_s": wall,
        "bytes_read": m["sources"][0]["read"]["bytes"],
        "documents_read": m["sources"][0]["documents_read"],
        "documents_kept": m["num_documents"],
        "stages": m["stages"],
        "decontamination": {k: d.get(k) for k in ("documents_checked", "documents_removed", "index")},
        "removed": {name: b["documents_removed"] for name, b in d.get("benchmarks", {}).items()},
        "samples": [json.loads(li) for li in samples.read_text().splitlines()] if samples.exists() else [],
        "rss_parent_mb": sampler.parent,
        "rss_worker_mb": sampler.worker,
        "rss_total_mb": sampler.total,
    }
    print("RESULT " + json.dumps(result))


def index_child(args: argparse.Namespace) -> None:
    """Inside a subprocess: find the files, build the index, report time, size and peak RSS."""
    import tempfile

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from lit_llm.data.decontaminate import DecontaminateConfig, prepare_index, resolve_plan

    imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    plan = resolve_plan(DecontaminateConfig(data_dir=args.benchmarks))
    resolved = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        _, info = prepare_index(plan, Path(tmp), progress=False)
    out = {
        "resolve_s": resolved,
        "build_s": info["build_seconds"],
        "info": info,
        "rss_before_mb": before,
        "rss_imported_mb": imported,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print("RESULT " + json.dumps(out))


def run_child(mode: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", "--mode", mode, "--corpus", args.corpus]
    cmd += [
        "--tokenizer",
        args.tokenizer,
        "--out",
        str(Path(args.out) / mode.replace(", ", "-")),
        "--workers",
        str(args.workers),
    ]
    cmd += ["--benchmarks", args.benchmarks]
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'bench'}", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(next(li for li in proc.stdout.splitlines() if li.startswith("RESULT "))[7:])


def report(index: dict, runs: dict, workers: int) -> None:
    mb, info = 1e6, index["info"]
    per = ", ".join(
        f"{name} {b['items']} items / {b['ngrams']:,} n-grams" for name, b in info["per_benchmark"].items()
    )
    print(f"\nindex: {per}; {info['whole']} short items matched whole")
    print(
        f"  find + sha256 the files {index['resolve_s']:.2f} s, build {index['build_s']:.2f} s; "
        f"{info['bytes'] / mb:.1f} MB on disk (n-grams {info['ngrams']:,}, bitmap 2^{info['ngrams_bitmap_bits']} "
        f"bits); peak RSS {index['rss_peak_mb']:.0f} MB ({index['rss_peak_mb'] - index['rss_imported_mb']:.0f} "
        "MB over the imports)"
    )
    print(f"\nwhole prepare on bench38 ({workers} worker processes; wall clock on a shared 2-core machine)")
    print(
        "  run             wall s   MB/s   kept docs   CPU s  decontaminate CPU s (share, MB/s per core)  "
        "peak RSS MB (parent/worker/sum)"
    )
    for key, r in runs.items():
        st, size = r["stages"], r["bytes_read"] / mb
        cpu = st["tasks_parent_cpu"] + sum(
            st[k] for k in ("filter", "decontaminate", "hash", "minhash", "tokenize")
        )
        own = st["decontaminate"] if key.endswith("on") else 0.0
        stage = f"{own:6.2f} ({own / cpu:5.1%}, {size / own:5.1f})" if own else f"{'-':>6}"
        print(
            f"  {key:<14} {r['wall_s']:7.1f}  {size / r['wall_s']:5.2f}  {r['documents_kept']:9d}  {cpu:6.1f}  "
            f"{stage:<42} {r['rss_parent_mb']:.0f}/{r['rss_worker_mb']:.0f}/{r['rss_total_mb']:.0f}"
        )
    for mode in ("full", "nofilter"):
        off, on = runs[f"{mode}, off"], runs[f"{mode}, on"]
        d = on["decontamination"]
        print(
            f"{mode}: on/off wall {on['wall_s'] / off['wall_s']:.3f}; checked {d['documents_checked']} documents, "
            f"removed {d['documents_removed']} ({', '.join(f'{k} {v}' for k, v in on['removed'].items())})"
        )
    for s in runs["nofilter, on"]["samples"]:
        print(f"  removed {s['id']}: {s['reason']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="/tmp/bench38")
    ap.add_argument("--benchmarks", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--out", default="/tmp/bench_decontaminate")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="full, off", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        index_child(args) if args.mode == "index" else child(args)
        return
    Path(args.out).mkdir(parents=True, exist_ok=True)
    ensure_inputs(args)
    index = run_child("index", args)
    runs: dict[str, dict] = {}
    for _ in range(args.repeats):
        for mode in ("full, off", "full, on", "nofilter, off", "nofilter, on"):
            r = run_child(mode, args)
            print(f"{mode}: {r['wall_s']:.1f} s", flush=True)
            if mode not in runs or r["wall_s"] < runs[mode]["wall_s"]:
                runs[mode] = r
    report(index, runs, args.workers)
    print("\nJSON " + json.dumps({"index": index, "runs": runs}))


if __name__ == "__main__":
    main()
