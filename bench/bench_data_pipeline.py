"""Benchmark for `lit-llm data prepare`: end-to-end MB/s and tokens/s, per-stage time, peak
RSS at two corpus sizes, the tokenize stage against raw `tokenizers`, MinHash in documents/s.

    python ../shared/tools/build_bench_corpus.py --out /tmp/bench38      # once (37.9 MB, 8 jsonl files)
    .venv/bin/python bench/bench_data_pipeline.py --corpus /tmp/bench38 --workers 2
    .venv/bin/python bench/bench_data_pipeline.py --tokenizer tok/8k     # reuse a tokenizer

Runs, each `prepare_dataset` in its own subprocess (so peak RSS is per run):
  full       the whole pipeline (prose filters, exact + MinHash dedup, tokenize, shards) on half and
             all of bench38 (files 0-3 vs 0-7): end-to-end MB/s, tokens/s, stage times, peak RSS;
  nofilter   filters off, so MinHash and tokenization see every document (as datatrove's figures):
             MinHash documents/s and the tokenize stage against raw `tokenizers` on the same documents.
Stage times are CPU seconds summed over the worker processes (the machine is shared, so wall time
is noisy); "per core" figures divide work by CPU seconds, "2 cores" multiplies by the workers.
Without --tokenizer an 8k byte-level BPE is trained on a 10M-character sample of the corpus first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILDER = REPO.parent / "shared" / "tools" / "build_bench_corpus.py"


def _rss_mb(pid: int | str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler(threading.Thread):
    """Samples the RSS of this process and its children every 50 ms (Linux /proc)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.parent = self.worker = self.total = 0.0
        self.running = True

    def children(self) -> list[str]:
        me = str(os.getpid())
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if stat.read_text().rsplit(")", 1)[1].split()[1] == me:
                    out.append(stat.parent.name)
            except (OSError, IndexError):
                continue
        return out

    def run(self) -> None:
        while self.running:
            parent = _rss_mb(os.getpid())
            workers = [_rss_mb(pid) for pid in self.children()]
            self.parent = max(self.parent, parent)
            self.worker = max([self.worker, *workers])
            self.total = max(self.total, parent + sum(workers))
            time.sleep(0.05)


def child(args: argparse.Namespace) -> None:
    """Inside the subprocess: one prepare run; print its figures as JSON."""
    from lit_llm.data.prepare import prepare_dataset

    sampler = RssSampler()
    sampler.start()
    files = sorted(Path(args.corpus).glob("*.jsonl"))[: args.files]
    source = {
        "paths": [str(f) for f in files],
        "name": "bench38",
        "kind": "jsonl",
        "filters": "none" if args.mode == "nofilter" else "prose",
    }
    start = time.perf_counter()
    m = prepare_dataset(
        sources=[source],
        tokenizer=args.tokenizer,
        output=args.out,
        num_workers=args.workers,
        overwrite=True,
        progress=False,
    )
    wall = time.perf_counter() - start
    sampler.running = False
    sampler.join()
    src = m["sources"][0]
    print(
        "RESULT "
        + json.dumps(
            {
                "mode": args.mode,
                "files": len(files),
                "wall_s": wall,
                "bytes_read": src["read"]["bytes"],
                "documents_read": src["documents_read"],
                "documents_in": m["filters"]["documents_in"],
                "documents_filtered": m["filters"]["documents_out"],
                "chars_filtered": m["filters"]["chars_out"],
                "documents_kept": m["num_documents"],
                "tokens": m["num_tokens"],
                "bytes_kept": m["num_bytes"],
                "exact_removed": m["dedup"]["exact_duplicates_removed"],
                "near_removed": m["dedup"]["near_duplicates_removed"],
                "stages": m["stages"],
                "rss_parent_mb": sampler.parent,
                "rss_worker_mb": sampler.worker,
                "rss_total_mb": sampler.total,
            }
        )
    )


def run_child(mode: str, files: int, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--mode",
        mode,
        "--files",
        str(files),
        "--corpus",
        args.corpus,
        "--tokenizer",
        args.tokenizer,
        "--out",
        str(Path(args.out) / f"{mode}-{files}"),
        "--workers",
        str(args.workers),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(next(li for li in proc.stdout.splitlines() if li.startswith("RESULT "))[7:])


def raw_child(args: argparse.Namespace) -> None:
    """Inside a subprocess: raw `tokenizers` on the documents the nofilter run tokenized (bench38 cut
    into the same blocks), with the thread count TOKENIZERS_PARALLELISM / RAYON_NUM_THREADS allow."""
    import tokenizers

    from lit_llm.data.recipe import SplitConfig
    from lit_llm.data.task_input import BATCH_CHARS, BATCH_DOCS, cut_blocks

    texts = []
    for f in sorted(Path(args.corpus).glob("*.jsonl")):
        for line in f.open(encoding="utf-8"):
            texts += cut_blocks(json.loads(line)["text"], SplitConfig().max_doc_chars)
    batches, batch, size = (
        [],
        [],
        0,
    )  # the pipeline's batching: BATCH_CHARS characters or BATCH_DOCS documents
    for t in texts:
        batch.append(t)
        size += len(t)
        if size >= BATCH_CHARS or len(batch) >= BATCH_DOCS:
            batches, batch, size = [*batches, batch], [], 0
    batches += [batch] if batch else []
    tok = tokenizers.Tokenizer.from_file(str(Path(args.tokenizer) / "tokenizer.json"))
    out = {"bytes": sum(len(t.encode()) for t in texts), "documents": len(texts), "batches": len(batches)}
    for name in ("encode_batch", "encode_batch_fast"):
        wall, cpu, tokens = time.perf_counter(), time.process_time(), 0
        for b in batches:
            tokens += sum(len(e.ids) for e in getattr(tok, name)(b, add_special_tokens=False))
        out[name] = {
            "wall_s": time.perf_counter() - wall,
            "cpu_s": time.process_time() - cpu,
            "tokens": tokens,
        }
    print("RESULT " + json.dumps(out))


def raw_tokenizers(args: argparse.Namespace) -> dict:
    """Raw `tokenizers` with one thread (per-core speed) and with `workers` threads (wall speed)."""
    out = {}
    for threads in (1, args.workers):
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "TOKENIZERS_PARALLELISM": "true" if threads > 1 else "false",
            "RAYON_NUM_THREADS": str(threads),
        }
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--mode",
            "raw",
            "--corpus",
            args.corpus,
            "--tokenizer",
            args.tokenizer,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        out[f"{threads} thread"] = json.loads(
            next(li for li in proc.stdout.splitlines() if li.startswith("RESULT "))[7:]
        )
    return out


def ensure_inputs(args: argparse.Namespace) -> None:
    corpus = Path(args.corpus)
    if not list(corpus.glob("*.jsonl")):
        if not BUILDER.exists():
            sys.exit(f"{corpus}: no bench corpus and no {BUILDER} to build one")
        subprocess.run([sys.executable, str(BUILDER), "--out", str(corpus)], check=True)
    if args.tokenizer is None:
        from lit_llm.data.tokenizer_training import train_tokenizer

        args.tokenizer = str(Path(args.out) / "tok8k")
        start = time.perf_counter()
        train_tokenizer(
            [str(corpus)],
            args.tokenizer,
            vocab_size=8192,
            max_chars=10_000_000,
            overwrite=True,
            progress=False,
        )
        print(f"trained an 8k tokenizer in {time.perf_counter() - start:.1f} s -> {args.tokenizer}")


def report(runs: dict, raw: dict, workers: int) -> None:
    mb = 1e6
    print(f"\nend to end ({workers} worker processes; wall clock on a shared 2-core machine)")
    print(
        "  run             MB in   docs in  kept   tokens   wall s   MB/s   Mtok/s   CPU s  MB/CPU-s  "
        "peak RSS MB (parent/worker/sum)"
    )
    for key, r in runs.items():
        st = r["stages"]
        cpu = st["tasks_parent_cpu"] + sum(st[k] for k in ("filter", "hash", "minhash", "tokenize"))
        print(
            f"  {key:<14} {r['bytes_read'] / mb:6.1f}  {r['documents_read']:7d} {r['documents_kept']:6d} "
            f"{r['tokens'] / 1e6:7.2f}M  {r['wall_s']:6.1f}  {r['bytes_read'] / mb / r['wall_s']:5.2f}  "
            f"{r['tokens'] / 1e6 / r['wall_s']:6.3f}  {cpu:6.1f}  {r['bytes_read'] / mb / cpu:6.2f}    "
            f"{r['rss_parent_mb']:.0f}/{r['rss_worker_mb']:.0f}/{r['rss_total_mb']:.0f}"
        )
    print(
        "  (CPU s: the task process plus the workers' filter/hash/minhash/tokenize; on 2 idle cores the wall\n"
        "   time would be about CPU s / 2)"
    )
    full, nof = runs["full, 8 files"], runs["nofilter, 8"]
    st, sn = full["stages"], nof["stages"]
    print("\nstages, full run over all of bench38 (CPU seconds summed over workers; MB/s per core)")
    print(f"  read {st['read']:.1f} s wall in the parent ({full['bytes_read'] / mb / st['read']:.0f} MB/s)")
    print(
        f"  filters {st['filter']:.1f} s: {full['bytes_read'] / mb / st['filter']:.2f} MB/s per core, "
        f"{full['bytes_read'] / mb / st['filter'] * workers:.2f} MB/s on {workers} cores "
        f"(kept {full['documents_filtered']} of {full['documents_in']} documents)"
    )
    for name in ("hash", "minhash", "tokenize", "write"):
        print(
            f"  {name} {st[name]:.2f} s (on the {full['documents_filtered']} documents that passed the filters)"
        )
    print(f"  merge: {', '.join(f'{k} {v:.2f} s' for k, v in st['merge'].items())}")
    docs = nof["documents_in"]
    print(
        f"\nMinHash over every document (nofilter run): {docs} documents in {sn['minhash']:.2f} CPU s = "
        f"{docs / sn['minhash']:.0f} docs/s per core, {docs / sn['minhash'] * workers:.0f} docs/s on {workers} cores, "
        f"{nof['bytes_read'] / mb / sn['minhash']:.1f} MB/s per core"
    )
    ours = nof["bytes_read"] / mb / sn["tokenize"]
    print(
        f"tokenize stage (nofilter run): {nof['bytes_read'] / mb:.1f} MB in {sn['tokenize']:.2f} CPU s = "
        f"{ours:.2f} MB/s per core, {nof['tokens'] / sn['tokenize'] / 1e6:.2f} Mtok/s per core"
    )
    for threads, r in raw.items():
        for name in ("encode_batch", "encode_batch_fast"):
            x = r[name]
            print(
                f"raw tokenizers {name}, {threads}: {r['bytes'] / mb / x['wall_s']:.2f} MB/s wall, "
                f"{r['bytes'] / mb / x['cpu_s']:.2f} MB/s per CPU-second"
            )
    one = raw["1 thread"]["encode_batch_fast"]
    per_core = raw["1 thread"]["bytes"] / mb / one["cpu_s"]
    print(
        f"tokenize stage / raw encode_batch_fast (one thread, CPU time): {ours / per_core:.2f}; "
        f"tokens: stage {nof['tokens']} (with one eos per document) vs raw {one['tokens']} + {raw['1 thread']['documents']}"
    )
    print(
        f"parent process: {sn.get('tasks_parent_cpu', float('nan')):.1f} CPU s (reading, batching, writing chunks)"
    )
    half, fullr = runs["full, 4 files"], full
    print(
        f"\nmemory vs corpus size: {half['bytes_read'] / mb:.1f} MB -> peak RSS parent {half['rss_parent_mb']:.0f} MB, "
        f"worker {half['rss_worker_mb']:.0f} MB; {fullr['bytes_read'] / mb:.1f} MB -> parent "
        f"{fullr['rss_parent_mb']:.0f} MB, worker {fullr['rss_worker_mb']:.0f} MB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="/tmp/bench38")
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--out", default="/tmp/bench_data_pipeline")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="full", help=argparse.SUPPRESS)
    ap.add_argument("--files", type=int, default=8, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        raw_child(args) if args.mode == "raw" else child(args)
        return
    Path(args.out).mkdir(parents=True, exist_ok=True)
    ensure_inputs(args)
    runs = {}
    for mode, files in (("full", 4), ("full", 8), ("nofilter", 8)):
        key = f"{mode}, {files} files" if mode == "full" else f"{mode}, {files}"
        runs[key] = run_child(mode, files, args)
        print(f"{key}: {runs[key]['wall_s']:.1f} s", flush=True)
    raw = raw_tokenizers(args)
    report(runs, raw, args.workers)
    print("\nJSON " + json.dumps({"runs": runs, "raw_tokenizers": raw}))


if __name__ == "__main__":
    main()
