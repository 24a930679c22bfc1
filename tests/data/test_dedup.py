"""Exact and MinHash near-duplicate removal on documents with known overlap."""

import pickle
import random

import numpy as np
import pytest

from lit_llm.data.dedup import (
    BandKeyWriter,
    DedupConfig,
    ExactDedup,
    MinHashConfig,
    MinHasher,
    band_keys,
    exact_hash,
    exact_keep_mask,
    lsh_probability,
    lsh_threshold,
    minhash_signature,
    near_duplicate_mask,
    open_band_keys,
)
from lit_llm.data.normalize import dedup_key
from lit_llm.errors import UserError

VOCAB = [f"w{i}" for i in range(5000)]


def doc(n=300, seed=None):
    r = random.Random(seed)
    return " ".join(r.choice(VOCAB) for _ in range(n))


def edit(text, n_changes, seed=0):
    """A copy with `n_changes` words replaced."""
    words = text.split()
    r = random.Random(seed)
    for i in r.sample(range(len(words)), n_changes):
        words[i] = "changed"
    return " ".join(words)


def jaccard(a, b, n=5):
    sa = {tuple(a.lower().split()[i : i + n]) for i in range(len(a.split()) - n + 1)}
    sb = {tuple(b.lower().split()[i : i + n]) for i in range(len(b.split()) - n + 1)}
    return len(sa & sb) / len(sa | sb)


# ------------------------------------------------------------------------ exact


def test_dedup_key_normalises_unicode_and_whitespace_not_case():
    assert dedup_key("  caf\u00e9\r\n\tbar  ") == dedup_key("cafe\u0301 bar") == "caf\u00e9 bar"
    assert dedup_key("Hello") != dedup_key("hello")


def test_exact_dedup_across_sources_keeps_first_occurrence():
    source_a = ["alpha doc", "beta doc", "alpha doc"]
    source_b = ["gamma doc", "alpha  doc\n", "beta doc"]
    texts = source_a + source_b  # input order: source a, then source b
    keep = exact_keep_mask(np.array([exact_hash(t) for t in texts], dtype=np.uint64))
    assert keep.tolist() == [True, True, False, True, False, False]
    streaming = ExactDedup()
    assert [not streaming.seen(t) for t in texts] == keep.tolist()
    assert streaming.stats()["exact_duplicates_removed"] == 3


def test_exact_dedup_state_merges():
    a, b = ExactDedup(), ExactDedup()
    for t in ["one", "two", "one"]:
        a.seen(t)
    for t in ["three", "two"]:
        b.seen(t)
    a.merge(b)
    assert a.documents_in == 5 and a.removed == 1 and len(a.hashes) == 3
    c = ExactDedup()
    c.merge(a.state())
    assert c.seen("two") and not c.seen("four")
    assert a.state().dtype == np.uint64 and list(a.state()) == sorted(a.state())


# ------------------------------------------------------------------------ MinHash


def test_lsh_s_curve():
    assert lsh_threshold(14, 8) == pytest.approx(0.6847, abs=1e-4)
    assert lsh_probability(0.8, 14, 8) == pytest.approx(0.9235, abs=1e-4)
    assert lsh_probability(0.3, 14, 8) < 0.001
    assert DedupConfig().minhash.bands == 14 and DedupConfig().minhash.rows == 8


def test_signature_estimates_jaccard_and_is_deterministic():
    base = doc(400, seed=1)
    near = edit(base, 6)
    sig_a = minhash_signature(base)
    assert sig_a.shape == (112,) and sig_a.dtype == np.uint64
    assert np.array_equal(sig_a, MinHasher(MinHashConfig()).signature(base))  # same seed, same hashes
    est = (sig_a == minhash_signature(near)).mean()
    assert abs(est - jaccard(base, near)) < 0.12
    assert (sig_a == minhash_signature(doc(400, seed=2))).mean() < 0.05
    assert band_keys(sig_a).shape == (14,)
    batch = MinHasher().signatures([base, near, "", "too short"])
    assert np.array_equal(batch[0], sig_a) and batch.shape == (4, 112)


def test_minhasher_pickles_for_workers():
    h = MinHasher(MinHashConfig(seed=7))
    h2 = pickle.loads(pickle.dumps(h))
    assert np.array_equal(h.signature("a b c d e f g"), h2.signature("a b c d e f g"))
    with pytest.raises(UserError):
        MinHasher(MinHashConfig(bands=0))


def test_near_duplicates_removed_and_first_kept(tmp_path):
    base, other = doc(300, seed=10), doc(300, seed=11)
    docs = [
        other,  # 0 unrelated
        base,  # 1 original
        edit(base, 3, seed=1),  # 2 near copy (Jaccard ~0.9)
        doc(300, seed=12),  # 3 unrelated
        edit(base, 4, seed=2).upper(),  # 4 near copy, other case (MinHash lowercases)
        edit(other, 2, seed=3),  # 5 near copy of 0
        doc(300, seed=13),  # 6 unrelated
    ]
    h = MinHasher()
    path = tmp_path / "bands.u64"
    with BandKeyWriter(path, h.cfg.bands) as w:
        for i in range(0, len(docs), 3):  # written in batches, in input order
            w.write(h.band_keys(h.signatures(docs[i : i + 3])))
    assert open_band_keys(path, 14).shape == (7, 14)
    keep, stats = near_duplicate_mask(path, h.cfg)
    assert keep.tolist() == [True, True, False, True, False, False, True]
    assert stats["near_duplicates_removed"] == 3 and stats["clusters"] == 2 and stats["largest_cluster"] == 3
    assert (
        stats["bands"] == 14
        and stats["rows"] == 8
        and stats["similarity_at_50pct"] == pytest.approx(0.685, abs=1e-3)
    )
    # Documents already removed (e.g. by exact dedup) take no part: the next one is kept.
    alive = np.array([True, False, True, True, True, True, True])
    keep2, stats2 = near_duplicate_mask(h.band_keys(h.signatures(docs)), h.cfg, alive=alive)
    assert keep2.tolist() == [True, False, True, True, False, False, True]
    assert stats2["documents_in"] == 6 and stats2["near_duplicates_removed"] == 2


def test_clusters_link_transitively_and_keep_smallest_index():
    base = doc(200, seed=20)
    chain = [base]
    for i in range(6):  # each step changes a few more words of the previous one
        chain.append(edit(chain[-1], 2, seed=100 + i))
    order = [3, 0, 5, 1, 6, 2, 4]
    texts = [chain[i] for i in order] + [doc(200, seed=21)]
    h = MinHasher()
    keep, stats = near_duplicate_mask(h.band_keys(h.signatures(texts)), h.cfg)
    assert keep.tolist() == [True] + [False] * 6 + [True]
    assert stats["clusters"] == 1 and stats["largest_cluster"] == 7


def test_union_find_many_random_pairs_matches_reference():
    from lit_llm.data.dedup import _union

    r = np.random.default_rng(0)
    n = 2000
    u, v = r.integers(0, n, 1500), r.integers(0, n, 1500)
    parent = np.arange(n)
    _union(parent, u, v)
    ref = list(range(n))

    def find(x):
        while ref[x] != x:
            x = ref[x]
        return x

    for a, b in zip(u.tolist(), v.tolist()):
        ra, rb = find(a), find(b)
        ref[max(ra, rb)] = min(ra, rb)
    assert parent.tolist() == [find(x) for x in range(n)]


def test_band_key_file_errors(tmp_path):
    path = tmp_path / "bad.u64"
    path.write_bytes(b"\0" * 20)
    with pytest.raises(UserError, match="truncated"):
        open_band_keys(path, 14)
    with pytest.raises(UserError, match="alive mask"):
        near_duplicate_mask(np.zeros((3, 14), dtype=np.uint64), alive=np.ones(2, dtype=bool))
