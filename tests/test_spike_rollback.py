"""LossSpikeRollback on real tiny fits: a plain `Trainer` rolls back inside `fit` and reaches max_steps,
with loader workers, accumulation, max_time, the fp16 scaler, `lit-llm fit` defaults, a subclass,
two-process DDP and FSDP2, and a SIGKILL after a rollback followed by `--ckpt_path last`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback, LightningDataModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.precision import MixedPrecision
from lit_llm.callbacks.spike_rollback import LossSpikeEscalation, LossSpikeRollback

from lit_llm.cli import main
from lit_llm.data.datamodule import LitDataModule
from lit_llm.errors import UserError
from lit_llm.model import ModelConfig
from lit_llm.module import LitLLM, OptimizerConfig, ScheduleConfig
from lit_llm.plot import plot_loss_curve, read_rollbacks
from tests.helpers import TINY as TRAINING_TINY

ROOT = Path(__file__).resolve().parents[1]
TINY = [*TRAINING_TINY, "--trainer.val_check_interval", "100", "--trainer.limit_val_batches", "2"]
# Short runs: rollback checkpoints every 5 steps, clean after 3 more, one extra batch skipped.
FAST = {"every_n_steps": 5, "clean_after_steps": 3, "extra_skip_batches": 1, "cooldown_steps": 5}


class BlowUp(Callback):
    """A learning-rate blow-up: the LR of optimizer step `step` is multiplied by `factor`, once."""

    def __init__(self, step: int, factor: float = 100.0) -> None:
        self.step, self.factor, self.fired = step, factor, False

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step == self.step and not self.fired:
            self.fired = True
            for group in optimizer.param_groups:  # the scheduler sets the next step's LR afresh
                group["lr"] *= self.factor


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
    """Records optimizer updates that saw non-finite gradients, and NaN steps whose update changed parameters."""

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

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.before = [p.detach().clone() for p in pl_module.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step - 1
        if step in self.nan_steps and step not in self.checked:
            self.checked.append(step)
            if not all(torch.isfinite(p).all() for p in pl_module.parameters()):
                self.changed.append(step)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Two torch threads on a loaded 2-core machine make these tiny fits 20x slower (threads wait on each other).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def fit_parts(data: Path, root: Path, callbacks: list, steps: int, module_cls=LitLLM, workers=0, **kwargs):
    """A plain Trainer, LitLLM and LitDataModule, as a user's own script builds them."""
    seed_everything(7)
    module_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k == "nan_steps"}
    datamodule = LitDataModule(
        str(data), seq_len=32, batch_size=4, verify_checksums=False, num_workers=workers
    )
    module = module_cls(
        arch=ModelConfig(n_layer=2, n_head=2, d_model=32, max_seq_len=64),
        vocab_size=datamodule.vocab_size,
        optimizer=OptimizerConfig(lr=0.01),
        schedule=ScheduleConfig(warmup_steps=3),
        **module_kwargs,
    )
    options = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0)
    options.update(enable_model_summary=False, **kwargs)
    trainer = Trainer(
        max_steps=steps, accelerator="cpu", default_root_dir=str(root), callbacks=callbacks, **options
    )
    return trainer, module, datamodule


def final_loss(rows: list[dict], last: int = 5) -> float:
    return sum(r["loss"] for r in rows[-last:]) / last


def assert_skip_honoured(rows: list[dict], spike: dict) -> None:
    """No batch trained after the rollback (the steps after the spike's) holds a skipped sample."""
    after = [r for r in rows if r["step"] > spike["step"] + 1]
    assert after, "nothing trained after the rollback"
    trained = {s for r in after for s in r["samples"]}
    assert not trained & set(range(*spike["skip"])), sorted(trained & set(range(*spike["skip"])))


@pytest.fixture(scope="module")
def clean_rows(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    callbacks = [RecordSamples(str(root)), LossSpikeRollback(**FAST)]
    trainer, module, datamodule = fit_parts(data, root, callbacks, steps=40)
    trainer.fit(module, datamodule)
    assert not (root / "spike_events.jsonl").exists() and trainer.global_step == 40  # no false positive
    return read_jsonl(root / "samples-rank0.jsonl")


@pytest.mark.parametrize(
    "options",
    [{}, {"workers": 2, "accumulate_grad_batches": 2, "max_time": {"minutes": 5}}],
    ids=["plain", "workers2-accumulate2-max_time"],
)
def test_plain_trainer_rolls_back_inside_fit_and_reaches_max_steps(data, clean_rows, tmp_path, options):
    callback = LossSpikeRollback(**FAST)
    callbacks = [BlowUp(20), RecordSamples(str(tmp_path)), callback]
    trainer, module, datamodule = fit_parts(data, tmp_path, callbacks, steps=40, **options)
    trainer.fit(module, datamodule)  # no outer driver: the rollback happens inside this call
    spike, *others = read_jsonl(tmp_path / "spike_events.jsonl")
    assert others == [] and spike["action"] == "rollback" and spike["step"] == 21, spike
    assert spike["checkpoint_step"] == 15 and spike["discarded_steps"] == 7
    steps_per_update = options.get("accumulate_grad_batches", 1)
    # From the step-15 data position to the spike's last sample + 1 extra batch of 4 x accumulation.
    assert spike["skip"] == [60 * steps_per_update, (88 + 4) * steps_per_update]
    assert trainer.global_step == 47 and trainer.max_steps == 47
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 40  # exactly max_steps updates
    rows = read_jsonl(tmp_path / "samples-rank0.jsonl")
    assert_skip_honoured(rows, spike)
    assert datamodule.skip_ranges == [tuple(spike["skip"])]
    if steps_per_update == 1:
        assert abs(final_loss(rows) - final_loss(clean_rows)) < 0.15 * final_loss(clean_rows)
    kept = sorted(p.name for p in (tmp_path / "checkpoints" / "clean").glob("*.ckpt"))
    assert kept == [
        "step-0000035.ckpt",
        "step-0000040.ckpt",
        "step-0000045.ckpt",
    ]  # keep_last=2 clean + 1 pending


def test_resume_past_the_configured_max_steps_still_gets_every_update(data, tmp_path):
    # Step 44 exists only because a rollback lengthened the 40-step run by 7 discarded steps.
    periodic = ModelCheckpoint(dirpath=str(tmp_path / "periodic"), every_n_train_steps=22, save_top_k=-1)
    callbacks = [BlowUp(20), LossSpikeRollback(**FAST), periodic]
    trainer, module, datamodule = fit_parts(data, tmp_path, callbacks, steps=40, enable_checkpointing=True)
    trainer.fit(module, datamodule)
    step_44 = next((tmp_path / "periodic").glob("*step=44.ckpt"))
    trainer, module, datamodule = fit_parts(data, tmp_path, [LossSpikeRollback(**FAST)], steps=40)
    trainer.fit(module, datamodule, ckpt_path=str(step_44))
    assert trainer.global_step == 47 and trainer.lr_scheduler_configs[0].scheduler.last_epoch == 40


class CrashAt(Callback):
    """Raises when optimizer step `step` starts: a crash."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"crash at step {self.step}")


def test_last_checkpoint_is_rewritten_at_the_rollback(data, tmp_path):
    # ModelCheckpoint's last.ckpt from step 20 holds the discarded timeline; a crash before its next
    # save (step 24) must not resume there without the skip.
    periodic = ModelCheckpoint(dirpath=str(tmp_path / "periodic"), every_n_train_steps=4, save_last=True)
    callbacks = [BlowUp(20), LossSpikeRollback(**FAST), CrashAt(23), periodic]
    trainer, module, datamodule = fit_parts(data, tmp_path, callbacks, steps=40, enable_checkpointing=True)
    with pytest.raises(RuntimeError, match="crash at step 23"):
        trainer.fit(module, datamodule)
    last = torch.load(tmp_path / "periodic" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 22 and last["LitDataModule"]["skip_ranges"] == [[60, 92]]
    assert last["callbacks"]["LossSpikeRollback"]["discarded_steps"] == 7


def test_cli_defaults_catch_a_blow_up_at_the_end_of_warm_up(data, tmp_path):
    # Default detector and checkpoint cadence: the only clean state is the step-0 baseline.
    run = tmp_path / "run"
    run.mkdir()
    callbacks = [
        {"class_path": "lit_llm.callbacks.LossSpikeRollback"},
        {"class_path": "tests.test_spike_rollback.BlowUp", "init_args": {"step": 10, "factor": 300.0}},
        {"class_path": "tests.test_spike_rollback.RecordSamples", "init_args": {"folder": str(run)}},
    ]
    config = tmp_path / "callbacks.yaml"
    config.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    args = ["--data.path", str(data), "--trainer.max_steps", "30", "--model.schedule.warmup_steps", "10"]
    main(["fit", *TINY, *args, "--trainer.default_root_dir", str(run), "--config", str(config)])
    (spike,) = read_jsonl(run / "spike_events.jsonl")
    assert spike["action"] == "rollback" and spike["checkpoint_step"] == 0 and spike["step"] == 11, spike
    assert "median" in spike["reason"]  # the gross blow-up test: no statistics needed
    rows = read_jsonl(run / "samples-rank0.jsonl")
    assert_skip_honoured(rows, spike)
    assert rows[-1]["step"] == 30 + spike["discarded_steps"]
    assert rows[-1]["loss"] < rows[spike["step"]]["loss"] / 2
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["LitDataModule"]["skip_ranges"] == [spike["skip"]]
    assert last["lr_schedulers"][0]["last_epoch"] == 30
    assert read_rollbacks(run) == [spike] and plot_loss_curve(run).exists()
    header = next(run.glob("logs/version_*/metrics.csv")).read_text().splitlines()[0]
    assert "spike/loss" in header and "spike/skipped_samples" in header


def test_nan_loss_never_reaches_the_optimizer(data, tmp_path):
    watch = WatchUpdates(nan_steps=(3, 12))
    callback = LossSpikeRollback(**FAST)
    trainer, module, datamodule = fit_parts(
        data, tmp_path, [watch, callback], steps=16, module_cls=NaNLossAt, nan_steps=(3, 12)
    )
    trainer.fit(module, datamodule)
    spikes = read_jsonl(tmp_path / "spike_events.jsonl")
    # Step 3: back to the step-0 baseline; step 12: back to the step-5 checkpoint.
    assert [(e["step"], e["action"], e["checkpoint_step"]) for e in spikes] == [
        (3, "rollback", 0),
        (12, "rollback", 5),
    ]
    assert all(e["reason"].startswith("non-finite loss") for e in spikes)
    assert watch.checked == [3, 12] and watch.changed == [] and watch.bad_updates == []
    assert all(torch.isfinite(p).all() for p in module.parameters())


class RecordScale(Callback):
    """The GradScaler's scale at the start and at the end of every step."""

    def __init__(self, scaler) -> None:
        self.scaler, self.start, self.end = scaler, {}, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.start[trainer.global_step] = self.scaler.get_scale()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end[trainer.global_step - 1] = self.scaler.get_scale()


def test_fp16_grad_scaler_state_rolls_back_and_overflow_is_no_spike(data, tmp_path):
    # fp16 autocast runs on CPU too: a huge initial scale overflows the first gradients (the scaler
    # skips those steps and halves its scale), which is no spike; a NaN loss is, and the scaler
    # (which halved its scale on it) comes back with the checkpoint.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24)
    watch, scale, callback = WatchUpdates(nan_steps=(12,)), RecordScale(scaler), LossSpikeRollback(**FAST)
    plugins = [MixedPrecision("16-mixed", "cpu", scaler)]
    trainer, module, datamodule = fit_parts(
        data,
        tmp_path,
        [watch, scale, callback],
        steps=16,
        module_cls=NaNLossAt,
        nan_steps=(12,),
        plugins=plugins,
    )
    trainer.fit(module, datamodule)
    (spike,) = read_jsonl(tmp_path / "spike_events.jsonl")
    assert (spike["step"], spike["action"], spike["loss"], spike["checkpoint_step"]) == (
        12,
        "rollback",
        "nan",
        5,
    )
    assert scale.start[0] == 2.0**24 and scale.start[5] <= 2.0**20  # at least four overflows, no spike
    assert scale.end[12] == scale.start[12] / 2 and scale.start[13] == scale.start[5]  # restored
    assert max(callback.detector.losses) < 7  # the detector sees the loss, not the scaled loss
    assert watch.changed == [] and watch.bad_updates == []


def test_escalation_stops_with_the_event_log(data, tmp_path):
    callback = LossSpikeRollback(**{**FAST, "max_rollbacks": 1})
    trainer, module, datamodule = fit_parts(
        data, tmp_path, [callback], steps=8, module_cls=NaNLossAt, nan_steps=(2, 4)
    )
    with pytest.raises(LossSpikeEscalation, match="2 loss spikes within 1000 steps") as err:
        trainer.fit(module, datamodule)
    assert "spike_events.jsonl" in str(err.value)
    assert [e.get("action") for e in read_jsonl(tmp_path / "spike_events.jsonl")] == ["rollback", "stop"]


class OldestCleanRollback(LossSpikeRollback):
    """A user's subclass: a loss above 2x the step before is a spike; always go back to the oldest checkpoint."""

    def is_spike(self, step, loss, grad_norm):
        previous, self.previous = getattr(self, "previous", loss), loss
        return f"loss {loss:.2f} > 2x the step before" if loss > 2 * previous else None

    def choose_checkpoint(self, spike_step):
        clean = [c for c in self.checkpoints.clean() if c.step <= spike_step]
        return clean[0] if clean else None


def test_a_subclass_in_a_plain_trainer(data, tmp_path):
    callback = OldestCleanRollback(**{**FAST, "keep_last": 3})
    trainer, module, datamodule = fit_parts(data, tmp_path, [BlowUp(20), callback], steps=40)
    trainer.fit(module, datamodule)
    (spike,) = read_jsonl(tmp_path / "spike_events.jsonl")
    assert (
        spike["reason"].endswith("> 2x the step before") and spike["checkpoint_step"] == 5
    )  # oldest of 3 kept
    assert trainer.global_step == 40 + spike["discarded_steps"]


def test_state_dict_round_trip_replaces(tmp_path):
    callback = LossSpikeRollback(**FAST)
    callback.detector.observe(3.0, 1.5)
    callback.checkpoints.load_state_dict([{"path": "a.ckpt", "step": 5, "position": 20, "status": "clean"}])
    callback.event_log.events = [{"id": "e1", "time": "2026-01-01T00:00:00", "event": "spike", "step": 17}]
    callback.cooldown.start(18, 5, 0.5)
    callback.discarded_steps = 7
    state = callback.state_dict()
    torch.save(state, tmp_path / "state.pt")
    assert torch.load(tmp_path / "state.pt", weights_only=True) == state == json.loads(json.dumps(state))
    restored = LossSpikeRollback(**FAST)
    restored.detector.observe(9.0, 9.0)
    restored.event_log.events = [{"id": "other"}]
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert restored.state_dict() == state and restored.event_log.events[0]["id"] == "e1"
    restored.cooldown.step = 20
    assert restored.cooldown.factor() == pytest.approx(0.7)  # 2 of 5 cool-down steps done: 0.5 -> 1


def test_a_datamodule_without_the_rollback_api_is_refused_at_setup(data, tmp_path):
    class BareData(LightningDataModule):
        def train_dataloader(self):
            return [{}]

    trainer, module, _ = fit_parts(data, tmp_path, [LossSpikeRollback()], steps=2)
    with pytest.raises(UserError, match="missing: position, batch_size, skip_positions, restart_stream"):
        trainer.fit(module, BareData())


def test_example_config_adds_the_callback_to_an_experiment(data, capsys):
    experiment = ROOT / "configs" / "experiments" / "tiny_cpu.yaml"
    config = ROOT / "configs" / "callbacks" / "spike_rollback.yaml"
    args = ["--config", str(experiment), "--config", str(config), "--data.path", str(data), "--print_config"]
    with pytest.raises(SystemExit) as exc:
        main(["fit", *args])
    assert not exc.value.code
    printed = yaml.safe_load(capsys.readouterr().out)
    (callback,) = [
        c for c in printed["trainer"]["callbacks"] if c["class_path"].endswith("LossSpikeRollback")
    ]
    assert callback["init_args"]["every_n_steps"] == 50 and callback["init_args"]["detector"]["window"] == 64


def run_cli(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lit_llm.cli", "fit", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def callbacks_yaml(run: Path, extra: list[dict]) -> Path:
    spec = [
        {"class_path": "lit_llm.callbacks.LossSpikeRollback", "init_args": FAST},
        {"class_path": "tests.test_spike_rollback.RecordSamples", "init_args": {"folder": str(run)}},
        *extra,
    ]
    path = run / f"callbacks-{len(list(run.glob('callbacks-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": spec}}))
    return path


BLOW_UP_AT_17 = {
    "class_path": "tests.test_spike_rollback.BlowUp",
    "init_args": {"step": 17, "factor": 1000.0},
}
MODEL_PARALLEL = ["--trainer.strategy.class_path", "lightning.pytorch.strategies.ModelParallelStrategy"]
STRATEGIES = {  # arguments, samples per step (micro-batch 4 x data-parallel groups); TP 2 runs FSDP2 too
    "ddp": (["--trainer.strategy", "ddp"], 8),
    "tp2": ([*MODEL_PARALLEL, "--trainer.strategy.init_args.tensor_parallel_size", "2"], 4),
}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ranks_roll_back_together(data, tmp_path, strategy):
    steps = ["--data.path", str(data), "--trainer.max_steps", "24", "--trainer.devices", "2"]
    config = callbacks_yaml(tmp_path, [BLOW_UP_AT_17])
    result = run_cli(
        [
            *TINY,
            *steps,
            *STRATEGIES[strategy][0],
            "--trainer.default_root_dir",
            str(tmp_path),
            "--config",
            str(config),
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (spike,) = read_jsonl(tmp_path / "spike_events.jsonl")
    # The step-15 checkpoint is at sample 15 x samples per step; skip to the spike + 1 batch (20 steps).
    per_step = STRATEGIES[strategy][1]
    assert spike["step"] == 18 and spike["checkpoint_step"] == 15, spike
    assert spike["skip"] == [15 * per_step, 20 * per_step], spike
    for rank in (0, 1):
        rows = read_jsonl(tmp_path / f"samples-rank{rank}.jsonl")
        assert_skip_honoured(rows, spike)
        assert rows[-1]["step"] == 24 + spike["discarded_steps"] and len({r["pid"] for r in rows}) == 1


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
    kill = {"class_path": "tests.killer.KillAtStep", "init_args": {"step": 26}}
    killed = run_cli([*common, "--config", str(callbacks_yaml(tmp_path, [BLOW_UP_AT_17, checkpoints, kill]))])
    assert killed.returncode == -9, killed.stderr[-3000:]  # SIGKILL at step 26, after the rollback at step 18
    (spike,) = read_jsonl(tmp_path / "spike_events.jsonl")
    # The resume runs in this process (one interpreter start less); a new process it is all the same.
    main(["fit", *common, "--config", str(callbacks_yaml(tmp_path, [checkpoints])), "--ckpt_path", "last"])
    rows = read_jsonl(tmp_path / "samples-rank0.jsonl")
    pids = list(dict.fromkeys(r["pid"] for r in rows))
    after_kill = [r for r in rows if r["pid"] == pids[1]]
    # Resumed from last.ckpt at step 24; the run still ends after 30 updates (30 + discarded steps taken).
    assert after_kill[0]["step"] == 25 and after_kill[-1]["step"] == 30 + spike["discarded_steps"]
    assert not {s for r in after_kill for s in r["samples"]} & set(range(*spike["skip"]))
    assert [e["action"] for e in read_jsonl(tmp_path / "spike_events.jsonl")] == ["rollback"]
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["LitDataModule"]["skip_ranges"] == [spike["skip"]]
    updates = state["global_step"] - spike["discarded_steps"]  # last.ckpt is from the last multiple of 4
    assert state["lr_schedulers"][0]["last_epoch"] == updates
    assert state["callbacks"]["LossSpikeRollback"]["discarded_steps"] == spike["discarded_steps"]
