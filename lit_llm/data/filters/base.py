"""What every quality filter shares: the `QualityFilter` base class, the `ParsedText` it reads (and
may rewrite), the `enabled` switch at the top of its config (`FilterSwitch`), and `count_repeats`
(Gopher and FineWeb). `FilterPipeline` (pipeline.py) chains the filters of a set and keeps their
statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

from lit_llm.data.normalize import split_words


class ParsedText:
    """A document's text as the filters see it: its words split once (lazily) for every filter, and
    the lines a line-cleaning filter removed when it rewrote the text (`replace_text`).

    Not `sources.Document` (a record read from a source, with its id and metadata): one of these is
    made per document by `FilterPipeline` and lives only while the filters run."""

    __slots__ = ("text", "_words", "lines_removed")

    def __init__(self, text: str):
        self.text = text
        self._words: list[str] | None = None
        self.lines_removed = 0

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = split_words(self.text)
        return self._words

    def replace_text(self, text: str) -> None:
        self.text = text
        self._words = None


@dataclass
class FilterSwitch:
    """The first field of every filter's config (YAML: `filters.NAME.enabled: false`)."""

    enabled: bool = True
    """Run this filter."""


class QualityFilter:
    """A filter: `filter(parsed_text) -> reason | None` (None: keep the document). `name` is its
    config section in `FilterConfig` and its key in the statistics."""

    name: str

    def __init__(self, cfg: FilterSwitch):
        self.cfg = cfg

    def __call__(self, doc: ParsedText) -> str | None:
        raise NotImplementedError


def count_repeats(parts: list[str]) -> tuple[int, int]:
    """(number, total characters) of elements that repeat an earlier element."""
    unique = set(parts)
    return len(parts) - len(unique), sum(map(len, parts)) - sum(map(len, unique))
