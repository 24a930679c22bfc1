"""Quality filters for the data pipeline: prose (Gopher repetition, Gopher quality, C4
line cleaning, FineWeb rules, defaults equal to datatrove 0.10's) and code (line lengths,
alphanumeric fraction, generated-file markers), chained by `FilterPipeline`.

    from lit_llm.data.filters import FilterConfig, FilterPipeline, merge_stats

    pipe = FilterPipeline(FilterConfig(), "prose")  # "prose" | "code" | "none"
    text_or_none = pipe(text)                       # None: dropped; else the (cleaned) text
    pipe.stats(); pipe.write_rejected_samples("out/rejected")

Every filter has a config section with `enabled` and its thresholds (YAML: `filters.c4.enabled:
false`, `filters.gopher_quality.min_doc_words: 100`); docs/data_filters.md describes the rules
and how they compare with datatrove.
"""

from lit_llm.data.filters.code import CodeConfig, CodeFilter
from lit_llm.data.filters.pipeline import (
    FILTER_SETS,
    FilterConfig,
    FilterCounts,
    FilterPipeline,
    FilterSet,
    FilterState,
    filter_batch_in_worker,
    init_worker,
    merge_stats,
)
from lit_llm.data.filters.prose import (
    C4Config,
    C4Filter,
    Doc,
    FineWebConfig,
    FineWebFilter,
    GopherQualityConfig,
    GopherQualityFilter,
    GopherRepetitionConfig,
    GopherRepetitionFilter,
    count_sentences,
)

__all__ = [
    "FILTER_SETS",
    "C4Config",
    "C4Filter",
    "CodeConfig",
    "CodeFilter",
    "Doc",
    "FilterConfig",
    "FilterCounts",
    "FilterPipeline",
    "FilterSet",
    "FilterState",
    "FineWebConfig",
    "FineWebFilter",
    "GopherQualityConfig",
    "GopherQualityFilter",
    "GopherRepetitionConfig",
    "GopherRepetitionFilter",
    "count_sentences",
    "filter_batch_in_worker",
    "init_worker",
    "merge_stats",
]
