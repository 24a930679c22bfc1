"""Benchmark the prose quality filters against datatrove 0.10 on bench38: speed and agreement.

    .venv/bin/python bench/bench_filters.py                       # /tmp/bench38, 2 workers
    .venv/bin/python bench/bench_filters.py CORPUS_DIR --workers 1 --limit 500

Runs the kit's prose filter set (Gopher repetition, Gopher quality, C4, FineWeb; defaults equal
to datatrove's FineWeb recipe) and, when datatrove (and spaCy, its English word tokenizer) is
installed, datatrove's same four filters on the same documents, each in a pool of `--workers`
processes. Prints MB/s (wall, and per CPU-second summed over workers), the speed ratio, the
keep/drop agreement, the disagreements by (kit filter, datatrove filter), and per-filter counts.
The corpus is built with ../shared/tools/build_bench_corpus.py when the folder is missing.
datatrove is a dev/bench dependency only: `pip install "datatrove==0.10.1" spacy`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD_TOOL = ROOT.parent / "shared" / "tools" / "build_bench_corpus.py"
DT_ORDER = ("gopher_repetition", "gopher_quality", "c4", "fineweb")


def load_corpus(folder: Path, limit: int | None) -> list[tuple[str, str]]:
    """(id, text) of every document of the corpus' JSON Lines shards, in a fixed order."""
    if not folder.exists():
        print(f"building {folder} with {BUILD_TOOL}", flush=True)
        subprocess.run([sys.executable, str(BUILD_TOOL), "--out", str(folder)], check=True)
    docs = []
    for shard in sorted(folder.glob("*.jsonl")):
        with open(shard, encoding="utf-8") as fh:
            docs += [(row["id"], row["text"]) for row in map(json.loads, fh)]
    return docs[:limit] if limit else docs


def batches(docs: list, size: int = 32) -> list[list]:
    return [docs[i : i + size] for i in range(0, len(docs), size)]


# ---------------------------------------------------------------------- the kit


_KIT_PIPELINE = None  # this worker process' FilterPipeline (as _DT_FILTERS holds datatrove's filters)


def _kit_init() -> None:
    global _KIT_PIPELINE
    from lit_llm.data.filters import FilterConfig, FilterPipeline

    _KIT_PIPELINE = FilterPipeline(FilterConfig(), "prose")


def _kit_batch(batch: list[tuple[str, str]]):
    start = time.process_time()
    pipe = _KIT_PIPELINE
    out = []
    for doc_id, text in batch:
        kept = pipe(text, doc_id)
        out.append((doc_id, kept, pipe.rejected_by))
    return out, pipe.pop_state(), time.process_time() - start


def run_kit(docs, workers: int) -> dict:
    from lit_llm.data.filters import FilterConfig, FilterPipeline

    total = FilterPipeline(FilterConfig(), "prose")
    results, cpu = {}, 0.0
    start = time.perf_counter()
    with mp.get_context("fork").Pool(workers, initializer=_kit_init) as pool:
        for out, state, seconds in pool.imap(_kit_batch, batches(docs)):
            total.merge_state(state)
            cpu += seconds
            for doc_id, kept, dropped_by in out:
                results[doc_id] = (kept, dropped_by)
    return {"wall": time.perf_counter() - start, "cpu": cpu, "results": results, "stats": total.stats()}


# ---------------------------------------------------------------------- datatrove

_DT_FILTERS: list | None = None


def _dt_init() -> None:
    global _DT_FILTERS
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    _DT_FILTERS = [
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),  # as in datatrove's examples/fineweb.py
        FineWebQualityFilter(),
    ]


def _dt_batch(batch: list[tuple[str, str]]):
    from datatrove.data import Document

    start = time.process_time()
    out = []
    for doc_id, text in batch:
        doc = Document(text=text, id=doc_id)
        dropped_by, reason = None, None
        for name, flt in zip(DT_ORDER, _DT_FILTERS):
            verdict = flt.filter(doc)
            if verdict is not True:
                dropped_by, reason = name, verdict[1] if isinstance(verdict, tuple) else None
                break
        out.append((doc_id, None if dropped_by else doc.text, dropped_by, reason))
    return out, time.process_time() - start


def datatrove_available() -> str | None:
    """None when datatrove and its English word tokenizer load, else why not."""
    try:
        from datatrove.utils.word_tokenizers import load_word_tokenizer

        load_word_tokenizer("en").word_tokenize("probe text")
    except Exception as e:  # ImportError, or spaCy missing behind datatrove's own check
        return f"{type(e).__name__}: {e}".splitlines()[0]
    return None


def run_datatrove(docs, workers: int) -> dict:
    results, reasons, cpu = {}, Counter(), 0.0
    start = time.perf_counter()
    with mp.get_context("fork").Pool(workers, initializer=_dt_init) as pool:
        for out, seconds in pool.imap(_dt_batch, batches(docs)):
            cpu += seconds
            for doc_id, kept, dropped_by, reason in out:
                results[doc_id] = (kept, dropped_by)
                if dropped_by:
                    reasons[(dropped_by, reason)] += 1
    return {"wall": time.perf_counter() - start, "cpu": cpu, "results": results, "reasons": reasons}


# ---------------------------------------------------------------------- report


def report_agreement(docs, kit: dict, dt: dict) -> None:
    agree, same_text, both_kept = 0, 0, 0
    disagreements: Counter = Counter()
    examples: dict = {}
    for doc_id, _ in docs:
        (k_text, k_by), (d_text, d_by) = kit["results"][doc_id], dt["results"][doc_id]
        if (k_text is None) == (d_text is None):
            agree += 1
            if k_text is not None:
                both_kept += 1
                same_text += k_text == d_text
        else:
            key = (k_by or "kept", d_by or "kept")
            disagreements[key] += 1
            examples.setdefault(key, []).append(doc_id)
    n = len(docs)
    print(f"\nagreement (keep/drop): {agree}/{n} = {100 * agree / n:.2f}% (target >= 95%)")
    print(f"kept by both with identical text after C4: {same_text}/{both_kept}")
    if disagreements:
        print("disagreements (kit decision, datatrove decision): count, examples")
        for (k_by, d_by), count in disagreements.most_common():
            print(f"  kit {k_by:18s} datatrove {d_by:18s} {count:5d}  {examples[(k_by, d_by)][:4]}")
    print("\nper filter, documents removed (first filter to reject, same order in both):")
    dt_counts = Counter(by for _, by in dt["results"].values() if by)
    print(f"  {'filter':18s} {'kit':>7s} {'datatrove':>10s}")
    for name in DT_ORDER:
        print(f"  {name:18s} {kit['stats']['filters'][name]['documents_removed']:7d} {dt_counts[name]:10d}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", nargs="?", default="/tmp/bench38", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N documents only")
    ap.add_argument("--no-datatrove", action="store_true")
    args = ap.parse_args()

    docs = load_corpus(args.corpus, args.limit)
    mb = sum(len(t.encode("utf-8", "surrogatepass")) for _, t in docs) / 1e6
    print(f"corpus {args.corpus}: {len(docs)} documents, {mb:.2f} MB; {args.workers} worker processes")

    kit = run_kit(docs, args.workers)
    st = kit["stats"]
    print(
        f"kit prose filters:       {kit['wall']:7.1f} s  {mb / kit['wall']:6.2f} MB/s  "
        f"({mb / kit['cpu']:.2f} MB per CPU-second); kept {st['documents_out']}/{st['documents_in']}"
    )
    why = "--no-datatrove" if args.no_datatrove else datatrove_available()
    if why:
        print(f"datatrove not run ({why}); install it with: pip install 'datatrove==0.10.1' spacy")
        print(json.dumps(st["filters"], indent=1))
        return
    dt = run_datatrove(docs, args.workers)
    kept = sum(t is not None for t, _ in dt["results"].values())
    print(
        f"datatrove 0.10 filters:  {dt['wall']:7.1f} s  {mb / dt['wall']:6.2f} MB/s  "
        f"({mb / dt['cpu']:.2f} MB per CPU-second); kept {kept}/{len(docs)}"
    )
    print(
        f"speed ratio kit/datatrove: {dt['wall'] / kit['wall']:.1f}x wall, {dt['cpu'] / kit['cpu']:.1f}x CPU (target >= 3x)"
    )
    report_agreement(docs, kit, dt)


if __name__ == "__main__":
    main()
