"""Gopher quality filters (Rae et al. 2021): repetition of lines, paragraphs and word n-grams
(table A1), and word statistics that natural prose has.

Defaults and semantics follow datatrove 0.10 (`datatrove.pipeline.filters`), as the other prose
filters do (prose.py); docs/data_filters.md lists where they differ. The words are
`ParsedText.words` (`normalize.split_words`), split once per document and shared by both filters.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field

import numpy as np

from lit_llm.data.filters.base import FilterSwitch, ParsedText, QualityFilter, count_repeats
from lit_llm.data.normalize import SYMBOL_TOKEN_RE

# ---------------------------------------------------------------------------------------------
# Gopher repetition (Rae et al. 2021, table A1)


@dataclass
class GopherRepetitionConfig(FilterSwitch):
    """Gopher repetition rules: drop documents with repeated lines, paragraphs or n-grams."""

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


class GopherRepetitionFilter(QualityFilter):
    """Drops documents with too many repeated lines, paragraphs or word n-grams."""

    name = "gopher_repetition"

    def __call__(self, doc: ParsedText) -> str | None:
        c, text = self.cfg, doc.text
        if not text:
            return "empty"
        paragraphs = _split_paragraphs(text.strip())
        n_dup, dup_chars = count_repeats(paragraphs)
        if c.dup_para_frac and n_dup / len(paragraphs) > c.dup_para_frac:
            return "dup_para_frac"
        if c.dup_para_char_frac and dup_chars / len(text) > c.dup_para_char_frac:
            return "dup_para_char_frac"
        lines = _split_lines(text)
        n_dup, dup_chars = count_repeats(lines)
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
class GopherQualityConfig(FilterSwitch):
    """Gopher quality rules on word statistics; a null threshold switches that rule off."""

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


class GopherQualityFilter(QualityFilter):
    """Drops documents whose word statistics do not look like natural prose."""

    name = "gopher_quality"

    def __init__(self, cfg: GopherQualityConfig):
        super().__init__(cfg)
        self.stop_words = frozenset(cfg.stop_words)

    def __call__(self, doc: ParsedText) -> str | None:
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
