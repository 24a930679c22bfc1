"""The end of every run is validated and saved: FinalCheckpoint and `lit-llm fit`'s checkpoint retention.

Through the CLI and in a plain Trainer: final validation when max_steps is not a multiple of the
validation interval, last.ckpt at the final step after max_time and after SIGTERM, bounded retention.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback, Trainer
from lit_llm.callbacks import FinalCheckpoint

from lit_llm.data.datamodule import LitDataModule
from lit_llm.model import ModelConfig
from lit_llm.module import LitLLM
from lit_llm.plot import read_metrics
from tests.helpers import TINY, fit_tiny

ROOT = Path(__file__).resolve().parents[1]


def last_step(run: Path) -> int:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]


def test_final_weights_are_validated_and_saved_when_max_steps_is_off_the_interval(data, tmp_path):
    run = tmp_path / "run"
    fit_tiny(data, run, "--trainer.max_steps", "60", "--trainer.val_check_interval", "200")
    rows = read_metrics(run)
    validated = [int(r["step"]) for r in rows if r.get("val/loss")]
    assert validated == [59] and rows[-1].get("val/bpb")  # logged at the last step (0-based 59)
    assert last_step(run) == 60


def test_bounded_retention_keeps_the_newest_and_every_nth(data, tmp_path):
    run = tmp_path / "run"
    retention = [
        "--checkpoint.every_n_steps",
        "5",
        "--checkpoint.keep_last",
        "2",
        "--checkpoint.keep_every",
        "10",
    ]
    fit_tiny(data, run, "--trainer.max_steps", "32", *retention)
    names = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert names == ["last.ckpt", "step-000025.ckpt", "step-000030.ckpt"]
    kept = sorted(p.name for p in (run / "checkpoints" / "kept").glob("*.ckpt"))
    assert kept == ["step-000010.ckpt", "step-000020.ckpt", "step-000030.ckpt"]
    assert last_step(run) == 32


def test_max_time_without_validation_data_still_saves_the_final_step(data, tmp_path):
    run = tmp_path / "run"
    fit_tiny(
        data,
        run,
        "--trainer.max_steps",
        "100000",
        "--trainer.max_time",
        "00:00:00:03",
        "--trainer.limit_val_batches",
        "0",
        "--checkpoint.every_n_steps",
        "1000000",  # no periodic save: last.ckpt can only come from the end of training
    )
    rows = read_metrics(run)
    final = max(int(r["step"]) for r in rows if r.get("train/loss")) + 1
    assert last_step(run) == final


class SigtermAt(Callback):
    """Sends this process SIGTERM (a preemption) when optimizer step `step` ends."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_saves_the_last_completed_step(data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    config = run / "sigterm.yaml"
    spec = {"class_path": "tests.test_final_checkpoint.SigtermAt", "init_args": {"step": 23}}
    config.write_text(yaml.safe_dump({"trainer": {"callbacks": [spec]}}))
    args = [
        *TINY,
        "--data.path",
        str(data),
        "--trainer.max_steps",
        "200",
        "--trainer.default_root_dir",
        str(run),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lit_llm.cli", "fit", *args, "--config", str(config)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]  # Lightning ends a SIGTERMed fit cleanly
    assert (
        "FinalCheckpoint: saved" in result.stderr + result.stdout
        and "SIGTERMException" in result.stderr + result.stdout
    )
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 23 and checkpoint["LitDataModule"]["position"] == 23 * 4


def test_plain_trainer_exception_saves_the_position_of_the_last_completed_step(data, tmp_path):
    class Crash(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if trainer.global_step == 7:
                raise RuntimeError("a crash in step 7")

    datamodule = LitDataModule(str(data), seq_len=32, batch_size=4, verify_checksums=False)
    model = LitLLM(
        arch=ModelConfig(n_layer=2, n_head=2, d_model=32, max_seq_len=64), vocab_size=datamodule.vocab_size
    )
    quiet = {
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    trainer = Trainer(
        max_steps=20, default_root_dir=str(tmp_path), callbacks=[Crash(), FinalCheckpoint()], **quiet
    )
    with pytest.raises(RuntimeError, match="a crash in step 7"):
        trainer.fit(model, datamodule)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 7 and checkpoint["LitDataModule"]["position"] == 7 * 4


def test_plain_trainer_validates_and_saves_the_final_step(data, tmp_path):
    datamodule = LitDataModule(str(data), seq_len=32, batch_size=4, verify_checksums=False)
    model = LitLLM(
        arch=ModelConfig(n_layer=2, n_head=2, d_model=32, max_seq_len=64), vocab_size=datamodule.vocab_size
    )
    trainer = Trainer(
        max_steps=6,
        val_check_interval=200,
        check_val_every_n_epoch=None,
        limit_val_batches=2,
        default_root_dir=str(tmp_path),
        callbacks=[FinalCheckpoint()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule)
    assert "val/loss" in trainer.callback_metrics and "val/bpb" in trainer.callback_metrics
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6
