"""Deduplication: exact (hash of the normalised text) and near-duplicate (MinHash + LSH).

Exact: `exact_hash(text)` is xxh3-64 of `normalize.dedup_key(text)` (NFC, whitespace runs -> one
space, case kept). `exact_keep_mask(hashes)` keeps the first occurrence of each hash in input
order (sort-based: 8 bytes per document, plus an argsort); `ExactDedup.seen(text)` is the
streaming form (a set of 8-byte hashes: about 70 bytes per distinct document in CPython).

Near-duplicate: MinHash of the set of word 5-grams, LSH banding, union-find clusters.

- Words: `\\w+` runs of the lowercased text (punctuation dropped). Each word is hashed with
  xxh3-64; a shingle is a 64-bit polynomial of its n word hashes, then a splitmix64 finaliser.
  A document with fewer than n words is one shingle of all its words.
- Signature: bands x rows (default 14 x 8 = 112) minimums of (a_i * shingle + b_i) mod 2^64 with
  odd random a_i (a bijection of uint64 per i, seeded), computed with numpy on batches.
- Band keys: each band's 8 minimums folded into one 64-bit key. Two documents are candidates
  when any band key is equal: P(candidate | Jaccard s) = 1 - (1 - s^r)^b; for 14 x 8 it is
  50% at s = 0.685, 92.4% at s = 0.8 and 0.998 at s = 0.9 (5% at s = 0.5).
  `lsh_probability` / `lsh_threshold` compute these; `NearDedup.stats()` reports them.
- Clusters: for each band, sort the key column and link documents with equal keys (union-find,
  vectorised over N int64 parents). The document kept in each cluster is the one with the
  smallest global index (the first in input order); the others are near duplicates.

Memory: signatures are computed per document (or per batch) in workers; only the band keys
(8 x bands = 112 bytes per document) are kept, in an on-disk array (`BandKeyWriter`, read as an
np.memmap of N x bands uint64). Clustering holds about 32 bytes per document (parent array,
one key column, its argsort, the sorted column), never the signatures or the texts. Same as datatrove, candidates
are not verified against the full signature.

    hasher = MinHasher(MinHashConfig())
    with BandKeyWriter(path, hasher.cfg.bands) as w:      # in input order
        for text in texts:
            w.write(hasher.band_keys(hasher.signature(text)))
    keep, stats = near_duplicate_mask(path, hasher.cfg, alive=exact_keep_mask(hashes))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xxhash

from lit_llm.data.normalize import content_words, dedup_key
from lit_llm.data.sampling import mix64
from lit_llm.errors import UserError

_U64 = np.uint64
_SHINGLE_MULT = _U64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd
_BATCH_ROWS = 16_384  # shingles per permutation matrix: 16k x 112 x 8 B = 14 MB


@dataclass
class MinHashConfig:
    """MinHash near-duplicate detection over word n-grams with LSH banding."""

    enabled: bool = True
    """Run near-duplicate removal."""
    n_gram: int = 5
    """Words per shingle."""
    bands: int = 14
    """LSH bands: documents sharing any band key are candidates."""
    rows: int = 8
    """MinHash values per band (bands x rows hash functions in all)."""
    seed: int = 1
    """Seed of the hash functions (must be equal in every worker and task)."""


@dataclass
class DedupConfig:
    """Deduplication across all sources: exact first, then MinHash on the survivors."""

    exact: bool = True
    """Remove documents whose normalised text (NFC, collapsed whitespace) was seen before."""
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    """Near-duplicate removal."""


def lsh_probability(s: float, bands: int, rows: int) -> float:
    """Probability that two documents with Jaccard similarity `s` share at least one band key."""
    return 1.0 - (1.0 - s**rows) ** bands


def lsh_threshold(bands: int, rows: int, p: float = 0.5) -> float:
    """The Jaccard similarity at which pairs become candidates with probability `p`."""
    return (1.0 - (1.0 - p) ** (1.0 / bands)) ** (1.0 / rows)


class MinHasher:
    """Computes MinHash signatures and LSH band keys; picklable (send it to worker processes)."""

    def __init__(self, cfg: MinHashConfig | None = None):
        self.cfg = cfg = cfg or MinHashConfig()
        if cfg.n_gram < 1 or cfg.bands < 1 or cfg.rows < 1:
            raise UserError(f"minhash n_gram, bands and rows must be >= 1, got {cfg}")
        rng = np.random.default_rng(cfg.seed)
        k = cfg.bands * cfg.rows
        self.a = rng.integers(0, 2**63, size=k, dtype=np.uint64) * _U64(2) + _U64(1)  # odd
        self.b = rng.integers(0, 2**63, size=k, dtype=np.uint64) * _U64(2)
        self._word_hashes: dict[str, int] = {}

    def __getstate__(self) -> dict:
        return {"cfg": self.cfg, "a": self.a, "b": self.b, "_word_hashes": {}}

    def shingles(self, text: str) -> np.ndarray:
        """The document's distinct-or-not shingle hashes (uint64, at least one)."""
        cache = self._word_hashes
        if len(cache) > 1_000_000:
            cache.clear()
        words = content_words(text)
        hashes = list(map(cache.get, words))
        if None in hashes:
            for i, (w, h) in enumerate(zip(words, hashes)):
                if h is None:
                    hashes[i] = cache[w] = xxhash.xxh3_64_intdigest(w.encode("utf-8", "surrogatepass"))
        w = np.array(hashes, dtype=np.uint64)
        n = min(self.cfg.n_gram, len(w))
        if n == 0:
            return np.zeros(1, dtype=np.uint64)
        count = len(w) - n + 1
        g = w[:count].copy()
        for i in range(1, n):
            g *= _SHINGLE_MULT
            g += w[i : i + count]
        return mix64(g)

    def signature(self, text: str) -> np.ndarray:
        """MinHash signature: bands x rows uint64 minimums."""
        return self.signatures([text])[0]

    def signatures(self, texts: list[str]) -> np.ndarray:
        """Signatures of several documents (N x bands*rows uint64), batched for numpy."""
        out = np.empty((len(texts), len(self.a)), dtype=np.uint64)
        batch: list[np.ndarray] = []
        first = rows = 0
        for i, text in enumerate(texts):
            sh = self.shingles(text)
            if rows + len(sh) > _BATCH_ROWS and batch:
                out[first:i] = self._min_hash(batch)
                batch, first, rows = [], i, 0
            batch.append(sh)
            rows += len(sh)
        if batch:
            out[first:] = self._min_hash(batch)
        return out

    def _min_hash(self, shingle_sets: list[np.ndarray]) -> np.ndarray:
        """Min over each document's shingles of (a * x + b) mod 2^64, for every hash function."""
        if len(shingle_sets) == 1 and len(shingle_sets[0]) > _BATCH_ROWS:  # one big document
            x = shingle_sets[0]
            sig = np.full(len(self.a), np.iinfo(np.uint64).max, dtype=np.uint64)
            for s in range(0, len(x), _BATCH_ROWS):
                np.minimum(sig, self._permute(x[s : s + _BATCH_ROWS]).min(axis=0), out=sig)
            return sig[None, :]
        starts = np.cumsum([0] + [len(s) for s in shingle_sets[:-1]])
        return np.minimum.reduceat(self._permute(np.concatenate(shingle_sets)), starts, axis=0)

    def _permute(self, x: np.ndarray) -> np.ndarray:
        h = x[:, None] * self.a[None, :]  # (S, K), wraps mod 2^64
        h += self.b[None, :]
        return h

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """Fold each band's `rows` minimums into one uint64 key: (bands,) or (N, bands)."""
        sig = np.asarray(signatures, dtype=np.uint64)
        shaped = sig.reshape(*sig.shape[:-1], self.cfg.bands, self.cfg.rows)
        key = shaped[..., 0].copy()
        for r in range(1, self.cfg.rows):
            key *= _SHINGLE_MULT
            key += shaped[..., r]
        return mix64(key)

    def describe(self) -> dict:
        return describe_minhash(self.cfg)


def describe_minhash(cfg: MinHashConfig) -> dict:
    """Hash and band parameters and the similarities where pairs are caught (for the manifest)."""
    return {
        "method": f"MinHash over lowercased word {cfg.n_gram}-grams, LSH {cfg.bands} bands x {cfg.rows} rows",
        "hash": "xxh3-64 words; shingle = polynomial of word hashes + splitmix64; "
        "h_i(x) = (a_i x + b_i) mod 2^64, a_i odd",
        "n_gram": cfg.n_gram,
        "bands": cfg.bands,
        "rows": cfg.rows,
        "seed": cfg.seed,
        "similarity_at_50pct": round(lsh_threshold(cfg.bands, cfg.rows), 4),
        "p_candidate_at_0.8": round(lsh_probability(0.8, cfg.bands, cfg.rows), 4),
        "keep_rule": "smallest global document index in each cluster (first in input order)",
    }


_DEFAULT_HASHERS: dict[tuple, MinHasher] = {}


def _hasher(cfg: MinHashConfig) -> MinHasher:
    key = (cfg.n_gram, cfg.bands, cfg.rows, cfg.seed)
    if key not in _DEFAULT_HASHERS:
        _DEFAULT_HASHERS[key] = MinHasher(cfg)
    return _DEFAULT_HASHERS[key]


def minhash_signature(text: str, cfg: MinHashConfig | None = None) -> np.ndarray:
    """The MinHash signature of one document (bands*rows uint64)."""
    return _hasher(cfg or MinHashConfig()).signature(text)


def band_keys(signature: np.ndarray, cfg: MinHashConfig | None = None) -> np.ndarray:
    """LSH band keys (bands uint64, or N x bands for N signatures)."""
    return _hasher(cfg or MinHashConfig()).band_keys(signature)


class BandKeyWriter:
    """Appends band keys (rows of `bands` uint64, in global document order) to a raw file that
    `open_band_keys` maps as an N x bands np.memmap. Use as a context manager."""

    def __init__(self, path: str | Path, bands: int):
        self.path, self.bands, self.rows = Path(path), bands, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "wb")  # noqa: SIM115 (closed by close / __exit__)

    def write(self, keys: np.ndarray) -> None:
        keys = np.ascontiguousarray(keys, dtype="<u8").reshape(-1, self.bands)
        self._fh.write(keys.tobytes())
        self.rows += len(keys)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> BandKeyWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_band_keys(path: str | Path, bands: int) -> np.ndarray:
    """Memory-map a band-key file written by `BandKeyWriter` (N x bands uint64, read-only)."""
    size = Path(path).stat().st_size
    if size % (8 * bands):
        raise UserError(f"{path}: {size} bytes is not a whole number of {bands}-band rows (truncated?)")
    if size == 0:
        return np.zeros((0, bands), dtype="<u8")
    return np.memmap(path, dtype="<u8", mode="r", shape=(size // (8 * bands), bands))


def _roots(parent: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Roots of nodes `x` by pointer jumping (every parent is <= its child, so roots are minima)."""
    r = parent[x]
    while True:
        rr = parent[r]
        if np.array_equal(rr, r):
            return r
        r = rr


def _union(parent: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
    """Union the sets of u[i] and v[i] for all i: the larger root points to the smaller one.
    Conflicting writes in one round leave some pairs apart; the loop repeats until none is.
    Then every parent is replaced by its root (pointer doubling), so trees stay flat."""
    if not len(u):
        return
    while len(u):
        ru, rv = _roots(parent, u), _roots(parent, v)
        apart = ru != rv
        u, v = np.minimum(ru[apart], rv[apart]), np.maximum(ru[apart], rv[apart])
        parent[v] = u
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return
        parent[:] = grand


def _band_columns(source: np.ndarray | Path, n: int, bands: int, chunk_rows: int = 1 << 16):
    """Yield each band's key column (N uint64). From a file the rows are read in small chunks,
    once per band (no memory map, so the page cache never counts as this process' memory)."""
    for band in range(bands):
        col = np.empty(n, dtype=np.uint64)
        if isinstance(source, Path):
            buf = np.empty((chunk_rows, bands), dtype="<u8")
            with open(source, "rb") as fh:
                for s in range(0, n, chunk_rows):
                    rows = buf[: min(chunk_rows, n - s)]
                    if fh.readinto(rows) != rows.nbytes:
                        raise UserError(f"{source}: shorter than {n} rows of band keys")
                    col[s : s + len(rows)] = rows[:, band]
        else:
            for s in range(0, n, chunk_rows):
                col[s : s + chunk_rows] = source[s : s + chunk_rows, band]
        yield col


def near_duplicate_mask(
    band_keys_or_path: np.ndarray | str | Path,
    cfg: MinHashConfig | None = None,
    alive: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Cluster documents that share a band key; return (keep mask over all N documents, stats).

    `band_keys_or_path`: an N x bands array, or a `BandKeyWriter` file. `alive` (bool, N)
    excludes documents already removed (filters, exact dedup): they neither join clusters nor
    are kept. In each cluster the smallest index is kept. Memory: 32 bytes per document (parent,
    one key column, its argsort and the sorted column), 40 with `alive`."""
    cfg = cfg or MinHashConfig()
    if isinstance(band_keys_or_path, (str, Path)):
        source: np.ndarray | Path = Path(band_keys_or_path)
        n = len(open_band_keys(source, cfg.bands))
    else:
        source = np.asarray(band_keys_or_path).reshape(-1, cfg.bands)
        n = len(source)
    alive = np.ones(n, dtype=bool) if alive is None else np.asarray(alive, dtype=bool)
    if len(alive) != n:
        raise UserError(f"alive mask has {len(alive)} entries for {n} documents")
    idx = None if alive.all() else np.nonzero(alive)[0]
    parent = np.arange(n, dtype=np.int64)
    for col in _band_columns(source, n, cfg.bands):
        if idx is not None:
            col = col[idx]
        order = np.argsort(col)
        col = col[order]
        same = col[1:] == col[:-1]
        del col
        a, b = order[:-1][same], order[1:][same]
        del order, same
        if idx is not None:
            a, b = idx[a], idx[b]
        _union(parent, a, b)
    # `_union` leaves every parent a root: the smallest index of its cluster.
    keep = parent == np.arange(n)
    keep &= alive
    sizes = np.bincount(parent, minlength=1)  # removed documents are clusters of one
    n_alive = int(alive.sum())
    stats = {
        "documents_in": n_alive,
        "near_duplicates_removed": n_alive - int(keep.sum()),
        "clusters": int((sizes >= 2).sum()),
        "largest_cluster": int(sizes.max()) if n else 0,
        **describe_minhash(cfg),
    }
    return keep, stats


def exact_hash(text: str) -> int:
    """64-bit xxh3 of the exact-dedup key (NFC, whitespace runs collapsed, stripped)."""
    return xxhash.xxh3_64_intdigest(dedup_key(text).encode("utf-8", "surrogatepass"))


def exact_keep_mask(hashes: np.ndarray) -> np.ndarray:
    """Keep the first occurrence (lowest index) of every hash; bool mask over the N documents."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    order = np.argsort(hashes, kind="stable")
    first = np.ones(len(hashes), dtype=bool)
    first[1:] = hashes[order[1:]] != hashes[order[:-1]]
    keep = np.zeros(len(hashes), dtype=bool)
    keep[order[first]] = True
    return keep


class ExactDedup:
    """Streaming exact dedup across all sources: `seen(text)` is True for a repeat (drop it).

    State is the set of 8-byte hashes of the documents kept so far; merge the states of
    independent shards with `merge` (the keep decision then depends on the order of merging,
    so for a deterministic global result prefer `exact_keep_mask` over hashes in input order)."""

    def __init__(self) -> None:
        self.hashes: set[int] = set()
        self.documents_in = 0
        self.removed = 0

    def seen(self, text: str) -> bool:
        return self.seen_hash(exact_hash(text))

    def seen_hash(self, h: int) -> bool:
        self.documents_in += 1
        if h in self.hashes:
            self.removed += 1
            return True
        self.hashes.add(h)
        return False

    def state(self) -> np.ndarray:
        """The hashes seen, sorted (uint64): what to save or send between processes."""
        return np.array(sorted(self.hashes), dtype=np.uint64)

    def merge(self, other: ExactDedup | np.ndarray) -> None:
        """Add another instance's hashes (and counts) to this one."""
        if isinstance(other, ExactDedup):
            self.documents_in += other.documents_in
            self.removed += other.removed
            self.hashes |= other.hashes
        else:
            self.hashes.update(int(h) for h in np.asarray(other, dtype=np.uint64))

    def stats(self) -> dict:
        return {
            "documents_in": self.documents_in,
            "exact_duplicates_removed": self.removed,
            "hash": "xxh3-64 of NFC text with whitespace runs collapsed (case kept)",
            "keep_rule": "first occurrence in input order",
        }


def scurve_table(bands: int, rows: int, points: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)) -> str:
    """A one-line S-curve summary, e.g. for logs: 's=0.5: 0.05, ..., 50% at 0.685'."""
    cells = ", ".join(f"s={s}: {lsh_probability(s, bands, rows):.3f}" for s in points)
    return f"{cells}; 50% at {lsh_threshold(bands, rows):.3f}"
