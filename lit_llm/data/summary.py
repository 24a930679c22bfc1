"""`lit-llm data inspect FOLDER`: a prepared shard folder's summary and a few documents decoded to text.

    lit-llm data inspect data/default                       # sources, tokens, filters, dedup, split
    lit-llm data inspect data/default --num_docs 5 --split val --source shakespeare
    lit-llm data inspect data/default --verify true         # sha256 of every shard vs the manifest

`summarize(manifest, folder)` is the text `lit-llm data prepare` prints when it finishes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lit_llm.data.shards import Manifest, ShardSet
from lit_llm.errors import UserError
from lit_llm.tokenizer import load_tokenizer


def _n(x: float) -> str:
    """1234567 -> '1.23M' (short counts for tables)."""
    x = float(x)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.0f}" if x == int(x) else f"{x:.3g}"


def _table(rows: list[list], header: list[str]) -> list[str]:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        return "  " + "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
        )

    return [fmt(r) for r in cells]


def _sources(m: dict) -> list[str]:
    rows = [
        [
            s["name"],
            f"{s.get('weight', 1.0):g}",
            s.get("kind", "?"),
            s.get("filters", "?"),
            _n(s.get("documents_read", 0)),
            _n(s.get("documents_after_filters", 0)),
            _n(s.get("decontaminated", 0)),
            _n(s.get("exact_duplicates_removed", 0)),
            _n(s.get("near_duplicates_removed", 0)),
            _n(s.get("num_documents", 0)),
            _n(s.get("train", {}).get("num_tokens", 0)),
            _n(s.get("val", {}).get("num_tokens", 0)),
        ]
        for s in m.get("sources", [])
    ]
    header = [
        "source",
        "weight",
        "kind",
        "filters",
        "read",
        "filtered",
        "decontam",
        "exact dup",
        "near dup",
        "kept",
        "train tok",
        "val tok",
    ]
    lines = ["sources (documents; blocks count as documents after the read)", *_table(rows, header)]
    lines += [
        f"  {s['name']}: max_chars left {_n(s['sampled_out'])} documents unused (a hash sample)"
        for s in m.get("sources", [])
        if s.get("sampled_out")
    ]
    lines += [f"  skipped {s['name']}: {s['reason']}" for s in m.get("skipped_sources", [])]
    lines += [_heavy_filtering(s) for s in m.get("sources", []) if _filtered_share(s) > HEAVY_FILTERING]
    return lines


HEAVY_FILTERING = 0.3  # a source losing more than this share of its documents to the filters is called out


def _filtered_share(source: dict) -> float:
    """Share of the documents (blocks) the filters saw that they removed."""
    seen = source.get("documents_read", 0) - source.get("sampled_out", 0)
    seen += source.get("blocks", 0) - source.get("documents_cut", 0)  # a cut document is its blocks
    return 1 - source.get("documents_after_filters", 0) / seen if seen > 0 else 0.0


def _heavy_filtering(source: dict) -> str:
    share, filters = _filtered_share(source), source.get("filters", "?")
    return (
        f"  NOTE {source['name']}: the {filters} filters removed {share:.0%} of its documents (samples in "
        "rejected/); set `filters: none` on a source whose text is not web prose (verse, lists, logs)"
    )


def _filters(m: dict) -> list[str]:
    f = m.get("filters", {})
    rows = []
    for name, c in f.get("per_filter", {}).items():
        reasons = sorted(c.get("reasons", {}).items(), key=lambda kv: -kv[1])[:3]
        rows.append(
            [
                name,
                _n(c.get("documents_in", 0)),
                _n(c.get("documents_removed", 0)),
                _n(c.get("chars_removed", 0)),
                ", ".join(f"{r}: {n}" for r, n in reasons),
            ]
        )
    head = f"filters: kept {_n(f.get('documents_out', 0))} of {_n(f.get('documents_in', 0))} documents"
    if not rows:
        return [head + " (no filters ran)"]
    return [head, *_table(rows, ["filter", "seen", "removed", "chars removed", "top reasons"])]


def _dedup(m: dict) -> list[str]:
    d = m.get("dedup", {})
    near = d.get("near", {})
    line = f"dedup: exact {d.get('exact_duplicates_removed', 0)} removed, near {d.get('near_duplicates_removed', 0)} removed"
    if near.get("enabled", True) and "bands" in near:
        line += (
            f" (MinHash word {near.get('n_gram')}-grams, {near['bands']} bands x {near.get('rows')} rows, "
            f"50% caught at similarity {near.get('similarity_at_50pct')}; {near.get('clusters', 0)} clusters)"
        )
    return [line]


def _decontamination(m: dict) -> list[str]:
    d = m.get("decontamination")
    if not d or not d.get("enabled"):
        return ["decontamination: off"] if d else []
    if not d.get("checked"):
        return [f"decontamination: not checked (no benchmark files in {d.get('data_dir')})"]
    per = ", ".join(f"{name} {b.get('documents_removed', 0)}" for name, b in d.get("benchmarks", {}).items())
    missing = f"; not found: {', '.join(d['not_found'])}" if d.get("not_found") else ""
    return [
        f"decontamination: removed {d.get('documents_removed', 0)} of {_n(d.get('documents_checked', 0))} "
        f"documents sharing a word {d.get('ngram')}-gram with a benchmark test item ({per}{missing}); "
        f"index {_n(d.get('index', {}).get('ngrams') or 0)} n-grams; samples in {d.get('rejected_samples')}"
    ]


def _split(m: dict) -> list[str]:
    s = m.get("split", {})
    tr, va = s.get("train", {}), s.get("val", {})
    how = (
        f"hash, val_fraction {s.get('val_fraction')}"
        if s.get("method") == "hash"
        else f"validation sources {', '.join(s.get('val_sources', []))}"
    )
    line = (
        f"split ({how}): train {_n(tr.get('num_documents', 0))} docs / {_n(tr.get('num_tokens', 0))} tokens, "
        f"val {_n(va.get('num_documents', 0))} docs / {_n(va.get('num_tokens', 0))} tokens"
    )
    if s.get("documents_cut"):
        line += f"; {s['documents_cut']} long documents cut into {s['blocks_made']} blocks"
    return [line]


def _stages(m: dict) -> list[str]:
    st = m.get("stages", {})
    parts = [
        f"{k} {v:.1f}"
        for k, v in st.items()
        if isinstance(v, (int, float)) and k not in ("workers", "num_tasks")
    ]
    merge = st.get("merge", {})
    parts += [f"merge.{k} {v:.1f}" for k, v in merge.items()]
    return (
        [
            f"stages (s, {st.get('workers', '?')} workers x {st.get('num_tasks', 1)} tasks): "
            + ", ".join(parts)
        ]
        if parts
        else []
    )


def summarize(manifest: dict, folder: str | Path = "") -> str:
    """A human summary of a manifest: totals, sources, filters, dedup, split, shards, stage timings."""
    m = manifest
    tok = m.get("tokenizer") or {}
    shards = m.get("shards", [])
    lines = [
        f"data folder {folder}: {_n(m.get('num_documents', 0))} documents, {_n(m.get('num_tokens', 0))} tokens, "
        f"{_n(m.get('num_bytes', 0))} bytes; {len(shards)} shards, {m.get('dtype')}, vocab {m.get('vocab_size')}, "
        f"tokenizer {tok.get('path')} (sha256 {str(tok.get('sha256'))[:12]})",
        *_sources(m),
        *_filters(m),
        *_dedup(m),
        *_decontamination(m),
        *_split(m),
        *_stages(m),
    ]
    return "\n".join(lines)


def _decode_documents(
    folder: Path, manifest: Manifest, split: str, source: str | None, num_docs: int, max_chars: int
) -> list[str]:
    shards = ShardSet.open(folder, split, source)
    if shards.num_documents == 0:
        return [f"(no {split} documents{f' from {source}' if source else ''})"]
    path = manifest.tokenizer_path
    if path is None or not path.exists():
        raise UserError(f"{folder}: the manifest's tokenizer ({path}) is missing; cannot decode")
    tok = load_tokenizer(path)
    eos = (manifest.data.get("tokenizer") or {}).get("eos_id")
    out = []
    for i in np.unique(
        np.linspace(0, shards.num_documents - 1, num=min(num_docs, shards.num_documents)).astype(int)
    ):
        ids = shards.document(int(i))
        ends = "ends with eos" if eos is not None and len(ids) and ids[-1] == eos else "NO eos at the end"
        text = tok.decode(ids[:-1] if ends == "ends with eos" else ids)
        cut = f"\n[... {len(text) - max_chars} more characters]" if len(text) > max_chars else ""
        out.append(
            f"--- {split} document {i} of {shards.num_documents}: {len(ids)} tokens, {ends} ---\n"
            f"{text[:max_chars]}{cut}"
        )
    return out


def inspect_command(
    folder: str,
    num_docs: int = 3,
    split: str = "train",
    source: str | None = None,
    max_chars: int = 600,
    verify: bool = False,
) -> None:
    """Print a shard folder's manifest summary and decode a few documents back to text.

    Args:
        folder: Folder written by `lit-llm data prepare` (with manifest.json).
        num_docs: Documents to decode, evenly spaced over the split (0: none).
        split: train or val.
        source: Only documents of this source.
        max_chars: Characters shown per document.
        verify: Check every shard's size, header and sha256 against the manifest.
    """
    if split not in ("train", "val"):
        raise UserError(f"split must be train or val, got {split!r}")
    path = Path(folder)
    manifest = Manifest.load(path)
    print(summarize(manifest.data, path))
    if verify:
        for name in ("train", "val"):
            shards = ShardSet.open(path, name, verify_checksums=True)
            print(
                f"verified {name}: {len(shards.shards)} shards, {shards.num_documents} documents, "
                f"{shards.num_tokens} tokens, checksums match"
            )
    if num_docs > 0:
        print("\n" + "\n".join(_decode_documents(path, manifest, split, source, num_docs, max_chars)))
