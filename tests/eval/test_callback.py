"""BenchmarkEval in real fits: metrics in metrics.csv, identical training with and without it, validate, state."""

from __future__ import annotations

import pytest
import torch
from lit_llm.callbacks import BenchmarkEval

from lit_llm.cli import main
from lit_llm.errors import UserError
from tests.eval.fixtures import EVAL_TASKS, callback_config, tiny_fit_args
from tests.helpers import read_metrics, train_losses


def test_metrics_are_logged_every_n_steps(runs):
    rows = [r for r in read_metrics(runs[1]) if r.get("eval/mmlu_anatomy/acc")]
    assert [int(r["step"]) for r in rows] == [3, 6]  # every 3 steps; the end of fit (6) is not repeated
    for row in rows:
        assert 0.0 <= float(row["eval/mmlu_anatomy/acc"]) <= 1.0
        assert float(row["eval/perplexity/bits_per_byte"]) > 0
        assert (
            row["eval/gsm8k/exact_match_strict-match"] != ""
            and row["eval/gsm8k/exact_match_flexible-extract"] != ""
        )
        assert float(row["eval/seconds"]) > 0
    assert (
        rows[0]["eval/perplexity/bits_per_byte"] != rows[1]["eval/perplexity/bits_per_byte"]
    )  # the model moved


def test_training_is_not_disturbed(runs):
    """Same losses bit for bit (dropout on: any RNG draw would change them), same data position."""
    plain, with_eval = (train_losses(run) for run in runs)
    assert len(plain) == 6 and plain == with_eval
    states = [torch.load(run / "checkpoints" / "last.ckpt", weights_only=False) for run in runs]
    assert states[0]["LitDataModule"]["position"] == states[1]["LitDataModule"]["position"] == 6 * 4
    for a, b in zip(states[0]["state_dict"].values(), states[1]["state_dict"].values()):
        assert torch.equal(a, b)
    assert states[1]["callbacks"]["BenchmarkEval"]["last_step"] == 6


def test_validate_runs_the_same_tasks(runs, text_folder, eval_data, tmp_path):
    config = callback_config(tmp_path / "callbacks.yaml", eval_data)
    main(
        [
            "validate",
            *tiny_fit_args(),
            "--model.arch.dropout",
            "0.1",
            "--data.path",
            str(text_folder / "data"),
            "--config",
            str(config),
            "--trainer.default_root_dir",
            str(tmp_path / "val"),
            "--ckpt_path",
            str(runs[1] / "checkpoints" / "last.ckpt"),
        ]
    )
    rows = [r for r in read_metrics(tmp_path / "val") if r.get("eval/perplexity/bits_per_byte")]
    assert len(rows) == 1 and int(rows[0]["step"]) == 6
    in_fit = [r for r in read_metrics(runs[1]) if r.get("eval/perplexity/bits_per_byte")][-1]
    for key in (
        "eval/perplexity/bits_per_byte",
        "eval/mmlu_anatomy/acc",
        "eval/gsm8k/exact_match_flexible-extract",
    ):
        assert float(rows[0][key]) == pytest.approx(float(in_fit[key]), rel=1e-5), key


def test_state_round_trip_and_bad_settings(eval_data):
    callback = BenchmarkEval(tasks=EVAL_TASKS, data_dir=str(eval_data))
    callback.last_step, callback.latest = 40, {"eval/mmlu/acc": 0.25}
    restored = BenchmarkEval(tasks=EVAL_TASKS, data_dir=str(eval_data))
    restored.load_state_dict(callback.state_dict())
    assert restored.state_dict() == {"last_step": 40, "latest": {"eval/mmlu/acc": 0.25}}
    with pytest.raises(UserError, match="every_n_steps"):
        BenchmarkEval(every_n_steps=-1)
    with pytest.raises(UserError, match="unknown task 'mmlu_anatomyy'"):
        BenchmarkEval(tasks="mmlu_anatomyy")
    with pytest.raises(UserError, match="--allow_code_execution"):
        BenchmarkEval(tasks="humaneval")


def test_settings_are_eval_config_fields_with_training_defaults():
    """Flat keyword arguments (the YAML init_args); only limit and progress default differently."""
    import dataclasses
    import inspect

    from lit_llm.eval.config import EvalConfig

    callback, command = BenchmarkEval(tasks=["perplexity"], batch_size=4).config, EvalConfig()
    assert callback.tasks == ["perplexity"] and callback.batch_size == 4
    assert (callback.limit, callback.progress, command.limit, command.progress) == (10, False, None, True)
    shown = inspect.signature(BenchmarkEval).parameters  # what LightningCLI's help and YAML see
    fields = [field.name for field in dataclasses.fields(EvalConfig)]
    assert EvalConfig(**{name: shown[name].default for name in fields}) == BenchmarkEval().config
    with pytest.raises(UserError, match="limit must be >= 1"):
        BenchmarkEval(limit=0)


def test_missing_data_stops_fit_before_training(text_folder, tmp_path, capsys):
    config = callback_config(tmp_path / "callbacks.yaml", tmp_path / "nowhere")
    with pytest.raises(SystemExit):
        main(
            [
                "fit",
                *tiny_fit_args(),
                "--data.path",
                str(text_folder / "data"),
                "--config",
                str(config),
                "--trainer.max_steps",
                "2",
                "--trainer.default_root_dir",
                str(tmp_path / "run"),
            ]
        )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "nowhere" in err and "--data_dir" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
