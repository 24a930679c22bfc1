"""Benchmark for the tokenizer (issue 3): training time, peak RSS, bytes/token, encode throughput.

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


def train_once(vocab: int, out: Path) -> dict:
    """Runs inside the subprocess: train, then report time and this process' peak RSS."""
    from lit_llm.tokenizer import train_tokenizer

    start = time.perf_counter()
    tok = train_tokenizer(
        [str(SHAKESPEARE), f"code:{STDLIB}"], out, vocab_size=vocab, overwrite=True, progress=False
    )
    seconds = time.perf_counter() - start
    report = tok.report
    return {
        "vocab": tok.vocab_size,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
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


def best_rates(fns: dict, nbytes: int, rounds: int = 3) -> dict:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, nargs="+", default=[8000, 32000])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_tokenizer"))
    parser.add_argument("--_child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print(json.dumps(train_once(args._child, args.out / f"v{args._child}")))
        return
    if not SHAKESPEARE.exists():
        sys.exit(f"missing {SHAKESPEARE}: this benchmark needs ../shared/data")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    print(f"corpus: {SHAKESPEARE} + code:{STDLIB}   cpus: {os.cpu_count()}")
    rows = []
    for vocab in args.vocab:
        cmd = [sys.executable, __file__, "--out", str(args.out), "--_child", str(vocab)]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        row = json.loads(result.stdout.strip().splitlines()[-1])
        row.update(throughput(args.out / f"v{vocab}"))
        rows.append(row)
        print(json.dumps(row))
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
