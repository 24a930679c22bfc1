"""Prose quality filters: Gopher repetition, Gopher quality, C4 line cleaning, FineWeb line rules.

Defaults and semantics follow datatrove 0.10 (`datatrove.pipeline.filters`), the reference used to
build FineWeb, so a corpus filtered here keeps (almost) the same documents; docs/data_filters.md
lists where they differ. Each filter is `filter(doc) -> reason | None` on a `Doc`; C4 may rewrite
`doc.text` (it drops lines). `FilterPipeline` (pipeline.py) chains them and keeps the statistics.

The word tokenizer is `normalize.split_words` (a regex approximation of datatrove's spaCy English
tokenizer), computed once per document and shared by the Gopher filters.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass, field

import numpy as np

from lit_llm.data.normalize import (
    SYMBOL_TOKEN_RE,
    TERMINAL_PUNCTUATION,
    split_words,
)


class Doc:
    """A document moving through the filters, with its word tokens computed once (lazily)."""

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


# ---------------------------------------------------------------------------------------------
# Gopher repetition (Rae et al. 2021, table A1)


@dataclass
class GopherRepetitionConfig:
    """Gopher repetition rules: drop documents with repeated lines, paragraphs or n-grams."""

    enabled: bool = True
    """Run this filter."""
    dup_line_frac: float | None = 0.3
    """Max fraction of lines (split on runs of newlines) that duplicate an earlier line; null: off."""
    dup_para_frac: float | None = 0.3
    """Max fraction of paragraphs (split on blank lines) that duplicate an earlier one; null: off."""
    dup_line_char_frac: float | None = 0.2
    """Max fraction of the document's characters inside duplicated lines; null: off."""
    dup_para_char_frac: float | None = 0.2
    """Max fraction of the document's characters inside duplicated paragraphs; null: off."""
    top_n_grams: dict[int, float] = field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
    """n -> max fraction of characters covered by the most frequent word n-gram (length x count)."""
    dup_n_grams: dict[int, float] = field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )
    """n -> max fraction of characters inside word n-grams that repeat an earlier n-gram."""


_PARAGRAPH_RE = re.compile(r"\n{2,}")


def _split_paragraphs(text: str) -> list[str]:
    """`re.split(r"\n{2,}", text)`, with str.split when no run of 3+ newlines needs the regex."""
    return _PARAGRAPH_RE.split(text) if "\n\n\n" in text else text.split("\n\n")


def _split_lines(text: str) -> list[str]:
    """`re.split(r"\n+", text)`: blank lines vanish except a leading and a trailing ''."""
    lines = [line for line in text.split("\n") if line]
    if text.startswith("\n"):
        lines.insert(0, "")
    if text.endswith("\n"):
        lines.append("")
    return lines


def _duplicates(parts: list[str]) -> tuple[int, int]:
    """(number, total characters) of elements that repeat an earlier element."""
    unique = set(parts)
    return len(parts) - len(unique), sum(map(len, parts)) - sum(map(len, unique))


class _NGrams:
    """Word n-grams of a document, level by level, tracking only positions whose n-gram occurs
    more than once (the only ones that can be repeats or the top n-gram). Exact: n-gram ids are
    dense ranks of (id of the (n-1)-gram, next word id) pairs, never hashes."""

    def __init__(self, words: list[str]):
        vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
        self.n_words = len(words)
        self.word_ids = np.fromiter(map(vocab.__getitem__, words), np.int64, len(words))
        lengths = np.fromiter(map(len, vocab), np.int64, len(vocab))[self.word_ids]
        self.cum = np.concatenate(([0], np.cumsum(lengths)))  # chars of words[:i] = cum[i]
        repeated = np.bincount(self.word_ids)[self.word_ids] >= 2
        self.pos = np.nonzero(repeated)[0]  # positions whose current n-gram occurs >= 2 times
        self.ids = self.word_ids[self.pos]  # ... and that n-gram's id
        self.n = 1

    def advance(self) -> None:
        """Go from (n-1)-grams to n-grams; afterwards `ids`, `first_pos` and `counts` describe
        the n-grams at `pos` (their id, the first position of the same n-gram, its count)."""
        n = self.n = self.n + 1
        ok = self.pos <= self.n_words - n
        pos, ids = self.pos[ok], self.ids[ok]
        keys = (ids << 32) | self.word_ids[pos + n - 1]
        _, first, inverse, counts = np.unique(
            keys, return_index=True, return_inverse=True, return_counts=True
        )
        inverse = inverse.reshape(-1)
        self.pos, self.ids = pos, inverse
        self.first_pos, self.counts = pos[first[inverse]], counts[inverse]

    def prune(self) -> None:
        """Keep only positions whose n-gram repeats (the rest cannot repeat at n+1)."""
        rep = self.counts >= 2
        self.pos, self.ids = self.pos[rep], self.ids[rep]

    def top_chars(self) -> int:
        """len(" ".join(top n-gram)) * count, the top n-gram being datatrove's
        `Counter.most_common(1)` choice: highest count, ties to the n-gram seen first."""
        n, best = self.n, int(self.counts.max()) if self.counts.size else 1
        p = int(self.first_pos[self.counts == best].min()) if best >= 2 else 0
        return (int(self.cum[p + n] - self.cum[p]) + n - 1) * best

    def dup_chars(self, limit: float) -> int:
        """Characters in repeated n-grams, scanning left to right and jumping over each repeat
        (datatrove's `find_all_duplicate`, which joins words without spaces). Only positions
        whose n-gram occurred earlier can be repeats, so the loop visits those alone; it stops
        once the total exceeds `limit`."""
        n = self.n
        cand = np.nonzero(self.first_pos < self.pos)[0]
        seen: set[int] = set()  # n-gram ids with a visited occurrence at a candidate position
        dups: list[int] = []  # positions of repeats found (each skips the next n-1 positions)
        total, next_pos = 0, 0
        for p, g, f in zip(self.pos[cand].tolist(), self.ids[cand].tolist(), self.first_pos[cand].tolist()):
            if p < next_pos:
                continue
            k = bisect_left(dups, f) - 1  # the first occurrence was visited unless a repeat skipped it
            if g in seen or k < 0 or f >= dups[k] + n:
                total += int(self.cum[p + n] - self.cum[p])
                if total > limit:
                    return total
                dups.append(p)
                next_pos = p + n
            seen.add(g)
        return total


class GopherRepetitionFilter:
    """Drops documents with too many repeated lines, paragraphs or word n-grams."""

    name = "gopher_repetition"

    def __init__(self, cfg: GopherRepetitionConfig):
        self.cfg = cfg

    def __call__(self, doc: Doc) -> str | None:
        c, text = self.cfg, doc.text
        if not text:
            return "empty"
        paragraphs = _split_paragraphs(text.strip())
        n_dup, dup_chars = _duplicates(paragraphs)
        if c.dup_para_frac and n_dup / len(paragraphs) > c.dup_para_frac:
            return "dup_para_frac"
        if c.dup_para_char_frac and dup_chars / len(text) > c.dup_para_char_frac:
            return "dup_para_char_frac"
        lines = _split_lines(text)
        n_dup, dup_chars = _duplicates(lines)
        if c.dup_line_frac and n_dup / len(lines) > c.dup_line_frac:
            return "dup_line_frac"
        if c.dup_line_char_frac and dup_chars / len(text) > c.dup_line_char_frac:
            return "dup_line_char_frac"
        return self._ngram_rules(doc.words, len(text))

    def _ngram_rules(self, words: list[str], n_chars: int) -> str | None:
        c = self.cfg
        max_n = max([*c.top_n_grams, *c.dup_n_grams], default=0)
        if len(words) < 2 or max_n < 2:
            return None
        grams = _NGrams(words)
        for n in range(2, min(max_n, len(words)) + 1):
            grams.advance()
            if n in c.top_n_grams and grams.top_chars() / n_chars > c.top_n_grams[n]:
                return f"top_{n}_gram"
            if n in c.dup_n_grams:
                limit = c.dup_n_grams[n] * n_chars
                if grams.dup_chars(limit) > limit:
                    return f"duplicated_{n}_n_grams"
            grams.prune()
        return None


# ---------------------------------------------------------------------------------------------
# Gopher quality


@dataclass
class GopherQualityConfig:
    """Gopher quality rules on word statistics; a null threshold switches that rule off."""

    enabled: bool = True
    """Run this filter."""
    min_doc_words: int | None = 50
    """Min number of non-symbol words."""
    max_doc_words: int | None = 100_000
    """Max number of non-symbol words."""
    min_avg_word_length: float | None = 3
    """Min mean length (characters) of non-symbol words."""
    max_avg_word_length: float | None = 10
    """Max mean length (characters) of non-symbol words."""
    max_symbol_word_ratio: float | None = 0.1
    """Max ratio of '#' to words, and of ellipses ('...' or '…') to words."""
    max_bullet_lines_ratio: float | None = 0.9
    """Max fraction of lines starting with a bullet ('•' or '-')."""
    max_ellipsis_lines_ratio: float | None = 0.3
    """Max fraction of lines ending with an ellipsis."""
    min_alpha_words_ratio: float | None = 0.8
    """Min fraction of words (punctuation tokens included) containing a letter."""
    min_stop_words: int | None = 2
    """Min number of distinct stop words present."""
    stop_words: list[str] = field(
        default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"]
    )
    """The stop words (case-sensitive, as in datatrove)."""


_HAS_LETTER_RE = re.compile(r"(?m)^[^\n]*?[^\W\d_]")  # one match per line holding a letter
_SYMBOL_LINE_RE = re.compile(rf"(?m)^{SYMBOL_TOKEN_RE.pattern}$")


class GopherQualityFilter:
    """Drops documents whose word statistics do not look like natural prose."""

    name = "gopher_quality"

    def __init__(self, cfg: GopherQualityConfig):
        self.cfg = cfg
        self.stop_words = frozenset(cfg.stop_words)

    def __call__(self, doc: Doc) -> str | None:
        c, text, words = self.cfg, doc.text, doc.words
        n_words = len(words)
        # Tokens never contain a newline, so one token per line lets C regexes do the counting.
        joined = "\n".join(words)
        symbols = _SYMBOL_LINE_RE.findall(joined)
        n_content = n_words - len(symbols)
        if c.min_doc_words and n_content < c.min_doc_words:
            return "short_doc"
        if c.max_doc_words and n_content > c.max_doc_words:
            return "long_doc"
        if n_content:
            mean_len = (len(joined) - n_words + 1 - sum(map(len, symbols))) / n_content
            if c.min_avg_word_length and mean_len < c.min_avg_word_length:
                return "below_avg_word_length"
            if c.max_avg_word_length and mean_len > c.max_avg_word_length:
                return "above_avg_word_length"
        if n_words == 0:
            return "no_words"
        if c.max_symbol_word_ratio:
            if text.count("#") / n_words > c.max_symbol_word_ratio:
                return "too_many_hashes"
            if (text.count("...") + text.count("…")) / n_words > c.max_symbol_word_ratio:
                return "too_many_ellipsis"
        reason = self._line_rules(text.splitlines())
        if reason:
            return reason
        if (
            c.min_alpha_words_ratio
            and len(_HAS_LETTER_RE.findall(joined)) / n_words < c.min_alpha_words_ratio
        ):
            return "below_alpha_words_ratio"
        if c.min_stop_words and len(self.stop_words.intersection(words)) < c.min_stop_words:
            return "too_few_stop_words"
        return None

    def _line_rules(self, lines: list[str]) -> str | None:
        c = self.cfg
        if not lines:
            return None
        if c.max_bullet_lines_ratio:
            bullets = sum(1 for s in lines if s.lstrip().startswith(("•", "-")))
            if bullets / len(lines) > c.max_bullet_lines_ratio:
                return "too_many_bullet_lines"
        if c.max_ellipsis_lines_ratio:
            ellipses = sum(1 for s in lines if s.rstrip().endswith(("...", "…")))
            if ellipses / len(lines) > c.max_ellipsis_lines_ratio:
                return "too_many_ellipsis_lines"
        return None


# ---------------------------------------------------------------------------------------------
# C4 (Raffel et al. 2020) line cleaning


@dataclass
class C4Config:
    """C4 rules: drop lines (too short, no terminal punctuation, boilerplate) and some documents.

    Defaults are FineWeb's use of datatrove's C4QualityFilter: the terminal-punctuation line rule
    is off (datatrove's class default turns it on)."""

    enabled: bool = True
    """Run this filter."""
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


class C4Filter:
    """C4 line cleaning: rewrites the document without the dropped lines, or drops it."""

    name = "c4"

    def __init__(self, cfg: C4Config):
        self.cfg = cfg

    def __call__(self, doc: Doc) -> str | None:
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
class FineWebConfig:
    """FineWeb's own rules on lines: punctuation, short lines, duplicated lines, list-like text."""

    enabled: bool = True
    """Run this filter."""
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


class FineWebFilter:
    """Drops documents by FineWeb's line statistics."""

    name = "fineweb"

    def __init__(self, cfg: FineWebConfig):
        self.cfg = cfg

    def __call__(self, doc: Doc) -> str | None:
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
            dup_chars = _duplicates(lines)[1]
            if dup_chars / (len(text) - text.count("\n")) > c.char_duplicates_ratio:
                return "char_dup_ratio"
        if c.new_line_ratio is not None:
            n_words = len(doc.words)
            if not n_words or text.count("\n") / n_words > c.new_line_ratio:
                return "list_ratio"
        return None
