"""LitDataModule: deterministic windows, rank/worker invariance, skip ranges, state, bad inputs."""

import numpy as np
import pytest
import torch

from lit_llm.data.datamodule import LitDataModule, TrainWindows
from lit_llm.data.sampling import merge_ranges, sample_index, stream_position
from lit_llm.data.shards import Shard, ShardSet
from lit_llm.errors import UserError
from tests.helpers import make_shard_folder, make_text_folder


@pytest.fixture
def folder(tmp_path):
    return make_shard_folder(tmp_path / "ds", sources={"a": 3.0, "b": 1.0}, docs_per_source=30)


def loader_batches(dm, n, rank=0, world=1):
    dm.setup("fit")
    ds = TrainWindows(
        dm.train_sets,
        dm.source_weights,
        dm.seq_len,
        dm.batch_size,
        dm.seed,
        dm.position,
        rank,
        world,
        dm.skip_ranges,
        dm.pad_id,
    )
    return [ds.batch(i) for i in range(n)]


def test_windows_are_a_pure_function_of_seed_and_index(folder):
    a = loader_batches(LitDataModule(str(folder), seq_len=16, batch_size=4), 3)
    b = loader_batches(LitDataModule(str(folder), seq_len=16, batch_size=4), 3)
    c = loader_batches(LitDataModule(str(folder), seq_len=16, batch_size=4, seed=99), 3)
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, b))
    assert not torch.equal(a[0]["input_ids"], c[0]["input_ids"])
    assert a[0]["input_ids"].shape == (4, 16) and torch.equal(
        a[0]["labels"][:, :-1], a[0]["input_ids"][:, 1:]
    )


def test_sources_are_sampled_by_weight(folder):
    dm = LitDataModule(str(folder), seq_len=8, batch_size=500)
    batch = loader_batches(dm, 1)[0]
    from lit_llm.data.sampling import choose_windows

    source, _ = choose_windows(
        dm.seed, batch["sample_index"].numpy(), [s.num_tokens for s in dm.train_sets], dm.source_weights, 9
    )
    share_a = (source == 0).mean()
    assert dm.source_names == ["a", "b"] and 0.68 < share_a < 0.82  # weight 3:1


def test_ranks_get_disjoint_samples_and_together_the_single_rank_stream(folder):
    single = loader_batches(LitDataModule(str(folder), seq_len=8, batch_size=4), 2)
    ranks = [
        loader_batches(LitDataModule(str(folder), seq_len=8, batch_size=2), 2, rank=r, world=2)
        for r in (0, 1)
    ]
    seen = [set(b["sample_index"].tolist()) for r in ranks for b in r]
    assert all(not (x & y) for i, x in enumerate(seen) for y in seen[i + 1 :])
    assert set().union(*seen) == set(torch.cat([b["sample_index"] for b in single]).tolist())


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_order_does_not_depend_on_workers(folder, workers):
    dm = LitDataModule(str(folder), seq_len=8, batch_size=3, num_workers=workers)
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    got = [next(it)["sample_index"] for _ in range(5)]
    assert torch.equal(torch.cat(got), torch.arange(15))


def test_skip_ranges_are_never_sampled_and_survive_state_round_trip(folder):
    dm = LitDataModule(str(folder), seq_len=8, batch_size=5, skip_ranges=[(3, 7), (12, 14)])
    indices = torch.cat([b["sample_index"] for b in loader_batches(dm, 3)]).tolist()
    assert indices == [0, 1, 2, 7, 8, 9, 10, 11, 14, 15, 16, 17, 18, 19, 20]
    dm.position = 10
    state = dm.state_dict()
    fresh = LitDataModule(str(folder), seq_len=8, batch_size=5)
    fresh.load_state_dict(state)
    assert fresh.position == 10 and fresh.skip_ranges == [(3, 7), (12, 14)]
    assert loader_batches(fresh, 1)[0]["sample_index"].tolist() == indices[10:15]


def test_sampling_arithmetic():
    skips = merge_ranges([(5, 8), (2, 3), (7, 10), (20, 20)])
    assert skips == [(2, 3), (5, 10)]
    idx = sample_index(np.arange(8), skips)
    assert idx.tolist() == [0, 1, 3, 4, 10, 11, 12, 13]
    assert [stream_position(i, skips) for i in idx] == list(range(8))


def test_validation_windows_and_bytes(tmp_path):
    data = make_text_folder(tmp_path)
    dm = LitDataModule(str(data), seq_len=32, batch_size=2)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch["input_ids"].shape == (2, 32) and batch["target_bytes"].shape == (2, 32)
    assert (batch["target_bytes"] >= 0).all() and batch["target_bytes"].sum() > 32
    eos = dm.eos_id
    assert (batch["target_bytes"][batch["labels"] == eos] == 0).all()


def test_shard_round_trip_and_corruption_is_detected(folder):
    shards = ShardSet.open(folder, "train", "a", verify_checksums=True)
    assert shards.num_documents == 30 and len(shards.document(3)) == 120
    assert np.array_equal(
        shards.window(100, 40), np.concatenate([shards.document(0), shards.document(1)])[100:140]
    )
    path = folder / "train" / "a-00000.bin"
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="checksum"):
        ShardSet.open(folder, "train", "a", verify_checksums=True)
    path.write_bytes(bytes(raw[:-5]))
    with pytest.raises(UserError, match="truncated"):
        Shard(path)


def test_missing_folder_and_tiny_source_are_clear_errors(tmp_path, folder):
    with pytest.raises(UserError, match="not found"):
        LitDataModule(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="fewer than seq_len"):
        LitDataModule(str(folder), seq_len=5000).setup("fit")


def test_changing_seed_on_resume_is_refused(folder):
    state = LitDataModule(str(folder)).state_dict()
    with pytest.raises(UserError, match="seed"):
        LitDataModule(str(folder), seed=5).load_state_dict(state)


class TrainingTrainer:
    """What the data module reads of a Trainer while training on one process."""

    global_rank, world_size, training = 0, 1, True


@pytest.mark.parametrize("workers", [0, 2])
def test_restart_stream_continues_from_the_rewound_position_without_prefetched_batches(folder, workers):
    # Lightning holds one batch ahead of the one it trains on; loader workers hold more.
    dm = LitDataModule(str(folder), seq_len=8, batch_size=3, num_workers=workers)
    dm.setup("fit")
    dm.trainer = TrainingTrainer()
    stream = iter(dm.train_dataloader())
    held = next(stream)
    consumed = []
    for _ in range(4):  # consume one, prefetch the next, as the training loop does
        batch, held = dm.on_before_batch_transfer(held, 0), next(stream)
        consumed.append(batch["sample_index"].tolist())
    assert consumed == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]] and dm.position == 12
    # A rollback to position 3 that skips the samples now at positions [3, 15).
    dm.load_state_dict({**dm.state_dict(), "position": 3})
    assert dm.skip_positions(3, 15) == (3, 15)
    dm.restart_stream()
    after = [dm.on_before_batch_transfer(held, 0)["sample_index"].tolist()]  # the held batch, rebuilt
    for _ in range(3):
        after.append(dm.on_before_batch_transfer(next(stream), 0)["sample_index"].tolist())
    assert after == [[15, 16, 17], [18, 19, 20], [21, 22, 23], [24, 25, 26]] and dm.position == 15
