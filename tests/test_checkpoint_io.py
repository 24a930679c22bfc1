"""AtomicCheckpointIO: checkpoints written beside their target and renamed; no temp files in $TMPDIR,
a failed write leaves the previous checkpoint whole, stale temp files of a killed write are removed.
Async: a snapshot written by one background thread, the same checkpoints and losses as a synchronous
fit, a SIGKILL in the middle of a background write leaves the previous checkpoint whole."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from lit_llm.checkpoint import check_checkpoint
from lit_llm.checkpoint_io import AtomicCheckpointIO, CheckpointWriteError, cpu_snapshot
from tests.helpers import TINY, fit_tiny, make_text_folder, train_losses

ROOT = Path(__file__).resolve().parents[1]


def test_failed_write_keeps_the_previous_checkpoint_and_stale_temp_files_go(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, target)
    stale = tmp_path / ".last.ckpt.tmp-12345"  # what a SIGKILL during a write leaves
    stale.write_bytes(b"half a checkpoint")

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # the stale one went too
    io.save_checkpoint({"step": 3}, target)
    assert torch.load(target, weights_only=True) == {"step": 3}


def test_fit_writes_no_temp_files_outside_the_run(tmp_path):
    data = make_text_folder(tmp_path / "text")
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(scratch), "OMP_NUM_THREADS": "1"}
    args = [*TINY, "--data.path", str(data), "--trainer.max_steps", "6", "--checkpoint.every_n_steps", "2"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lit_llm.cli",
            "fit",
            *args,
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert list(scratch.rglob("*")) == []
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["last.ckpt", "step-000002.ckpt", "step-000004.ckpt", "step-000006.ckpt"]


class SlowWriter(AtomicCheckpointIO):
    """Records which thread wrote what and when; each write takes `seconds`."""

    def __init__(self, seconds: float = 0.3) -> None:
        super().__init__(async_save=True)
        self.seconds, self.writes = seconds, []

    def write(self, checkpoint, path) -> None:
        start = time.perf_counter()
        time.sleep(self.seconds)
        super().write(checkpoint, path)
        self.writes.append((path.name, threading.current_thread().name, start, time.perf_counter()))


def test_async_save_writes_a_snapshot_of_the_save_moment_in_one_background_thread(tmp_path):
    io = SlowWriter()
    weight = torch.zeros(64)
    checkpoint = {"w": weight, "tied": weight, "view": weight[8:16], "meta": {"step": 1}}
    started = time.perf_counter()
    io.save_checkpoint(checkpoint, tmp_path / "a.ckpt")
    returned = time.perf_counter()
    weight.add_(1)  # the optimizer moves on while the file is written
    io.save_checkpoint({"w": weight.clone()}, tmp_path / "b.ckpt")  # waits for a.ckpt: one write in flight
    io.teardown()
    assert returned - started < io.seconds  # the save did not wait for its write
    (a, a_thread, _, a_end), (b, b_thread, b_start, _) = io.writes
    assert (a, b) == ("a.ckpt", "b.ckpt") and b_start >= a_end
    assert a_thread == b_thread != threading.main_thread().name
    saved = torch.load(tmp_path / "a.ckpt", weights_only=True)
    assert torch.equal(saved["w"], torch.zeros(64)) and saved["meta"] == {"step": 1}
    assert (
        saved["tied"].data_ptr() == saved["w"].data_ptr()
    )  # tied tensors stay tied, as torch.save keeps them
    assert saved["view"].untyped_storage().data_ptr() == saved["w"].untyped_storage().data_ptr()
    assert torch.equal(torch.load(tmp_path / "b.ckpt", weights_only=True)["w"], torch.ones(64))


def test_a_snapshot_reuses_the_memory_of_the_previous_one_where_sizes_match():
    weight, moment = torch.zeros(64), torch.zeros(8)
    buffers: list = []
    first = cpu_snapshot({"w": weight, "m": moment}, buffers)
    kept = list(buffers)
    weight.add_(1)
    second = cpu_snapshot({"w": weight, "m": moment, "new": torch.ones(3)}, buffers)
    assert torch.equal(second["w"], torch.ones(64)) and torch.equal(second["new"], torch.ones(3))
    assert buffers[:2] == kept and len(buffers) == 3  # the same storages, one more for the new tensor
    assert first["w"].data_ptr() == second["w"].data_ptr()  # hence: only once the first one is written
    moved = cpu_snapshot({"m": moment, "w": weight}, buffers)  # another order: sizes differ, fresh memory
    assert torch.equal(moved["w"], weight) and moved["w"].data_ptr() != second["w"].data_ptr()


def test_load_and_remove_wait_for_the_write_in_flight(tmp_path):
    io = SlowWriter()
    io.save_checkpoint({"step": 1}, tmp_path / "x.ckpt")
    assert io.load_checkpoint(tmp_path / "x.ckpt", weights_only=True) == {"step": 1}
    io.save_checkpoint({"step": 2}, tmp_path / "y.ckpt")
    io.remove_checkpoint(tmp_path / "y.ckpt")  # not brought back by the rename of a write still running
    io.teardown()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ckpt"]


def test_a_failed_background_write_is_one_line_naming_the_file_and_keeps_the_previous(tmp_path, monkeypatch):
    io = AtomicCheckpointIO(async_save=True)
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, target)
    io.wait()

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    io.save_checkpoint({"step": 2}, target)  # fails in the background ...
    with pytest.raises(CheckpointWriteError) as failed:
        io.save_checkpoint({"step": 3}, target)  # ... and is raised at the next save
    monkeypatch.undo()
    message = str(failed.value)
    assert message.startswith(f"{target}: checkpoint not written (OSError") and "\n" not in message
    assert "No space left on device" in message
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    monkeypatch.setattr(torch, "save", full_disk)
    io.save_checkpoint({"step": 4}, target)
    with pytest.raises(CheckpointWriteError):
        io.teardown()  # the end of a run does not hide it either
    monkeypatch.undo()
    io.teardown()  # raised once


def test_a_sharded_folder_loads_as_one_checkpoint(tmp_path):
    """What one process (or DDP) gets from an FSDP2 run's checkpoint folder: its shards merged."""
    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "last.ckpt"
    weights = {"model.w": torch.arange(6.0).reshape(2, 3)}
    optimizer = {"state": {"model.w": {"exp_avg": torch.ones(2, 3)}}, "param_groups": [{"lr": 0.1}]}
    dcp.save({"state_dict": weights, "optimizer_0": optimizer}, checkpoint_id=folder, no_dist=True)
    torch.save({"global_step": 7, "lit_llm": {}}, folder / "meta.pt")
    loaded = AtomicCheckpointIO(async_save=True).load_checkpoint(folder)
    assert loaded["global_step"] == 7 and torch.equal(loaded["state_dict"]["model.w"], weights["model.w"])
    assert torch.equal(loaded["optimizer_states"][0]["state"]["model.w"]["exp_avg"], torch.ones(2, 3))


def checkpoint_tensors(path: Path) -> dict:
    """Weights, optimizer state and the kit's extras (RNG states, tokens seen) of a checkpoint, flattened."""
    ckpt = torch.load(path, weights_only=True)
    flat = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}/{key}", item)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(f"{prefix}/{i}", item)
        else:
            flat[prefix] = value

    for key in ("state_dict", "optimizer_states", "lit_llm", "global_step"):
        walk(key, ckpt[key])
    return flat


def test_async_fit_writes_the_checkpoints_of_a_sync_fit_and_resumes_to_its_losses(data, tmp_path):
    steps = ["--trainer.max_steps", "4", "--checkpoint.every_n_steps", "2"]
    fit_tiny(data, tmp_path / "sync", *steps)
    fit_tiny(data, tmp_path / "async", *steps, "--checkpoint.async_save", "true")
    names = ["last.ckpt", "step-000002.ckpt", "step-000004.ckpt"]
    for name in names:
        sync, background = (
            checkpoint_tensors(tmp_path / run / "checkpoints" / name) for run in ("sync", "async")
        )
        assert sync.keys() == background.keys()
        for key, value in sync.items():
            same = (
                torch.equal(value, background[key])
                if isinstance(value, torch.Tensor)
                else value == background[key]
            )
            assert same, (name, key)
    assert sorted(p.name for p in (tmp_path / "async" / "checkpoints").iterdir()) == names
    start = tmp_path / "async" / "checkpoints" / "step-000002.ckpt"
    fit_tiny(data, tmp_path / "resumed", *steps, "--checkpoint.async_save", "true", "--ckpt_path", str(start))
    sync_losses = train_losses(tmp_path / "sync")
    assert train_losses(tmp_path / "resumed") == {s: sync_losses[s] for s in (2, 3)}


def test_a_kill_during_an_async_write_keeps_the_previous_last_checkpoint(data, tmp_path):
    """SIGKILL from the writer thread halfway through the step-4 last.ckpt: the step-2 one stays, whole; the
    half file is only a temp file, which the next run removes."""
    run = tmp_path / "run"
    common = [
        *TINY,
        "--data.path",
        str(data),
        "--trainer.default_root_dir",
        str(run),
        "--checkpoint.every_n_steps",
        "2",
    ]
    killer = {"class_path": "tests.killer.KillingCheckpointIO", "init_args": {"kill_at_save": 4}}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lit_llm.cli", "fit", *common, "--trainer.max_steps", "6"]
    killed = subprocess.run(
        [*command, "--trainer.plugins", json.dumps(killer)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    folder = run / "checkpoints"
    (half,) = folder.glob(".last.ckpt.tmp-*")
    with pytest.raises(Exception):  # noqa: B017 (torch raises several types for a truncated file)
        torch.load(half, weights_only=True)
    check_checkpoint(folder / "last.ckpt")
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 2
    assert torch.load(folder / "step-000004.ckpt", weights_only=True)["global_step"] == 4  # written before
    fit_tiny(data, run, *common[len(TINY) :], "--trainer.max_steps", "6", "--ckpt_path", "last")
    assert not list(folder.glob(".*"))
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 6
    resumed = list(csv.DictReader((run / "logs" / "version_1" / "metrics.csv").open()))
    assert sorted({int(r["step"]) for r in resumed if r.get("train/loss")}) == [2, 3, 4, 5]  # from step 2
