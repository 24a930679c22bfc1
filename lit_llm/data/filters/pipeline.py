"""`FilterPipeline`: chains the filters of one filter set, counts what each removes and keeps a
deterministic sample of rejected documents per filter.

    pipe = FilterPipeline(FilterConfig(), "prose")   # or "code" or "none"
    kept = [t for t in (pipe(text) for text in texts) if t is not None]
    pipe.stats()                      # per-filter table for the manifest
    pipe.write_rejected_samples(dir)  # DIR/<filter>.jsonl

In worker processes (`lit_llm.data.task_workers`) each worker has its own pipelines and returns
`pipe.pop_state()` with each batch; the parent `merge_state`s it into its pipeline. Across tasks,
merge the `stats()` dicts with `merge_stats`. Samples are the `samples_per_filter` rejected documents
with the smallest xxh3 hash of (seed, text): the same set whatever the order, batching or
number of workers.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import xxhash

from lit_llm.data.filters.base import ParsedText
from lit_llm.data.filters.code import CodeConfig, CodeFilter
from lit_llm.data.filters.gopher import (
    GopherQualityConfig,
    GopherQualityFilter,
    GopherRepetitionConfig,
    GopherRepetitionFilter,
)
from lit_llm.data.filters.prose import C4Config, C4Filter, FineWebConfig, FineWebFilter
from lit_llm.data.normalize import normalize_newlines
from lit_llm.errors import UserError

FilterSet = Literal["prose", "code", "none"]
FILTER_SETS: dict[str, tuple[str, ...]] = {
    # datatrove's FineWeb order; C4 rewrites the text that FineWeb then sees.
    "prose": ("gopher_repetition", "gopher_quality", "c4", "fineweb"),
    "code": ("code",),
    "none": (),
}
_FILTER_CLASSES = {
    flt.name: flt
    for flt in (
        GopherRepetitionFilter,
        GopherQualityFilter,
        C4Filter,
        FineWebFilter,
        CodeFilter,
    )
}


@dataclass
class FilterConfig:
    """Quality filters: one section per filter (each with `enabled` and its thresholds)."""

    gopher_repetition: GopherRepetitionConfig = field(default_factory=GopherRepetitionConfig)
    """Gopher repetition rules (prose)."""
    gopher_quality: GopherQualityConfig = field(default_factory=GopherQualityConfig)
    """Gopher quality rules (prose)."""
    c4: C4Config = field(default_factory=C4Config)
    """C4 line cleaning (prose)."""
    fineweb: FineWebConfig = field(default_factory=FineWebConfig)
    """FineWeb line rules (prose)."""
    code: CodeConfig = field(default_factory=CodeConfig)
    """Code rules (line lengths, alphanumeric fraction, generated files)."""
    samples_per_filter: int = 20
    """Rejected documents kept per filter for inspection."""
    sample_max_chars: int = 5000
    """Rejected samples are cut to this many characters (bounds memory)."""
    seed: int = 0
    """Seed of the hash that picks the rejected samples."""


@dataclass
class FilterCounts:
    """What one filter saw and removed. `chars_removed` counts dropped documents' characters
    plus characters of lines a line-cleaning filter deleted."""

    documents_in: int = 0
    documents_removed: int = 0
    documents_modified: int = 0
    chars_removed: int = 0
    lines_removed: int = 0
    reasons: Counter = field(default_factory=Counter)
    samples: list = field(default_factory=list)  # max-heap by key: (-key, reason, text, doc_id)

    def merge(self, other: FilterCounts, k: int) -> None:
        for name in (
            "documents_in",
            "documents_removed",
            "documents_modified",
            "chars_removed",
            "lines_removed",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.reasons.update(other.reasons)
        self.samples = heapq.nsmallest(k, self.samples + other.samples, key=lambda s: (-s[0], s[1:]))
        heapq.heapify(self.samples)

    def add_sample(self, key: int, reason: str, text: str, doc_id: str | None, k: int) -> None:
        """Keep (reason, text, doc_id) while `key` is among the k smallest keys seen."""
        if k <= 0:
            return
        item = (-key, reason, text, doc_id or "")
        if len(self.samples) < k:
            heapq.heappush(self.samples, item)
        elif -key > self.samples[0][0]:
            heapq.heapreplace(self.samples, item)

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("documents_in", "documents_removed", "chars_removed")}
        out.update(lines_removed=self.lines_removed, documents_modified=self.documents_modified)
        out["reasons"] = dict(sorted(self.reasons.items()))
        return out


@dataclass
class FilterState:
    """Mergeable counters of a pipeline (what a worker sends back): totals and per-filter counts."""

    documents_in: int = 0
    documents_out: int = 0
    chars_in: int = 0
    chars_out: int = 0
    filters: dict[str, FilterCounts] = field(default_factory=dict)


class FilterPipeline:
    """Runs the filters of `filter_set` in order; `__call__(text)` returns the text to keep
    (newlines normalised, possibly with lines removed) or None when a filter drops it."""

    def __init__(self, cfg: FilterConfig | None = None, filter_set: FilterSet = "prose"):
        self.cfg = cfg or FilterConfig()
        if filter_set not in FILTER_SETS:
            raise UserError(f"unknown filter set {filter_set!r}; choose one of {', '.join(FILTER_SETS)}")
        self.filter_set = filter_set
        self.filters = [
            _FILTER_CLASSES[name](getattr(self.cfg, name))
            for name in FILTER_SETS[filter_set]
            if getattr(self.cfg, name).enabled
        ]
        self._seed = self.cfg.seed & 0xFFFF_FFFF_FFFF_FFFF
        self.state = self._empty_state()
        self.rejected_by: str | None = None
        """Name of the filter that dropped the last document (None: it was kept)."""

    def _empty_state(self) -> FilterState:
        return FilterState(filters={f.name: FilterCounts() for f in self.filters})

    def __call__(self, text: str, doc_id: str | None = None) -> str | None:
        st = self.state
        text = normalize_newlines(text)
        st.documents_in += 1
        st.chars_in += len(text)
        doc = ParsedText(text)
        self.rejected_by = None
        for flt in self.filters:
            counts = st.filters[flt.name]
            counts.documents_in += 1
            before = doc.text
            reason = flt(doc)
            if reason is not None:
                counts.documents_removed += 1
                counts.chars_removed += len(before)
                counts.reasons[reason] += 1
                self._sample(counts, reason, before, doc_id)
                self.rejected_by = flt.name
                return None
            if doc.text is not before:
                counts.documents_modified += 1
                counts.chars_removed += len(before) - len(doc.text)
                counts.lines_removed += doc.lines_removed
                doc.lines_removed = 0
        st.documents_out += 1
        st.chars_out += len(doc.text)
        return doc.text

    def filter_batch(self, texts: list[str], doc_ids: list[str] | None = None) -> list[str | None]:
        """`self(text)` for each text (ids, when given, label the rejected samples)."""
        ids = doc_ids if doc_ids is not None else [None] * len(texts)
        return [self(t, i) for t, i in zip(texts, ids)]

    def _sample(self, counts: FilterCounts, reason: str, text: str, doc_id: str | None) -> None:
        k = self.cfg.samples_per_filter
        if k <= 0:
            return
        key = xxhash.xxh3_64_intdigest(text.encode("utf-8", "surrogatepass"), seed=self._seed)
        counts.add_sample(key, reason, text[: self.cfg.sample_max_chars], doc_id, k)

    def pop_state(self) -> FilterState:
        """Return the counters and samples gathered so far and start new ones (for workers)."""
        state, self.state = self.state, self._empty_state()
        return state

    def merge_state(self, other: FilterState) -> None:
        """Add a worker's `pop_state()` into this pipeline's counters and samples."""
        st = self.state
        st.documents_in += other.documents_in
        st.documents_out += other.documents_out
        st.chars_in += other.chars_in
        st.chars_out += other.chars_out
        for name, counts in other.filters.items():
            st.filters.setdefault(name, FilterCounts()).merge(counts, self.cfg.samples_per_filter)

    def stats(self) -> dict:
        """Totals and the per-filter table (JSON-ready; numbers only, so `merge_stats` sums them)."""
        st = self.state
        return {
            "documents_in": st.documents_in,
            "documents_out": st.documents_out,
            "chars_in": st.chars_in,
            "chars_out": st.chars_out,
            "filters": {name: counts.as_dict() for name, counts in st.filters.items()},
        }

    def describe(self) -> str:
        """One line saying what each filter removed (for logs and 'nothing left' errors)."""
        parts = [
            f"{name} removed {c.documents_removed} of {c.documents_in} ({', '.join(f'{r}: {n}' for r, n in c.reasons.most_common(3))})"
            if c.documents_removed
            else f"{name} removed 0 of {c.documents_in}"
            for name, c in self.state.filters.items()
        ]
        return f"{self.filter_set} filters kept {self.state.documents_out} of {self.state.documents_in}: " + (
            "; ".join(parts) or "no filters enabled"
        )

    def write_rejected_samples(self, directory: str | Path) -> list[Path]:
        """Write DIR/<filter>.jsonl (one {"filter", "reason", "id", "text"} per line, ordered by
        the sampling hash) for every filter; return the paths."""
        out_dir = Path(directory)
        return [write_samples(out_dir / f"{name}.jsonl", name, c) for name, c in self.state.filters.items()]


def write_samples(path: Path, name: str, counts: FilterCounts) -> Path:
    """Write PATH: one {"filter": NAME, "reason", "id", "text"} line per sample of `counts`, ordered by
    the sampling hash (atomically: a temp file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for _, reason, text, doc_id in sorted(counts.samples, key=lambda s: -s[0]):
            row = {"filter": name, "reason": reason, "id": doc_id or None, "text": text}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def merge_stats(*stats: dict) -> dict:
    """Sum `stats()` dicts (from workers, sources or tasks): numbers add, nested dicts merge."""
    out: dict = {}
    for s in stats:
        for key, value in s.items():
            if isinstance(value, dict):
                out[key] = merge_stats(out.get(key, {}), value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = out.get(key, 0) + value
            else:
                out.setdefault(key, value)
    return out
