"""Real Lightning fits through `lit-llm fit`: metrics, exact resume after SIGKILL, validate, bad inputs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lit_llm.cli import main
from lit_llm.data.datamodule import LitDataModule
from lit_llm.module import LitLLM, ScheduleConfig, lr_factor
from lit_llm.optim import OptimizerConfig, adamw_groups, trainable_parameters
from lit_llm.plot import read_metrics
from tests.helpers import TINY, train_losses

ROOT = Path(__file__).resolve().parents[1]


def test_fit_logs_loss_and_validation_metrics(data, tmp_path):
    run = tmp_path / "run"
    throughput = tmp_path / "throughput.yaml"
    callback = {
        "class_path": "lit_llm.callbacks.TokenThroughput",
        "init_args": {"peak_flops": 6.7e10, "window_size": 5},
    }
    throughput.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))
    main(
        [
            "fit",
            *TINY,
            "--config",
            str(throughput),
            "--data.path",
            str(data),
            "--trainer.max_steps",
            "30",
            "--trainer.val_check_interval",
            "15",
            "--trainer.default_root_dir",
            str(run),
        ]
    )
    rows = read_metrics(run)
    assert {"step", "train/loss", "val/loss", "val/bpb", "val/ppl", "train/grad_norm", "train/lr"} <= set(
        rows[0]
    )
    losses = [float(r["train/loss"]) for r in rows if r["train/loss"]]
    assert losses[-1] < losses[0] - 0.5
    bpb = [float(r["val/bpb"]) for r in rows if r.get("val/bpb")]
    assert len(bpb) == 2 and 0 < bpb[-1] < bpb[0]
    assert (run / "checkpoints" / "last.ckpt").exists()
    mfu = [float(r["train/device/mfu"]) for r in rows if r.get("train/device/mfu")]
    assert mfu and all(0 < m < 1 for m in mfu)
    speeds = [
        (r["train/tokens_per_sec"], r["train/device/tokens_per_sec"])
        for r in rows
        if r.get("train/tokens_per_sec")
    ]
    assert speeds and all(float(world) == float(device) > 0 for world, device in speeds)  # one process
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 30 and ckpt["lit_llm"]["tokens_seen"] == 30 * 4 * 32
    datamodule_state = ckpt["LitDataModule"]
    assert datamodule_state["position"] == 30 * 4 and datamodule_state["sampling"] == "epoch"
    dm = LitDataModule(str(data), seq_len=32, batch_size=4)
    dm.setup("validate")
    (source,) = dm.source_names
    logged = [float(r[f"epoch/{source}"]) for r in rows if r.get(f"epoch/{source}")]
    assert logged[-1] == pytest.approx(dm.source_epochs(30 * 4)[source])  # the epochs covered so far


def write_resume_config(path: Path, kill_step: int | None) -> Path:
    callbacks = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {
                "dirpath": str(path.parent / "checkpoints"),
                "every_n_train_steps": 4,
                "save_last": True,
            },
        }
    ]
    if kill_step is not None:
        callbacks.append({"class_path": "tests.killer.KillAtStep", "init_args": {"step": kill_step}})
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return path


def run_fit(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "lit_llm.cli", "fit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "workers", [2]
)  # loader workers: the harder case (in-process resumes are tested elsewhere)
def test_resume_after_sigkill_is_bit_exact(data, tmp_path, workers):
    # Validation every 4 steps: the step-8 checkpoint is written at a validation step, which the
    # resumed run does not repeat; dropout on, so any RNG drift would change the losses.
    common = [
        *TINY,
        "--data.path",
        str(data),
        "--trainer.max_steps",
        "14",
        "--trainer.val_check_interval",
        "4",
        "--model.arch.dropout",
        "0.1",
        "--data.num_workers",
        str(workers),
    ]
    (tmp_path / "full").mkdir()
    (tmp_path / "killed").mkdir()
    full = run_fit(
        [
            *common,
            "--config",
            str(write_resume_config(tmp_path / "full" / "cb.yaml", None)),
            "--trainer.default_root_dir",
            str(tmp_path / "full"),
        ]
    )
    assert full.returncode == 0, full.stderr[-3000:]
    killed_args = [*common, "--trainer.default_root_dir", str(tmp_path / "killed")]
    killed = run_fit(
        [*killed_args, "--config", str(write_resume_config(tmp_path / "killed" / "cb.yaml", 10))]
    )
    assert killed.returncode == -9  # SIGKILL at the start of step 10, after the step-8 checkpoint
    resumed = run_fit(
        [
            *killed_args,
            "--config",
            str(write_resume_config(tmp_path / "killed" / "cb2.yaml", None)),
            "--ckpt_path",
            "last",
        ]
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = train_losses(tmp_path / "full"), train_losses(tmp_path / "killed")
    assert max(got) == max(expected) == 13
    assert all(got[s] == expected[s] for s in range(8, 14)), (expected, got)  # bit-for-bit as text


def test_validate_command_reports_metrics(data, tmp_path):
    run = tmp_path / "run"
    main(
        [
            "fit",
            *TINY,
            "--data.path",
            str(data),
            "--trainer.max_steps",
            "4",
            "--trainer.default_root_dir",
            str(run),
        ]
    )
    main(
        [
            "validate",
            *TINY,
            "--data.path",
            str(data),
            "--trainer.default_root_dir",
            str(tmp_path / "val"),
            "--ckpt_path",
            str(run / "checkpoints" / "last.ckpt"),
        ]
    )
    # The fit validated its final weights (FinalCheckpoint) and saved them: validate must agree exactly.
    in_fit = [float(r["val/loss"]) for r in read_metrics(run) if r.get("val/loss")]
    validated = [float(r["val/loss"]) for r in read_metrics(tmp_path / "val") if r.get("val/loss")]
    assert len(in_fit) == 1 and validated == [pytest.approx(in_fit[0], abs=1e-6)]


def test_checkpoint_from_another_model_config_is_refused(data, tmp_path, capsys):
    run = tmp_path / "run"
    main(
        [
            "fit",
            *TINY,
            "--data.path",
            str(data),
            "--trainer.max_steps",
            "2",
            "--trainer.default_root_dir",
            str(run),
        ]
    )
    with pytest.raises(SystemExit):
        main(
            [
                "fit",
                *TINY,
                "--model.arch.n_kv_head",
                "1",
                "--data.path",
                str(data),
                "--trainer.max_steps",
                "4",
                "--trainer.default_root_dir",
                str(run),
                "--ckpt_path",
                str(run / "checkpoints" / "last.ckpt"),
            ]
        )
    assert "another model config" in capsys.readouterr().err


def test_bad_inputs_fail_before_training_with_one_line(data, tmp_path, capsys):
    for extra, message in [
        (["--data.path", str(tmp_path / "missing")], "data folder not found"),
        (["--data.path", str(data), "--data.seq_len", "128"], "exceeds model.max_seq_len"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(
                [
                    "fit",
                    *TINY,
                    *extra,
                    "--trainer.max_steps",
                    "2",
                    "--trainer.default_root_dir",
                    str(tmp_path),
                ]
            )
        assert exc.value.code == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) >= 1 and message in err[-1]


@pytest.mark.parametrize(
    "typo, hint",
    [
        (["--model.arch.n_layers", "3"], "--model.arch.n_layer"),
        (["--trainer.max_step", "3"], "--trainer.max_steps"),
    ],
)
def test_config_typo_is_one_line_with_the_closest_option(data, typo, hint, capsys):
    # No abbreviations either: --trainer.max_step is a typo, not max_steps.
    with pytest.raises(SystemExit) as exc:
        main(["fit", *TINY, "--data.path", str(data), *typo])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 1 and len(err) == 1 and f"did you mean {hint}?" in err[0] and typo[0] in err[0]
    with pytest.raises(SystemExit) as exc:
        main(["data", "inspect", str(data), "--num_doc", "1"])
    assert exc.value.code == 1 and "did you mean --num_docs?" in capsys.readouterr().err


def test_lr_schedules():
    cos = ScheduleConfig(kind="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, 100, cos) == pytest.approx(0.1) and lr_factor(9, 100, cos) == pytest.approx(1.0)
    assert lr_factor(100, 100, cos) == pytest.approx(0.1) and 0.5 < lr_factor(55, 100, cos) < 0.6
    wsd = ScheduleConfig(kind="wsd", warmup_steps=10, decay_fraction=0.2, min_lr_ratio=0.0)
    assert lr_factor(50, 100, wsd) == 1.0 and lr_factor(90, 100, wsd) == pytest.approx(0.5)


def test_lr_schedule_on_the_time_clock_follows_the_further_of_steps_and_time():
    wsd = ScheduleConfig(kind="wsd", warmup_steps=10, decay_fraction=0.4, min_lr_ratio=0.0, clock="time")
    assert lr_factor(5, 100, wsd, time_fraction=0.9) == pytest.approx(0.6)  # warm-up stays in steps
    assert lr_factor(20, 100, wsd, time_fraction=0.8) == pytest.approx(0.5)  # time is further on
    assert lr_factor(80, 100, wsd, time_fraction=0.1) == pytest.approx(lr_factor(80, 100, wsd))  # steps are
    assert (
        lr_factor(20, -1, wsd, time_fraction=0.5) == 1.0 and lr_factor(20, -1, wsd, time_fraction=1.2) == 0.0
    )
    cos = ScheduleConfig(kind="cosine", warmup_steps=0, min_lr_ratio=0.1, clock="time")
    assert lr_factor(1, -1, cos, time_fraction=0.5) == pytest.approx(0.55)


def test_a_run_bounded_by_time_ends_its_decay_as_the_time_runs_out(data, tmp_path, capsys):
    """clock time: a run with far more steps allowed than 4 s holds stops on max_time with its LR decayed."""
    run = tmp_path / "run"
    clock = ["--model.schedule.kind", "wsd", "--model.schedule.decay_fraction", "0.5"]
    clock += ["--model.schedule.min_lr_ratio", "0", "--model.schedule.clock", "time"]
    bound = ["--trainer.max_steps", "100000", "--trainer.val_check_interval", "100000"]
    main(["fit", *TINY, "--data.path", str(data), "--trainer.default_root_dir", str(run), *clock, *bound,
          "--trainer.max_time", "00:00:00:04", "--trainer.enable_checkpointing", "false"])  # fmt: skip
    lrs = [float(r["train/lr"]) for r in read_metrics(run) if r.get("train/lr")]
    assert 20 < len(lrs) < 100000 and max(lrs) == pytest.approx(0.01)
    after_warmup = lrs[3:]
    assert all(b <= a + 1e-12 for a, b in zip(after_warmup, after_warmup[1:]))  # decays, never rises
    assert after_warmup[len(after_warmup) // 4] == pytest.approx(0.01) and lrs[-1] < 0.001
    assert any(r.get("val/bpb") for r in read_metrics(run))  # the time stop still validates
    with pytest.raises(SystemExit):
        main(
            [
                "fit",
                *TINY,
                "--data.path",
                str(data),
                "--trainer.default_root_dir",
                str(tmp_path / "r2"),
                *clock,
            ]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(
        "model.schedule.clock time needs trainer.max_time (the wall-clock budget the schedule spans)"
    )


def test_weight_decay_groups_exclude_norms_and_embeddings():
    module = LitLLM(vocab_size=100)
    decay, no_decay = adamw_groups(module.model, trainable_parameters(module.model), OptimizerConfig())
    decay_ids = {id(p) for p in decay["params"]}
    assert id(module.model.embed.weight) not in decay_ids
    assert all(p.dim() == 1 for p in no_decay["params"] if p is not module.model.embed.weight)
    assert id(module.model.blocks[0].attn.q_proj.weight) in decay_ids


def test_throughput_counts_a_tensor_parallel_rank_for_its_share_of_the_group_batch():
    """Two ranks of a tensor-parallel group share each batch and its FLOPs: per device, half of them."""
    import time as clock

    from lit_llm.callbacks.throughput import _Meter

    alone, shared = _Meter(1e12, 2, 4), _Meter(1e12, 2, 4, tensor_parallel=2)
    batch = {"input_ids": torch.zeros(4, 32, dtype=torch.long)}
    for _ in range(4):
        clock.sleep(0.02)
        alone.update(batch, 1e9)
        shared.update(batch, 1e9)
    a, s = alone.metrics("train"), shared.metrics("train")
    for name in ("train/device/tokens_per_sec", "train/tokens_per_sec", "train/device/mfu"):
        assert s[name] / a[name] == pytest.approx(0.5, rel=0.05), (name, a, s)
