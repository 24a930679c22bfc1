"""Quality filters for the data pipeline: prose (Gopher repetition and quality in gopher.py, C4
line cleaning and FineWeb rules in prose.py; defaults equal to datatrove 0.10's) and code (line
lengths, alphanumeric fraction, generated-file markers; code.py), chained by `FilterPipeline`.

    from lit_llm.data.filters import FilterConfig, FilterPipeline, merge_stats

    pipe = FilterPipeline(FilterConfig(), "prose")  # "prose" | "code" | "none"
    text_or_none = pipe(text)                       # None: dropped; else the (cleaned) text
    pipe.stats(); pipe.write_rejected_samples("out/rejected")

Every filter has a config section with `enabled` and its thresholds (YAML: `filters.c4.enabled:
false`, `filters.gopher_quality.min_doc_words: 100`); docs/data_filters.md describes the rules
and how they compare with datatrove. A single filter is `FILTER(ParsedText(text)) -> reason | None`
(base.py); import it from its module.
"""

from lit_llm.data.filters.pipeline import (
    FILTER_SETS,
    FilterConfig,
    FilterCounts,
    FilterPipeline,
    FilterSet,
    FilterState,
    merge_stats,
    write_samples,
)

__all__ = [
    "FILTER_SETS",
    "FilterConfig",
    "FilterCounts",
    "FilterPipeline",
    "FilterSet",
    "FilterState",
    "merge_stats",
    "write_samples",
]
