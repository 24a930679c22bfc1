"""Word n-gram hashes of benchmark items and the sorted index that training documents are checked
against (benchmark decontamination; the stage itself is decontaminate.py).

    words = normalized_words("Janet's ducks lay 16 eggs")   # [b"janets", b"ducks", b"lay", b"16", b"eggs"]
    hashes, owners, stats = item_ngrams(items, n=13)        # an item's n-grams (or the whole item if short)
    save_index(folder, [(hashes, owners)])                   # sorted uint64 hashes + owners + a bitmap
    index = NgramIndex(folder)                               # memory-mapped: worker processes share the pages
    index.matches(texts)                                     # {document: (benchmark, word position, length)}

Normalisation follows lm-eval's decontamination (lm_eval/decontamination/janitor.py): lowercase,
delete ASCII punctuation (so "has_close_elements(numbers" is one word, "hascloseelementsnumbers"),
split on whitespace. Unlike the janitor, case folding covers all of Unicode, not only A-Z.

A word is hashed once (xxh3-64 of its UTF-8 bytes); the hash of the window of L words at i is
sum_k C_k * w[i+k] (mod 2^64, C_k fixed odd constants), computed for a whole batch at once with NumPy:
13 multiply-adds over the batch's words. Lookups go through a bitmap of the hashes' top bits first
(about 64 bits per indexed n-gram, so ~1.5% of windows get past it) and a binary search after.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import xxhash

from lit_llm.data.shards import atomic_write_bytes

SHORT_ITEM_MIN_WORDS = 8
"""An item of fewer words than the n-gram but at least this many is indexed whole; shorter ones not at all."""
_DELETE = string.punctuation.encode()  # the janitor's delete_chars
_HAS_LETTER = re.compile(rb"[a-z\x80-\xff]")
_MULT = np.random.default_rng(20240613).integers(0, 2**63, size=64, dtype=np.uint64) * np.uint64(
    2
) + np.uint64(1)
MAX_NGRAM = len(_MULT)
INFO = "info.json"  # written last: its presence marks a complete index folder


def normalized_words(text: str) -> list[bytes]:
    """lm-eval's janitor normalisation: lowercased, ASCII punctuation deleted, split on whitespace."""
    text = text.lower()
    if not text.isascii():  # Unicode spaces (NBSP, ...) split words as ASCII ones do
        text = " ".join(text.split())
    return text.encode("utf-8", "surrogatepass").translate(None, _DELETE).split()


def word_hashes(words: list[bytes]) -> np.ndarray:
    return np.fromiter(map(xxhash.xxh3_64_intdigest, words), dtype=np.uint64, count=len(words))


def window_hashes(hashes: np.ndarray, lengths: Iterable[int]) -> dict[int, np.ndarray]:
    """{L: hash of the L words starting at every position} (windows running past the end are padded)."""
    lengths = sorted(set(lengths))
    m, longest = len(hashes), lengths[-1]
    padded = np.concatenate([hashes, np.zeros(longest - 1, dtype=np.uint64)])
    acc, out = np.zeros(m, dtype=np.uint64), {}
    for k in range(longest):
        acc += padded[k : k + m] * _MULT[k]
        if k + 1 in lengths:
            out[k + 1] = acc.copy()
    return out


class _Batch:
    """The words of several texts laid end to end, with where each text ends."""

    def __init__(self, texts: list[str]):
        self.words = [normalized_words(t) for t in texts]
        counts = np.fromiter(map(len, self.words), dtype=np.int64, count=len(texts))
        self.ends = np.cumsum(counts)
        self.hashes = word_hashes([w for words in self.words for w in words])
        self.doc_end = np.repeat(self.ends, counts)  # per word: where its text ends

    def valid(self, length: int) -> np.ndarray:
        """Windows of `length` words that stay inside one text."""
        return np.arange(len(self.hashes)) + length <= self.doc_end


def item_ngrams(items: list[str], n: int, batch_items: int = 1000) -> tuple[np.ndarray, np.ndarray, dict]:
    """(the hashes of every item's n-grams, the hashes of the items of SHORT_ITEM_MIN_WORDS..n-1 words
    taken whole), both holding enough content (`_content_mask`); and counts: items, matched whole,
    too short, n-grams. Items are hashed `batch_items` at a time (bounds the memory of their words)."""
    long_parts, short_parts, counts = [], [], Counter()
    for i in range(0, len(items), batch_items):
        ngrams, whole, batch_counts = _batch_ngrams(items[i : i + batch_items], n)
        long_parts.append(ngrams)
        short_parts.append(whole)
        counts.update(batch_counts)
    ngrams, whole = _sorted_unique(long_parts), _sorted_unique(short_parts)
    stats = {k: counts[k] for k in ("items", "items_matched_whole", "items_too_short")}
    stats.update(ngrams=len(ngrams), low_content_ngrams_skipped=counts["dropped"])
    return ngrams, whole, stats


def _batch_ngrams(items: list[str], n: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """`item_ngrams` of one batch of items (hashes not yet unique; "dropped": low-content windows)."""
    batch = _Batch(items)
    counts = np.diff(batch.ends, prepend=0)
    short_min = min(SHORT_ITEM_MIN_WORDS, n)
    short = (counts >= short_min) & (counts < n)
    stats = {"items": len(counts), "items_matched_whole": int(short.sum())}
    stats["items_too_short"] = int((counts < short_min).sum())
    windows = window_hashes(batch.hashes, {n} | {int(c) for c in counts[short]})
    content = np.concatenate([[0], np.cumsum(_content_words(batch.words))])
    starts, at = batch.ends - counts, np.arange(len(batch.hashes))
    long_parts, short_parts, dropped = [], [], 0
    for length, hashes in windows.items():
        if length == n:
            keep = batch.valid(n)
        else:  # a short item's single window, at its start
            keep = np.zeros(len(hashes), dtype=bool)
            keep[starts[counts == length]] = True
        rich = keep & _content_mask(content, at, length)
        dropped += int((keep & ~rich).sum())
        (long_parts if length == n else short_parts).append(hashes[rich])
    stats["dropped"] = dropped
    return np.concatenate(long_parts), _sorted_unique(short_parts), stats


def _sorted_unique(parts: list[np.ndarray]) -> np.ndarray:
    every = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)
    return every[np.concatenate([[True], every[1:] != every[:-1]])] if len(every) else every


def _content_words(words: list[list[bytes]]) -> np.ndarray:
    """Per word: True for a content word (2+ characters, one of them a letter)."""
    flat = [w for ws in words for w in ws]
    flags = {w: len(w) >= 2 and _HAS_LETTER.search(w) is not None for w in set(flat)}
    return np.fromiter(map(flags.__getitem__, flat), dtype=bool, count=len(flat))


def _content_mask(content_cumsum: np.ndarray, at: np.ndarray, length: int) -> np.ndarray:
    """Windows in which at least half the words are content words (2+ characters, one a letter):
    a run of numbers or single letters ("0 1 2 3 4 5 6 7 8 9 a b c") is shared by too many texts."""
    end = np.minimum(at + length, len(content_cumsum) - 1)
    return 2 * (content_cumsum[end] - content_cumsum[at]) >= length


def save_index(folder: Path, benchmarks: list[tuple[np.ndarray, np.ndarray, dict]], info: dict) -> dict:
    """Write the n-gram table (ngrams.npy: sorted unique uint64; ngrams.owners.npy: uint8, the first
    benchmark that has each; ngrams.bitmap.npy), the table of short items taken whole (whole.*) and,
    last, info.json (info + sizes); return the info written."""
    folder.mkdir(parents=True, exist_ok=True)
    info = dict(info)
    for table, column in (("ngrams", 0), ("whole", 1)):
        parts = [b[column] for b in benchmarks]
        info[table], info[f"{table}_bitmap_bits"] = _write_table(folder, table, parts)
    info["bytes"] = sum(p.stat().st_size for p in folder.glob("*.npy"))
    atomic_write_bytes(folder / INFO, lambda f: f.write(json.dumps(info, indent=1).encode()))
    return info


def _write_table(folder: Path, name: str, parts: list[np.ndarray]) -> tuple[int, int]:
    """Sorted unique hashes, their owners (index in `parts`) and a bitmap of their top bits; (size, bits)."""
    every = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    owner = np.repeat(np.arange(len(parts), dtype=np.uint8), [len(p) for p in parts])
    hashes, first = np.unique(every, return_index=True)
    bits = int(np.clip(np.ceil(np.log2(max(64 * len(hashes), 1))), 16, 32))
    bitmap = np.zeros(1 << (bits - 3), dtype=np.uint8)
    slots = hashes >> np.uint64(64 - bits)
    np.bitwise_or.at(bitmap, (slots >> np.uint64(3)).astype(np.intp), _bit(slots))
    for suffix, array in (("", hashes), (".owners", owner[first]), (".bitmap", bitmap)):
        atomic_write_bytes(folder / f"{name}{suffix}.npy", lambda f, a=array: np.save(f, a))
    return len(hashes), bits


def _bit(slots: np.ndarray) -> np.ndarray:
    return np.left_shift(np.uint8(1), (slots & np.uint64(7)).astype(np.uint8))


class _Table:
    """One saved table, memory-mapped: plain arrays over the mapped pages (np.memmap's own indexing is
    several times slower), shared by every process that opens it."""

    def __init__(self, folder: Path, name: str, bits: int):
        self.hashes, self.owners, self.bitmap = (
            np.load(folder / f"{name}{suffix}.npy", mmap_mode="r").view(np.ndarray)
            for suffix in ("", ".owners", ".bitmap")
        )
        self.shift = np.uint64(64 - bits)

    def lookup(self, windows: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, owners) of the windows whose hash is in the table: the bitmap first, then a
        binary search for the few that pass it."""
        if not len(self.hashes):
            return positions[:0], self.owners[:0]
        slots = windows >> self.shift
        maybe = (self.bitmap[(slots >> np.uint64(3)).astype(np.intp)] & _bit(slots)).astype(bool)
        windows, positions = windows[maybe], positions[maybe]
        at = np.minimum(np.searchsorted(self.hashes, windows), len(self.hashes) - 1)
        hit = self.hashes[at] == windows
        return positions[hit], self.owners[at[hit]]


class NgramIndex:
    """A saved index: the n-gram table and the table of short items taken whole."""

    def __init__(self, folder: Path):
        self.info = json.loads((folder / INFO).read_text())
        self.n = self.info["ngram"]
        self.ngrams = _Table(folder, "ngrams", self.info["ngrams_bitmap_bits"])
        self.whole = _Table(folder, "whole", self.info["whole_bitmap_bits"])
        short_min = min(SHORT_ITEM_MIN_WORDS, self.n)
        self.lengths = [self.n, *range(short_min, self.n)] if self.info["whole"] else [self.n]

    def matches(self, texts: list[str]) -> dict[int, tuple[int, list[bytes]]]:
        """{text index: (benchmark, the words of one matching window)} for the texts that share a
        window with the index; a text matching several benchmarks gets the one it shares most with."""
        batch = _Batch(texts)
        if not len(batch.hashes):
            return {}
        hits = []
        for length, windows in window_hashes(batch.hashes, self.lengths).items():
            ok = np.nonzero(batch.valid(length))[0]
            table = self.ngrams if length == self.n else self.whole
            positions, owners = table.lookup(windows[ok], ok)
            hits += [(int(p), int(o), length) for p, o in zip(positions, owners)]
        texts_of = np.searchsorted(batch.ends, [p for p, _, _ in hits], side="right")
        by_text: dict[int, list[tuple[int, int, int]]] = {}
        for t, row in zip(texts_of.tolist(), hits):
            by_text.setdefault(t, []).append(row)
        found = {}
        for t, rows in by_text.items():
            owner = Counter(o for _, o, _ in rows).most_common(1)[0][0]
            p, _, length = min(r for r in rows if r[1] == owner)
            start = p - int(batch.ends[t - 1] if t else 0)
            found[t] = (owner, batch.words[t][start : start + length])
        return found
