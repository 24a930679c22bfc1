"""LossSpikeRollback on real tiny fits: planted spikes are rolled back and their data skipped, NaN never
reaches the optimizer, state round-trips, DDP ranks agree, and a killed run keeps its skip list."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.plugins.precision import MixedPrecision
from lit_llm.callbacks.spike_rollback import (
    REQUEST_FILE,
    LossSpikeEscalation,
    LossSpikeRollback,
    LossSpikeRollbackRequired,
    fit_with_rollbacks,
)

from lit_llm.cli import main
from lit_llm.data.datamodule import LitDataModule
from lit_llm.model import ModelConfig
from lit_llm.module import LitLLM, OptimizerConfig, ScheduleConfig
from tests.helpers import make_text_folder
from tests.test_training import TINY as TRAINING_TINY

ROOT = Path(__file__).resolve().parents[1]
TINY = [*TRAINING_TINY, "--trainer.val_check_interval", "100", "--trainer.limit_val_batches", "2"]
# Test thresholds: short window and warm-up for 30-step runs; clean checkpoints every 5 steps.
DETECTOR = {
    "warmup_steps": 8,
    "window": 8,
    "every_n_steps": 5,
    "clean_after_steps": 3,
    "extra_skip_batches": 1,
    "cooldown_steps": 5,
    "lr_factor": 0.5,
}
POISON = (68, 76)  # batches 17 and 18 at 4 samples per step on one device


class PoisonSamples(Callback):
    """A corrupted span of data: the labels of global sample indices [start, end) become random tokens."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        index = batch["sample_index"]
        bad = (index >= self.start) & (index < self.end)
        if bad.any():
            generator = torch.Generator().manual_seed(int(index[bad][0]))
            batch["labels"][bad] = torch.randint(0, 300, batch["labels"][bad].shape, generator=generator)


class RecordSamples(Callback):
    """Appends {pid, rank, step, loss, samples} per trained batch to `<folder>/samples-rank<r>.jsonl`."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        row = {
            "pid": os.getpid(),
            "rank": trainer.global_rank,
            "step": trainer.global_step,
            "loss": float(outputs["loss"]),
            "samples": batch["sample_index"].tolist(),
        }
        with open(Path(self.folder) / f"samples-rank{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


class NaNLossAt(LitLLM):
    """Returns a NaN loss once at each of the given optimizer steps."""

    def __init__(self, nan_steps: tuple[int, ...], **kwargs) -> None:
        super().__init__(**kwargs)
        self.nan_steps, self.fired = set(nan_steps), set()

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if self.global_step in self.nan_steps - self.fired:
            self.fired.add(self.global_step)
            loss = loss * float("nan")
        return loss


class WatchUpdates(Callback):
    """Checks the gradients each optimizer update saw, and that parameters survive the NaN steps unchanged."""

    def __init__(self, nan_steps) -> None:
        self.nan_steps, self.bad_updates, self.changed, self.checked = set(nan_steps), [], [], []

    def on_train_start(self, trainer, pl_module) -> None:
        def after_step(optimizer, args, kwargs):
            grads = [
                p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None
            ]
            if not all(torch.isfinite(g).all() for g in grads):
                self.bad_updates.append(trainer.global_step)

        trainer.optimizers[0].register_step_post_hook(after_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.before = [p.detach().clone() for p in pl_module.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step - 1
        if step in self.nan_steps and step not in self.checked:
            self.checked.append(step)
            if not all(torch.equal(a, b) for a, b in zip(self.before, pl_module.parameters())):
                self.changed.append(step)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Two torch threads on a loaded 2-core machine make these tiny fits 20x slower (threads wait on each other).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_text_folder(tmp_path_factory.mktemp("text"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def callbacks_yaml(run: Path, extra: list[dict], **detector) -> Path:
    spec = [
        {"class_path": "lit_llm.callbacks.LossSpikeRollback", "init_args": {**DETECTOR, **detector}},
        {"class_path": "tests.test_spike_rollback.RecordSamples", "init_args": {"folder": str(run)}},
        *extra,
    ]
    path = run / f"callbacks-{len(list(run.glob('callbacks-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": spec}}))
    return path


def poison(start: int, end: int) -> dict:
    return {
        "class_path": "tests.test_spike_rollback.PoisonSamples",
        "init_args": {"start": start, "end": end},
    }


def cli_fit(data: Path, run: Path, extra: list[dict], steps: int = 30, **detector) -> None:
    run.mkdir(parents=True, exist_ok=True)
    main(
        [
            "fit",
            *TINY,
            "--data.path",
            str(data),
            "--trainer.max_steps",
            str(steps),
            "--trainer.default_root_dir",
            str(run),
            "--config",
            str(callbacks_yaml(run, extra, **detector)),
        ]
    )


def final_loss(rows: list[dict], last: int = 5) -> float:
    by_step = {r["step"]: r["loss"] for r in rows}  # the latest record per step
    steps = sorted(by_step)[-last:]
    return sum(by_step[s] for s in steps) / len(steps)


def assert_never_trained_after_resume(rows: list[dict], skip: tuple[int, int], resumed_from: int) -> None:
    """Samples of batches trained after the rollback (a step counter reset to `resumed_from`) avoid `skip`."""
    reset = next(i for i in range(1, len(rows)) if rows[i]["step"] <= rows[i - 1]["step"])
    after = rows[reset:]
    assert after[0]["step"] == resumed_from + 1
    trained = {s for r in after for s in r["samples"]}
    assert not trained & set(range(*skip)), sorted(trained & set(range(*skip)))


@pytest.fixture(scope="module")
def clean_run(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("clean")
    cli_fit(data, run, [], grad_norm_z=6.0)
    return run


def test_no_false_positives_on_a_normal_run(clean_run):
    assert read_jsonl(clean_run / "spike_events.jsonl") == []
    rows = read_jsonl(clean_run / "samples-rank0.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 31))
    kept = sorted(p.name for p in (clean_run / "checkpoints" / "clean").glob("*.ckpt"))
    assert kept == [
        "step-0000020.ckpt",
        "step-0000025.ckpt",
        "step-0000030.ckpt",
    ]  # keep_last=2 clean + 1 pending


def test_planted_spike_is_rolled_back_and_its_data_skipped(data, clean_run, tmp_path):
    run = tmp_path / "run"
    cli_fit(data, run, [poison(*POISON)])
    events = read_jsonl(run / "spike_events.jsonl")
    assert [e["event"] for e in events] == ["spike", "resume"]
    spike, resume = events
    assert spike["step"] == 17 and spike["action"] == "rollback" and spike["loss_z"] > 6
    assert spike["checkpoint_step"] == 10 and spike["dropped_checkpoints"][0].endswith("step-0000015.ckpt")
    # From the step-10 data position (sample 40) to the spike's last sample + 1 extra batch of 4.
    assert spike["skip"] == [40, 76] and resume["skip"] == [40, 76] and resume["lr_factor"] == 0.5
    rows = read_jsonl(run / "samples-rank0.jsonl")
    assert_never_trained_after_resume(rows, (40, 76), resumed_from=10)
    assert max(r["step"] for r in rows) == 30
    clean = final_loss(read_jsonl(clean_run / "samples-rank0.jsonl"))
    assert abs(final_loss(rows) - clean) < 0.3, (final_loss(rows), clean)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["LitDataModule"]["skip_ranges"] == [[40, 76]]
    assert not (run / "checkpoints" / "clean" / REQUEST_FILE).exists()
    metrics = (next(run.glob("logs/version_*/metrics.csv"))).read_text().splitlines()[0]
    assert "spike/loss" in metrics and "spike/skipped_samples" in metrics


def tiny_fit_parts(
    data: Path, root: Path, callbacks: list, steps: int, module_cls=LitLLM, plugins=None, **module_kwargs
):
    datamodule = LitDataModule(str(data), seq_len=32, batch_size=4, verify_checksums=False)
    module = module_cls(
        arch=ModelConfig(n_layer=2, n_head=2, d_model=32, max_seq_len=64),
        vocab_size=datamodule.vocab_size,
        optimizer=OptimizerConfig(lr=0.01),
        schedule=ScheduleConfig(warmup_steps=3),
        **module_kwargs,
    )
    trainer = Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        default_root_dir=str(root),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=callbacks,
        plugins=plugins,
    )
    return trainer, module, datamodule


def test_nan_loss_never_reaches_the_optimizer(data, tmp_path):
    watch = WatchUpdates(nan_steps=(3, 12))
    callback = LossSpikeRollback(**DETECTOR)
    trainer, module, datamodule = tiny_fit_parts(
        data, tmp_path, [watch, callback], steps=16, module_cls=NaNLossAt, nan_steps=(3, 12)
    )
    assert fit_with_rollbacks(trainer, module, datamodule) == 1
    spikes = [e for e in read_jsonl(tmp_path / "spike_events.jsonl") if e["event"] == "spike"]
    # Step 3: no clean checkpoint yet, so the update is skipped; step 12: back to the step-5 checkpoint.
    assert [(e["step"], e["action"]) for e in spikes] == [(3, "skip_step"), (12, "rollback")]
    assert (
        all(e["reason"].startswith("non-finite loss") for e in spikes) and spikes[1]["checkpoint_step"] == 5
    )
    assert watch.checked == [3, 12] and watch.changed == [] and watch.bad_updates == []
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_fp16_grad_scaler_overflow_is_left_to_the_scaler(data, tmp_path):
    # fp16 autocast runs on CPU too: a huge initial scale overflows the first gradients (the scaler
    # skips those steps and halves its scale), which is no spike; a NaN loss still is.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24)
    watch, callback = WatchUpdates(nan_steps=(12,)), LossSpikeRollback(**DETECTOR)
    trainer, module, datamodule = tiny_fit_parts(
        data,
        tmp_path,
        [watch, callback],
        steps=16,
        module_cls=NaNLossAt,
        nan_steps=(12,),
        plugins=[MixedPrecision("16-mixed", "cpu", scaler)],
    )
    assert fit_with_rollbacks(trainer, module, datamodule) == 1
    assert scaler.get_scale() <= 2.0**19  # at least five overflows
    spike, resume = read_jsonl(tmp_path / "spike_events.jsonl")
    assert (spike["step"], spike["action"], spike["loss"], resume["step"]) == (12, "rollback", "nan", 5)
    assert max(callback.losses) < 7  # the detector sees the loss, not the scaled loss
    assert watch.changed == [] and watch.bad_updates == []


def test_escalation_stops_with_the_event_log(data, tmp_path):
    callback = LossSpikeRollback(**{**DETECTOR, "max_rollbacks": 1})
    trainer, module, datamodule = tiny_fit_parts(
        data, tmp_path, [callback], steps=8, module_cls=NaNLossAt, nan_steps=(2, 4)
    )
    with pytest.raises(LossSpikeEscalation, match="2 loss spikes within 1000 steps") as err:
        fit_with_rollbacks(trainer, module, datamodule)
    assert "spike_events.jsonl" in str(err.value)
    assert [e["event"] for e in read_jsonl(tmp_path / "spike_events.jsonl")] == ["spike", "escalate"]


def test_restart_path_applies_the_saved_request(data, tmp_path):
    recorder, options = RecordSamples(str(tmp_path)), {**DETECTOR, "recovery": "restart"}
    trainer, module, datamodule = tiny_fit_parts(
        data, tmp_path, [PoisonSamples(*POISON), recorder, LossSpikeRollback(**options)], steps=24
    )
    with pytest.raises(LossSpikeRollbackRequired, match="--ckpt_path") as err:
        trainer.fit(module, datamodule)
    assert err.value.skip == (40, 76) and (tmp_path / "checkpoints" / "clean" / REQUEST_FILE).exists()
    # A new process would build everything anew: so do we, and resume from the named checkpoint.
    trainer, module, datamodule = tiny_fit_parts(
        data, tmp_path, [PoisonSamples(*POISON), recorder, LossSpikeRollback(**options)], steps=24
    )
    trainer.fit(module, datamodule, ckpt_path=err.value.checkpoint)
    assert datamodule.skip_ranges == [(40, 76)]
    assert not (tmp_path / "checkpoints" / "clean" / REQUEST_FILE).exists()
    assert [e["event"] for e in read_jsonl(tmp_path / "spike_events.jsonl")] == ["spike", "resume"]
    assert_never_trained_after_resume(read_jsonl(tmp_path / "samples-rank0.jsonl"), (40, 76), resumed_from=10)


def test_state_dict_round_trip_and_merge(tmp_path):
    callback = LossSpikeRollback(window=4)
    for value in (3.0, 2.9, 2.8, 2.7, 2.6):
        callback.losses.append(value)
        callback.grad_norms.append(value / 2)
    callback.checkpoints = [
        {"path": "a.ckpt", "step": 5, "position": 20, "status": "clean"},
        {"path": "b.ckpt", "step": 10, "position": 40, "status": "pending"},
    ]
    callback.skip_ranges = [(40, 76)]
    callback.events = [{"id": "e1", "time": "2026-01-01T00:00:00", "event": "spike", "step": 17}]
    callback.cooldown = {"start": 10, "steps": 5, "factor": 0.5}
    state = callback.state_dict()
    torch.save(state, tmp_path / "state.pt")
    assert torch.load(tmp_path / "state.pt", weights_only=True) == state == json.loads(json.dumps(state))
    restored = LossSpikeRollback(window=4)
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert restored.state_dict() == state and list(restored.losses) == [2.9, 2.8, 2.7, 2.6]

    # Loading an older checkpoint (a rollback) merges: memory keeps its newer knowledge.
    older = LossSpikeRollback(window=4)
    older.losses.extend([5.0, 4.0])
    older.checkpoints = [{"path": "a.ckpt", "step": 5, "position": 20, "status": "pending"}]
    older.skip_ranges = [(100, 120)]
    older.events = [{"id": "e0", "time": "2025-12-31T00:00:00", "event": "spike", "step": 3}]
    restored.load_state_dict(older.state_dict())
    assert list(restored.losses) == [5.0, 4.0]  # the detector statistics of the loaded moment
    assert [c["status"] for c in restored.checkpoints] == ["clean", "pending"]
    assert restored.skip_ranges == [(40, 76), (100, 120)]
    assert [e["id"] for e in restored.events] == ["e0", "e1"]


def test_example_config_parses(data, capsys):
    config = ROOT / "configs" / "experiments" / "tiny_cpu_spike.yaml"
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(config), "--data.path", str(data), "--print_config"])
    assert not exc.value.code
    printed = yaml.safe_load(capsys.readouterr().out)
    (callback,) = [
        c for c in printed["trainer"]["callbacks"] if c["class_path"].endswith("LossSpikeRollback")
    ]
    assert callback["init_args"]["every_n_steps"] == 50 and callback["init_args"]["recovery"] == "refit"


def test_detector_thresholds():
    callback = LossSpikeRollback(warmup_steps=10, window=32)
    noise = [3.0 + 0.02 * math.sin(i) for i in range(32)]
    callback.losses.extend(noise)
    assert callback.is_spike(5, float("nan"), 1.0).startswith("non-finite loss")
    assert callback.is_spike(5, 3.0, float("inf")).startswith("non-finite gradient norm")
    assert callback.is_spike(5, 9.0, 1.0) is None  # warm-up: only non-finite values count
    assert callback.is_spike(50, 3.05, 1.0) is None  # within the noise
    assert callback.is_spike(50, 3.4, 1.0) is None  # many sigma, but under the 20% rise
    assert "sigma" in callback.is_spike(50, 3.7, 1.0)
    callback.grad_norm_z = 6.0
    callback.grad_norms.extend([1.0 + 0.05 * math.cos(i) for i in range(32)])
    assert callback.is_spike(50, 3.0, 2.5).startswith("grad_norm")
    with pytest.raises(ValueError, match="lr_factor"):
        LossSpikeRollback(lr_factor=0.0)


def run_cli(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lit_llm.cli", "fit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


STRATEGIES = {
    "ddp": ["--trainer.strategy", "ddp"],
    "fsdp2": ["--trainer.strategy.class_path", "lightning.pytorch.strategies.ModelParallelStrategy"],
}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ranks_roll_back_together(data, tmp_path, strategy):
    # Two ranks x 4 samples: step 17 holds samples 136..143; the step-10 checkpoint is at sample 80.
    extra = [poison(137, 144)]
    result = run_cli(
        [
            *TINY,
            "--data.path",
            str(data),
            "--trainer.max_steps",
            "24",
            *STRATEGIES[strategy],
            "--trainer.devices",
            "2",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--config",
            str(callbacks_yaml(tmp_path, extra)),
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    spike, resume = read_jsonl(tmp_path / "spike_events.jsonl")
    assert spike["step"] == 17 and spike["skip"] == [80, 152] and resume["event"] == "resume"
    for rank in (0, 1):
        rows = read_jsonl(tmp_path / f"samples-rank{rank}.jsonl")
        assert_never_trained_after_resume(rows, (80, 152), resumed_from=10)
        assert max(r["step"] for r in rows) == 24 and len({r["pid"] for r in rows}) == 1


@pytest.mark.slow
def test_killed_after_rollback_resumes_with_the_skip_list(data, tmp_path):
    checkpoints = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"dirpath": str(tmp_path / "checkpoints"), "every_n_train_steps": 4, "save_last": True},
    }
    common = [
        *TINY,
        "--data.path",
        str(data),
        "--trainer.max_steps",
        "30",
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
    kill = {"class_path": "tests.killer.KillAtStep", "init_args": {"step": 22}}
    killed = run_cli(
        [*common, "--config", str(callbacks_yaml(tmp_path, [poison(*POISON), checkpoints, kill]))]
    )
    assert killed.returncode == -9, killed.stderr[-3000:]  # SIGKILL at step 22, after the rollback to step 10
    # The resume runs in this process (one interpreter start less); a new process it is all the same.
    main(
        [
            "fit",
            *common,
            "--config",
            str(callbacks_yaml(tmp_path, [poison(*POISON), checkpoints])),
            "--ckpt_path",
            "last",
        ]
    )
    rows = read_jsonl(tmp_path / "samples-rank0.jsonl")
    pids = list(dict.fromkeys(r["pid"] for r in rows))
    after_kill = [r for r in rows if r["pid"] == pids[1]]
    assert after_kill[0]["step"] == 21 and after_kill[-1]["step"] == 30  # resumed from last.ckpt at step 20
    assert not {s for r in after_kill for s in r["samples"]} & set(range(40, 76))
    assert [e["event"] for e in read_jsonl(tmp_path / "spike_events.jsonl")] == ["spike", "resume"]
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]
    assert state["LossSpikeRollback"]["skip_ranges"] == [[40, 76]]
