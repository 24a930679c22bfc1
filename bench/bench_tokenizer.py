"""Benchmark for the tokenizer: training time, peak RSS, bytes/token, encode throughput.

    .venv/bin/python bench/bench_tokenizer.py                 # vocab 8k and 32k
    .venv/bin/python bench/bench_tokenizer.py --vocab 8000 --out /tmp/bench_tok

Trains on ../shared/data/tinyshakespeare + the Python standard library sources (read as a code
tree), each vocabulary size in its own subprocess so peak RSS is per run. Bytes per token are
measured on the trainer's held-out blocks (1% of the corpus, never trained on) and on WikiText-2
valid (out of domain). Encode throughput compares the kit's `Tokenizer` with calling
`tokenizers` directly on the same documents; the ratio shows the kit's overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHAKESPEARE = DATA / "tinyshakespeare" / "input.txt"
WIKITEXT = DATA / "wikitext2" / "valid.txt"
STDLIB = sysconfig.get_paths()["stdlib"]


def peak_rss_mb() -> float:
    """This process' peak RSS. VmHWM, because Linux carries ru_maxrss across fork+exec, so a child
    of a big parent would report the parent's size."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def train_once(vocab: int, out: Path, max_chars: int | None) -> dict:
    """Runs inside the subprocess: train, then report time and this process' peak RSS."""
    from lit_llm.data.tokenizer_training import train_tokenizer

    start = time.perf_counter()
    inputs = [str(SHAKESPEARE), f"code:{STDLIB}"]
    tok = train_tokenizer(inputs, out, vocab_size=vocab, max_chars=max_chars, overwrite=True, progress=False)
    seconds = time.perf_counter() - start
    report = tok.report
    return {
        "vocab": tok.vocab_size,
        "seconds": round(seconds, 2),
        "peak_rss_mb": peak_rss_mb(),
        "chars_trained": report["chars_trained"],
        "bytes_per_token_heldout": report["bytes_per_token"],
        "heldout_bytes": report["bytes_per_token_sample"]["bytes"],
        "sha256": tok.sha256,
    }


def encode_documents() -> list[str]:
    """Documents for throughput: WikiText-2 valid paragraphs and 100 standard library files."""
    docs = [line for line in WIKITEXT.read_text(encoding="utf-8").split("\n") if line.strip()]
    py = sorted(Path(STDLIB).glob("*.py"))[:100]
    return docs + [p.read_text(encoding="utf-8", errors="replace") for p in py]


def best_rates(fns: dict, nbytes: int, rounds: int = 5) -> dict:
    """MB/s of each function, best of `rounds`, the functions interleaved so that load on the
    machine hits them alike (the first round also warms each tokenizer's BPE cache)."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: round(nbytes / seconds / 1e6, 3) for name, seconds in best.items()}


def throughput(folder: Path) -> dict:
    import tokenizers

    from lit_llm.tokenizer import load_tokenizer

    tok = load_tokenizer(folder)
    raw = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    docs = encode_documents()
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    batches = [docs[i : i + 1000] for i in range(0, len(docs), 1000)]
    wiki = WIKITEXT.read_text(encoding="utf-8")
    fns = {
        "kit_single": lambda: [tok.encode(d) for d in docs],
        "raw_single": lambda: [raw.encode(d, add_special_tokens=False).ids for d in docs],
        "kit_batch": lambda: [tok.encode_batch(b) for b in batches],
        "raw_batch_fast": lambda: [[e.ids for e in raw.encode_batch_fast(b)] for b in batches],
        "raw_batch_offsets": lambda: [[e.ids for e in raw.encode_batch(b)] for b in batches],
    }
    figures = {
        "bytes_per_token_wikitext2": round(len(wiki.encode()) / len(tok.encode(wiki)), 3),
        "encode_mb": round(nbytes / 1e6, 2),
    }
    return figures | best_rates(fns, nbytes)


def run_child(vocab: int, max_chars: int | None, out: Path, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--out", str(out), "--_child", str(vocab)]
    cmd += ["--_max_chars", str(max_chars)] if max_chars else []
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"training run failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, nargs="+", default=[8000, 32000])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_tokenizer"))
    parser.add_argument(
        "--scaling_chars", type=int, default=8_000_000, help="also train vocab[0] on this many chars"
    )
    parser.add_argument("--_child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_max_chars", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        out = args.out / f"v{args._child}-{args._max_chars or 'all'}"
        print(json.dumps(train_once(args._child, out, args._max_chars)))
        return
    if not SHAKESPEARE.exists():
        sys.exit(f"missing {SHAKESPEARE}: this benchmark needs ../shared/data")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    print(f"corpus: {SHAKESPEARE} + code:{STDLIB}   cpus: {os.cpu_count()}")
    rows = []
    for vocab in args.vocab:
        row = run_child(vocab, None, args.out, env)
        row.update(throughput(args.out / f"v{vocab}-all"))
        rows.append(row)
        print(json.dumps(row))
    again = run_child(args.vocab[0], None, args.out, env)
    same = "identical" if again["sha256"] == rows[0]["sha256"] else "DIFFERENT"
    print(f"determinism: a second process at vocab {args.vocab[0]} wrote a {same} tokenizer.json")
    if args.scaling_chars:  # peak RSS against corpus size: the trainer streams, so it should barely move
        row = run_child(args.vocab[0], args.scaling_chars, args.out, env)
        print(json.dumps(row))
        print(
            f"peak RSS at vocab {args.vocab[0]}: {row['chars_trained']:,} chars -> {row['peak_rss_mb']} MB; "
            f"{rows[0]['chars_trained']:,} chars -> {rows[0]['peak_rss_mb']} MB"
        )
    print()
    print(
        "| vocab | train s | peak RSS MB | bytes/token held-out | bytes/token wikitext2 | encode MB/s single kit / raw (ratio) | batched kit / raw fast (ratio) | raw batch w/ offsets |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['vocab']} | {r['seconds']} | {r['peak_rss_mb']} | {r['bytes_per_token_heldout']} | "
            f"{r['bytes_per_token_wikitext2']} | {r['kit_single']:.2f} / {r['raw_single']:.2f} "
            f"({r['kit_single'] / r['raw_single']:.2f}) | {r['kit_batch']:.2f} / {r['raw_batch_fast']:.2f} "
            f"({r['kit_batch'] / r['raw_batch_fast']:.2f}) | {r['raw_batch_offsets']:.2f} |"
        )


if __name__ == "__main__":
    main()
