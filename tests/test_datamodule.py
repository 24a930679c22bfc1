"""LitDataModule: deterministic windows, rank/worker invariance, skip ranges, state, bad inputs."""

import numpy as np
import pytest
import torch

from lit_llm.data.datamodule import LitDataModule
from lit_llm.data.sampling import merge_ranges, sample_index, stream_position
from lit_llm.data.shards import Shard, ShardSet
from lit_llm.data.windows import TrainWindows
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
        dm.sampling,
        dm.eos_id if dm.document_mask else None,
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


class RankTrainer:
    """What the data module reads of a Trainer on data-parallel rank `rank` of `world`."""

    training, max_steps, accumulate_grad_batches = True, -1, 1

    def __init__(self, rank: int, world: int) -> None:
        self.global_rank, self.world_size = rank, world


def epoch_offsets(dm, steps: int, rank: int, world: int) -> list[int]:
    """Window offsets of the samples rank `rank` trains on in `steps` steps from dm.position (checked
    against the batch rows' tokens), through the real DataLoader."""
    dm.trainer = RankTrainer(rank, world)
    stream = iter(dm.train_dataloader())
    windows = dm.train_windows(0)
    offsets = []
    for _ in range(steps):
        batch = next(stream)
        _, offset = windows.window_offsets(batch["sample_index"].numpy())
        rows = [dm.train_sets[0].window(int(o), dm.seq_len + 1)[:-1] for o in offset]
        assert np.array_equal(batch["input_ids"].numpy(), np.stack(rows))
        offsets += [(int(i), int(o)) for i, o in zip(batch["sample_index"], offset)]
    return offsets


def test_one_epoch_visits_every_window_once_across_ranks_workers_resume_and_skips(tmp_path):
    folder = make_shard_folder(tmp_path / "one", docs_per_source=30)  # 3,600 tokens
    skips = [(40, 52)]
    first = LitDataModule(str(folder), seq_len=8, batch_size=4, num_workers=2, skip_ranges=skips)
    first.setup("fit")
    windows = first.source_windows[0]
    assert windows == 449
    seen = epoch_offsets(first, 20, 0, 2) + epoch_offsets(first, 20, 1, 2)
    first.position = 20 * 8  # both ranks trained 20 steps of 2 x 4 samples
    resumed = LitDataModule(str(folder), seq_len=8, batch_size=4, num_workers=2)
    resumed.load_state_dict(first.state_dict())
    resumed.setup("fit")
    steps = -(-(windows - 160) // 8)  # to the end of the epoch
    seen += epoch_offsets(resumed, steps, 0, 2) + epoch_offsets(resumed, steps, 1, 2)
    trained = {i: o for i, o in seen if i < windows}
    assert len(trained) == len([i for i, _ in seen if i < windows])  # no sample twice
    skipped = resumed.train_windows(0).window_offsets(np.arange(40, 52))[1].tolist()
    assert set(trained) == set(range(windows)) - set(range(40, 52))
    assert sorted([*trained.values(), *skipped]) == list(range(0, windows * 8, 8))


def test_sampling_mode_is_kept_across_resume_and_random_stays_available(folder):
    random_dm = LitDataModule(str(folder), seq_len=8, batch_size=4, sampling="random")
    epoch_dm = LitDataModule(str(folder), seq_len=8, batch_size=4)
    a, b = loader_batches(random_dm, 1)[0], loader_batches(epoch_dm, 1)[0]
    assert not torch.equal(a["input_ids"], b["input_ids"])
    with pytest.raises(UserError, match="--data.sampling random"):
        epoch_dm.load_state_dict(random_dm.state_dict())
    with pytest.raises(UserError, match="data.sampling must be one of"):
        LitDataModule(str(folder), sampling="shuffle")


def test_the_fit_line_names_shares_windows_and_planned_epochs(folder):
    dm = LitDataModule(str(folder), seq_len=8, batch_size=10)
    dm.trainer = RankTrainer(0, 1)
    dm.trainer.max_steps = 450
    dm.setup("fit")
    line = dm.describe_sampling()
    assert line.startswith("data: epoch sampling") and "a 75.0% of samples, 449 windows of 9 tokens" in line
    assert "b 25.0% of samples, 449 windows of 9 tokens, 2.51 epochs in 450 steps" in line
    dm.position = 449 * 4
    assert dm.source_epochs() == pytest.approx({"a": 3.0, "b": 1.0}, abs=1e-3)


def test_document_mask_adds_positions_that_restart_after_eos(tmp_path):
    folder = make_text_folder(tmp_path)
    dm = LitDataModule(str(folder), seq_len=200, batch_size=8, document_mask=True)
    batch = loader_batches(dm, 1)[0]
    ids, positions = batch["input_ids"], batch["position_ids"]
    assert positions.shape == ids.shape and (positions[:, 0] == 0).all()
    after_eos = torch.zeros_like(ids, dtype=torch.bool)
    after_eos[:, 1:] = ids[:, :-1] == dm.eos_id
    assert torch.equal(positions[:, 1:] == 0, after_eos[:, 1:]) and after_eos.any()
    dm.setup("validate")
    val = next(iter(dm.val_dataloader()))
    assert val["position_ids"].shape == val["input_ids"].shape
    assert "position_ids" not in loader_batches(LitDataModule(str(folder), seq_len=200, batch_size=8), 1)[0]


def test_later_epochs_tile_the_source_from_another_shift_and_stay_inside_it(tmp_path):
    folder = make_shard_folder(tmp_path / "one", docs_per_source=30)  # 3,600 tokens
    dm = LitDataModule(str(folder), seq_len=8, batch_size=4)
    dm.setup("fit")
    windows, tokens = dm.source_windows[0], dm.train_sets[0].num_tokens
    _, offsets = dm.train_windows(0).window_offsets(np.arange(6 * windows))
    shifts = []
    for epoch in range(6):
        tiling = np.sort(offsets[epoch * windows : (epoch + 1) * windows])
        shift = int(tiling[0])
        assert np.array_equal(tiling, shift + 8 * np.arange(windows))  # one tiling, each window once
        assert 0 <= shift < 8 and tiling[-1] + 9 <= tokens
        shifts.append(shift)
    assert shifts[0] == 0 and len(set(shifts[1:])) > 1  # epoch 0 from the start, later epochs elsewhere
