"""AtomicCheckpointIO: checkpoints written beside their target and renamed; no temp files in $TMPDIR,
a failed write leaves the previous checkpoint whole, stale temp files of a killed write are removed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_llm.checkpoint_io import AtomicCheckpointIO
from tests.helpers import TINY, make_text_folder

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
