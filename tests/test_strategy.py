"""ShardedStrategy: sharded checkpoint folders written beside the target and renamed into place, sync or
async (two FSDP2 processes on CPU, gloo); a kill before the rename keeps the previous last.ckpt; a kill
between the two renames of a replacement is recovered from `.<name>.old` (unit tests on folders); one
process resumes a two-process checkpoint with its losses."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lit_llm.checkpoint import (
    check_checkpoint,
    consolidate_sharded,
    load_gpt,
    move_into_place,
    remove_stale,
    resolve_checkpoint,
)
from lit_llm.errors import UserError
from lit_llm.lightning_cli import _named_checkpoint
from lit_llm.strategy import ShardedStrategy
from tests.helpers import TINY, train_losses
from tests.test_distributed import QUIET

ROOT = Path(__file__).resolve().parents[1]
FSDP2 = [
    "--trainer.devices",
    "2",
    "--trainer.strategy.class_path",
    "lightning.pytorch.strategies.ModelParallelStrategy",
    "--trainer.strategy.init_args.data_parallel_size",
    "2",
    "--trainer.strategy.init_args.tensor_parallel_size",
    "1",
]
SHARD_FILES = [".metadata", "__0_0.distcp", "__1_0.distcp", "meta.pt"]


def sharded_folder(path: Path, step: int) -> Path:
    """A folder that `is_sharded` accepts, marked with its step."""
    path.mkdir(parents=True)
    torch.save({"global_step": step}, path / "meta.pt")
    (path / "__0_0.distcp").write_bytes(b"shard")
    return path


def step_of(path: Path) -> int:
    return torch.load(path / "meta.pt", weights_only=True)["global_step"]


def test_a_replacement_moves_the_old_aside_then_deletes_it(tmp_path):
    last = sharded_folder(tmp_path / "last.ckpt", 2)
    move_into_place(sharded_folder(tmp_path / ".last.ckpt.tmp", 4), last)
    assert step_of(last) == 4 and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    move_into_place(
        sharded_folder(tmp_path / ".new.ckpt.tmp", 6), tmp_path / "new.ckpt"
    )  # nothing to replace
    assert step_of(tmp_path / "new.ckpt") == 6


def kill_between_the_renames(tmp_path: Path, monkeypatch) -> Path:
    """What a SIGKILL between `last.ckpt -> .last.ckpt.old` and `.last.ckpt.tmp -> last.ckpt` leaves."""
    last = sharded_folder(tmp_path / "run" / "checkpoints" / "last.ckpt", 2)
    renames = []

    def killed_at_the_second(src, dst):
        if renames:
            raise KeyboardInterrupt("killed")
        renames.append((src, dst))
        os.rename(src, dst)

    monkeypatch.setattr(os, "replace", killed_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        move_into_place(sharded_folder(last.with_name(".last.ckpt.tmp"), 4), last)
    monkeypatch.undo()
    assert not last.exists() and step_of(last.with_name(".last.ckpt.old")) == 2
    return last


@pytest.mark.parametrize("reader", ["resolve_checkpoint", "check_checkpoint", "ckpt_path last", "next save"])
def test_a_kill_between_the_two_renames_is_recovered_from_the_old_folder(
    tmp_path, monkeypatch, capsys, reader
):
    last = kill_between_the_renames(tmp_path, monkeypatch)
    run = last.parent.parent
    if reader == "resolve_checkpoint":
        assert resolve_checkpoint(run) == last
    elif reader == "check_checkpoint":
        check_checkpoint(last)
    elif reader == "ckpt_path last":
        assert _named_checkpoint("last", str(run)) == last
    else:
        remove_stale(last.parent)  # what a save does first; it also removes the unfinished temp folder
    left = ["last.ckpt"] if reader == "next save" else [".last.ckpt.tmp", "last.ckpt"]
    assert step_of(last) == 2 and sorted(p.name for p in last.parent.iterdir()) == left
    said = capsys.readouterr().err.strip().splitlines()
    assert said == [
        f"lit-llm: {last}: recovered from .last.ckpt.old (a save was killed between its two renames)"
    ]


def test_stale_temp_and_old_folders_go_on_the_next_save(tmp_path):
    sharded_folder(tmp_path / "last.ckpt", 4)
    sharded_folder(tmp_path / ".last.ckpt.old", 2)  # killed after both renames: the new one is whole
    sharded_folder(tmp_path / ".step-000006.ckpt.tmp", 6)  # killed before its rename
    remove_stale(tmp_path)
    assert (
        sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"] and step_of(tmp_path / "last.ckpt") == 4
    )


def fit(args: list[str], run: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`lit-llm fit` in a process group of its own (a killing test writer takes every rank down with it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lit_llm.cli", "fit", *args, "--trainer.default_root_dir", str(run)]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, start_new_session=True
    )


@pytest.fixture(scope="module")
def fsdp_runs(data, tmp_path_factory) -> dict[str, Path]:
    """Two-process FSDP2 runs of 4 steps (micro-batch 2 per rank), checkpoints every 2 steps, saved
    synchronously and in the background."""
    runs = {}
    for mode in ("sync", "async"):
        runs[mode] = run = tmp_path_factory.mktemp(mode)
        args = [*TINY, *QUIET, *FSDP2, "--data.path", str(data), "--data.batch_size", "2"]
        args += ["--trainer.max_steps", "4", "--checkpoint.every_n_steps", "2"]
        done = fit([*args, "--checkpoint.async_save", str(mode == "async").lower()], run)
        assert done.returncode == 0, done.stderr[-4000:]
    return runs


@pytest.mark.slow
def test_sync_and_async_sharded_saves_write_the_same_whole_folders(fsdp_runs):
    for mode, run in fsdp_runs.items():
        strategy = yaml.safe_load((run / "logs" / "version_0" / "config.yaml").read_text())["trainer"][
            "strategy"
        ]
        assert strategy["class_path"] == "lit_llm.strategy.ShardedStrategy"
        assert strategy["init_args"]["async_checkpoint"] is (mode == "async")
        assert strategy["init_args"]["data_parallel_size"] == 2  # the user's arguments are kept
        folder = run / "checkpoints"
        names = ["last.ckpt", "step-000002.ckpt", "step-000004.ckpt"]
        assert sorted(p.name for p in folder.iterdir()) == names  # no temp or old folders left
        for name in names:
            assert sorted(p.name for p in (folder / name).iterdir()) == SHARD_FILES
    for name in ("step-000002.ckpt", "last.ckpt"):
        sync, background = (consolidate_sharded(run / "checkpoints" / name) for run in fsdp_runs.values())
        assert sync["global_step"] == background["global_step"] == int(name[5:11] if "step" in name else 4)
        assert sync["state_dict"].keys() == background["state_dict"].keys()
        for key, value in sync["state_dict"].items():
            assert torch.equal(value, background["state_dict"][key]), (name, key)
        moments = [s["optimizer_states"][0]["state"] for s in (sync, background)]
        assert all(torch.equal(v, moments[1][p][k]) for p, d in moments[0].items() for k, v in d.items())
    assert train_losses(fsdp_runs["sync"]) == train_losses(fsdp_runs["async"])


@pytest.mark.slow
def test_one_process_resumes_a_two_process_checkpoint_with_its_losses(data, fsdp_runs, tmp_path):
    """2 -> 1 straight from the sharded folder (no conversion): twice the micro-batch, the same global batch."""
    start = fsdp_runs["async"] / "checkpoints" / "step-000002.ckpt"
    args = [*TINY, *QUIET, "--data.path", str(data), "--trainer.max_steps", "4", "--ckpt_path", str(start)]
    done = fit(args, tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"{start}: a sharded checkpoint; merging its shards" in done.stderr
    two, one = train_losses(fsdp_runs["sync"]), train_losses(tmp_path)
    assert sorted(one) == [2, 3]
    for step, loss in one.items():  # the same rows summed in another order: float32 rounding only
        assert abs(float(loss) - float(two[step])) < 1e-4, (one, two)


@pytest.mark.slow
def test_tp2_resumes_a_two_process_fsdp2_checkpoint_with_its_losses_and_its_checkpoint_exports(
    data, fsdp_runs, tmp_path
):
    """FSDP2 2 -> TP 2: the distributed-checkpoint reader reshards; the TP run's own sharded folder reads
    as one model, converts and exports."""
    from lit_llm.cli import main

    start = fsdp_runs["sync"] / "checkpoints" / "step-000002.ckpt"
    tp2 = [*FSDP2[:4], "--trainer.strategy.init_args.tensor_parallel_size", "2"]
    args = [
        *TINY,
        *QUIET,
        *tp2,
        "--data.path",
        str(data),
        "--trainer.max_steps",
        "4",
        "--ckpt_path",
        str(start),
    ]
    done = fit(args, tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "data-parallel groups: 2 then, 1 now" in done.stdout + done.stderr
    two, tp = train_losses(fsdp_runs["sync"]), train_losses(tmp_path)
    assert sorted(tp) == [2, 3]
    for step, loss in tp.items():
        assert abs(float(loss) - float(two[step])) < 1e-4, (tp, two)
    assert load_gpt(tmp_path)[1].global_step == 4
    main(["checkpoint", "convert", "--ckpt_path", str(tmp_path), "--out", str(tmp_path / "tp.ckpt")])
    main(["export", "--ckpt_path", str(tmp_path / "tp.ckpt"), "--out", str(tmp_path / "hf")])
    assert (tmp_path / "hf" / "model.safetensors").exists()


@pytest.mark.slow
def test_a_kill_before_the_rename_keeps_the_previous_sharded_last_checkpoint(data, tmp_path):
    """All ranks SIGKILLed when the step-4 last.ckpt is whole in its temp folder (meta.pt too), before the
    rename: last.ckpt is still the step-2 one, whole and loadable."""
    killer = ["--trainer.strategy.class_path", "tests.killer.KillingShardedStrategy"]
    killer += [
        "--trainer.strategy.init_args.kill_at_commit",
        "4",
        "--trainer.strategy.init_args.async_checkpoint",
        "true",
    ]
    common = [
        *TINY,
        *QUIET,
        "--data.path",
        str(data),
        "--data.batch_size",
        "2",
        "--checkpoint.every_n_steps",
        "2",
    ]
    killed = fit([*common, "--trainer.devices", "2", *killer, "--trainer.max_steps", "6"], tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == [
        ".last.ckpt.tmp",
        "last.ckpt",
        "step-000002.ckpt",
        "step-000004.ckpt",
    ]
    check_checkpoint(folder / "last.ckpt")
    assert consolidate_sharded(folder / "last.ckpt")["global_step"] == 2
    # the next save removes the temp folder (test_stale_temp_and_old_folders_go_on_the_next_save) and
    # `--ckpt_path last` resumes a whole folder (test_one_process_resumes_a_two_process_checkpoint_...)


@pytest.mark.slow
def test_a_failed_commit_on_rank_0_stops_every_rank_in_one_line(data, tmp_path):
    """rank 0 cannot finish the step-2 last.ckpt (disk full, in the background): the next save raises it on
    both ranks (none waits for rank 0 until the timeout); one line naming the folder; the previous stays."""
    failing = ["--trainer.strategy.class_path", "tests.killer.KillingShardedStrategy"]
    failing += [
        "--trainer.strategy.init_args.kill_at_commit",
        "2",
        "--trainer.strategy.init_args.how",
        "disk_full",
    ]
    failing += ["--trainer.strategy.init_args.async_checkpoint", "true", "--trainer.devices", "2"]
    args = [
        *TINY,
        *QUIET,
        "--data.path",
        str(data),
        "--data.batch_size",
        "2",
        "--checkpoint.every_n_steps",
        "2",
    ]
    failed = fit([*args, *failing, "--trainer.max_steps", "6"], tmp_path, timeout=120)
    last = tmp_path / "checkpoints" / "last.ckpt"
    line = f"{last}: checkpoint not written (OSError: [Errno 28] No space left on device); the previous one is intact"
    assert failed.returncode == 1 and f"lit-llm: error: {line}" in failed.stderr, failed.stderr[-3000:]
    assert (
        not last.exists()
        and consolidate_sharded(tmp_path / "checkpoints" / "step-000002.ckpt")["global_step"] == 2
    )


@pytest.mark.parametrize(
    "sizes, said",
    [
        (dict(data_parallel_size=2), "data_parallel_size 2 x tensor_parallel_size auto (= 2) != 2 processes"),
        (dict(data_parallel_size=4, tensor_parallel_size=1), "data_parallel_size 4 x tensor_parallel_size 1"),
    ],
)
def test_mesh_sizes_that_do_not_multiply_to_the_processes_are_one_line(sizes, said):
    strategy = ShardedStrategy(**sizes)
    strategy.num_nodes, strategy.parallel_devices = 1, [torch.device("cpu")] * 2
    with pytest.raises(UserError, match=re.escape(said)):
        strategy.check_layout()
    valid = ShardedStrategy(data_parallel_size=2, tensor_parallel_size=1)
    valid.num_nodes, valid.parallel_devices = 1, [torch.device("cpu")] * 2
    valid.check_layout()  # a pair that multiplies to the processes passes
