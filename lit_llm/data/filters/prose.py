"""Prose line rules: C4 line cleaning (Raffel et al. 2020) and FineWeb's line statistics (Penedo et al.
2024), the last two filters of the prose set (after the Gopher filters, gopher.py).

Defaults and semantics follow datatrove 0.10 (`datatrove.pipeline.filters`), the reference used to
build FineWeb, so a corpus filtered here keeps (almost) the same documents; docs/data_filters.md
lists where they differ. C4 may rewrite the text (it drops lines); FineWeb only decides.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from lit_llm.data.filters.base import FilterSwitch, ParsedText, QualityFilter, count_repeats
from lit_llm.data.normalize import TERMINAL_PUNCTUATION, split_words

# ---------------------------------------------------------------------------------------------
# C4 (Raffel et al. 2020) line cleaning


@dataclass
class C4Config(FilterSwitch):
    """C4 rules: drop lines (too short, no terminal punctuation, boilerplate) and some documents.

    Defaults are FineWeb's use of datatrove's C4QualityFilter: the terminal-punctuation line rule
    is off (datatrove's class default turns it on)."""

    filter_no_terminal_punct: bool = False
    """Drop lines not ending in . ? ! " ' (or ending in '...')."""
    min_words_per_line: int | None = 3
    """Drop lines with fewer whitespace-separated words; null: off."""
    max_word_length: int | None = 1000
    """Drop lines holding a word longer than this; null: off."""
    min_num_sentences: int | None = 5
    """Drop documents with fewer sentences in the kept lines; null: off."""
    remove_citations: bool = True
    """Delete Wikipedia-style citation marks: [1], [edit], [citation needed]."""
    filter_lorem_ipsum: bool = True
    """Drop documents containing 'lorem ipsum' (in a line that survived the rules above)."""
    filter_javascript: bool = True
    """Drop lines mentioning 'javascript'."""
    filter_curly_bracket: bool = True
    """Drop documents containing '{' (in a line that survived the rules above)."""
    filter_policy: bool = True
    """Drop lines with cookie / terms-of-use / privacy-policy phrases."""


_CITATION_RE = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_END_PUNCTUATION = (".", "?", "!", '"', "'")
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


def _is_punct_token(token: str) -> bool:
    return all(unicodedata.category(ch).startswith("P") for ch in token)


def count_sentences(line: str) -> int:
    """Sentences in a line as spaCy's rule-based sentencizer counts them: a new sentence starts at
    the first non-punctuation token after a sentence-final mark. An empty line counts 1."""
    n, seen_end = 1, False
    for token in split_words(line):
        if token in TERMINAL_PUNCTUATION:
            seen_end = True
        elif seen_end and not _is_punct_token(token):
            n, seen_end = n + 1, False
    return n


class C4Filter(QualityFilter):
    """C4 line cleaning: rewrites the document without the dropped lines, or drops it."""

    name = "c4"

    def __call__(self, doc: ParsedText) -> str | None:
        c = self.cfg
        kept: list[str] = []
        lines = doc.text.splitlines()
        max_word = c.max_word_length
        min_words = c.min_words_per_line or 0
        for line in lines:
            line = line.strip()
            words = line.split()
            if max_word is not None and len(line) > max_word and max(map(len, words)) > max_word:
                continue
            if c.remove_citations and "[" in line:
                line = _CITATION_RE.sub("", line)
            if c.filter_no_terminal_punct and (not line.endswith(_END_PUNCTUATION) or line.endswith("...")):
                continue
            if len(words) < min_words:
                continue
            lower = line.lower()
            if c.filter_lorem_ipsum and "lorem ipsum" in lower:
                return "lorem_ipsum"
            if c.filter_javascript and "javascript" in lower:
                continue
            if c.filter_curly_bracket and "{" in line:
                return "curly_bracket"
            if c.filter_policy and any(p in lower for p in _POLICY):
                continue
            kept.append(line)
        # Every kept line holds at least one sentence, so counting is only needed for few lines.
        few = c.min_num_sentences and len(kept) < c.min_num_sentences
        if few and sum(map(count_sentences, kept)) < c.min_num_sentences:
            return "too_few_sentences"
        doc.lines_removed += len(lines) - len(kept)
        new_text = "\n".join(kept).strip()
        if new_text != doc.text:
            doc.replace_text(new_text)
        return None


# ---------------------------------------------------------------------------------------------
# FineWeb (Penedo et al. 2024) line rules


@dataclass
class FineWebConfig(FilterSwitch):
    """FineWeb's own rules on lines: punctuation, short lines, duplicated lines, list-like text."""

    line_punct_thr: float | None = 0.12
    """Min fraction of non-blank lines ending in terminal punctuation."""
    line_punct_exclude_zero: bool = False
    """Exempt documents where no line ends in terminal punctuation from the rule above."""
    short_line_thr: float | None = 0.67
    """Max fraction of non-blank lines of at most `short_line_length` characters."""
    short_line_length: int = 30
    """A line this long or shorter is short."""
    char_duplicates_ratio: float | None = 0.01
    """Max fraction of characters (newlines excluded) inside duplicated lines."""
    new_line_ratio: float | None = 0.3
    """Max ratio of newlines to words."""


class FineWebFilter(QualityFilter):
    """Drops documents by FineWeb's line statistics."""

    name = "fineweb"

    def __call__(self, doc: ParsedText) -> str | None:
        c, text = self.cfg, doc.text
        lines = [line for line in text.split("\n") if line.strip()]
        if not lines:
            return "empty"
        if c.line_punct_thr is not None:
            ratio = sum(1 for line in lines if line[-1] in TERMINAL_PUNCTUATION) / len(lines)
            if ratio < c.line_punct_thr and not (ratio == 0 and c.line_punct_exclude_zero):
                return "line_punct_ratio"
        if c.short_line_thr is not None:
            short = sum(1 for line in lines if len(line) <= c.short_line_length)
            if short / len(lines) > c.short_line_thr:
                return "short_line_ratio"
        if c.char_duplicates_ratio is not None:
            dup_chars = count_repeats(lines)[1]
            if dup_chars / (len(text) - text.count("\n")) > c.char_duplicates_ratio:
                return "char_dup_ratio"
        if c.new_line_ratio is not None:
            n_words = len(doc.words)
            if not n_words or text.count("\n") / n_words > c.new_line_ratio:
                return "list_ratio"
        return None
