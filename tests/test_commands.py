"""`lit-llm generate`, `lit-llm export`, `--help` and the package layout, on a real tiny checkpoint."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lit_llm.checkpoint import load_gpt
from lit_llm.cli import main
from lit_llm.errors import UserError
from lit_llm.plot import plot_loss_curve
from tests.helpers import TINY, make_text_folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmd")
    data = make_text_folder(root)
    main(
        [
            "fit",
            *TINY,
            "--data.path",
            str(data),
            "--trainer.max_steps",
            "6",
            "--trainer.val_check_interval",
            "3",
            "--trainer.default_root_dir",
            str(root / "run"),
        ]
    )
    return root / "run"


def test_generate_prints_a_continuation(run, capsys):
    main(
        [
            "generate",
            "--ckpt_path",
            str(run),
            "--prompt",
            "The quick",
            "--max_new_tokens",
            "10",
            "--seed",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert out.startswith("The quick") and len(out) > len("The quick")


def test_export_loads_with_transformers_and_matches(run, tmp_path):
    main(["export", "--ckpt_path", str(run), "--out", str(tmp_path / "hf")])
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    gpt, _ = load_gpt(run)
    ids = torch.tensor([tok.encode("To be, or not to be")])
    with torch.no_grad():
        assert (model(ids).logits - gpt(ids)).abs().max() < 1e-4
    assert tok.eos_token == "<|endoftext|>" and model.config.eos_token_id == tok.eos_token_id


def test_loss_curve_plot_draws_the_training_and_validation_curves(run):
    import matplotlib.image
    import numpy as np

    image = matplotlib.image.imread(plot_loss_curve(run))[..., :3]
    assert image.shape == (480, 840, 3)  # 7 x 4 inches at 120 dpi

    def pixels_of(hex_color: str) -> int:
        rgb = np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
        return int((np.abs(image - rgb).max(axis=-1) < 0.02).sum())

    assert pixels_of("#1f77b4") > 500 and pixels_of("#ff7f0e") > 50  # train/loss line, val/loss markers


def test_missing_and_foreign_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no checkpoint"):
        load_gpt(tmp_path)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_gpt(bad)


def test_unknown_command_is_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["data", "frobnicate"])
    assert "unknown command" in capsys.readouterr().err


def test_console_script_help_and_installed_callbacks(tmp_path):
    exe = [sys.executable, "-m", "lit_llm.cli"]
    assert "commands:" in subprocess.run([*exe, "--help"], capture_output=True, text=True).stdout
    assert (
        "--max_new_tokens"
        in subprocess.run([*exe, "generate", "--help"], capture_output=True, text=True).stdout
    )
    # From outside the repository: lit_llm.callbacks resolves into the package, no top-level `callbacks`.
    code = (
        "import importlib.util, lit_llm.callbacks as c; print(c.__file__); "
        "print(importlib.util.find_spec('callbacks'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    ).stdout.split()
    assert out[0].endswith("callbacks/__init__.py") and out[1] == "None"


def test_built_wheel_maps_callbacks_into_the_package(tmp_path):
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode:
        pytest.skip(f"cannot build a wheel here: {proc.stderr.strip().splitlines()[-1:]}")
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    assert "lit_llm/callbacks/__init__.py" in names and "lit_llm/data/filters/prose.py" in names
    assert not any(n.startswith("callbacks/") for n in names)
    assert any(n.startswith("lit_llm/eval/tasks/mmlu/") and n.endswith(".yaml") for n in names)


NOISE = ("warning", "deprecat", "tip:", "was not set", "traceback")


@pytest.mark.slow
def test_demo_runs_end_to_end_with_a_clean_console(tmp_path):
    # The README's first command, scaled down: every line it prints is the kit's or a progress bar.
    import os

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [
        "--out",
        str(tmp_path / "demo"),
        "--max_steps",
        "5",
        "--max_chars",
        "300000",
        "--vocab_size",
        "512",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "lit_llm.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = (result.stdout + result.stderr).replace("\r", "\n")
    noisy = [line for line in output.splitlines() if any(word in line.lower() for word in NOISE)]
    assert noisy == [], noisy
    assert (
        "optimizer steps          5" in result.stdout and (tmp_path / "demo" / "hf" / "config.json").exists()
    )
    assert (tmp_path / "demo" / "checkpoints" / "last.ckpt").exists()
