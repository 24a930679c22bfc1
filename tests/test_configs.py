"""Every YAML under configs/ parses with the command that consumes it; experiments compose the presets;
a run's saved config.yaml is the whole run."""

from pathlib import Path

import pytest
import yaml

from lit_llm.cli import main
from lit_llm.model import ModelConfig
from tests.helpers import fit_tiny, make_shard_folder, train_losses

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXPERIMENTS = sorted((CONFIGS / "experiments").glob("*.yaml"))


def print_config(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_each_experiment_uses_a_model_preset_unchanged(path, capsys):
    preset = (path.parent / yaml.safe_load(path.read_text())["model"]["arch"]).resolve()
    assert preset.parent == CONFIGS / "model", f"{path.name}: model.arch must name a preset in configs/model/"
    resolved = print_config(capsys, "--config", str(path))["model"]["arch"]
    assert ModelConfig(**resolved) == ModelConfig(**yaml.safe_load(preset.read_text()))


@pytest.mark.parametrize("path", sorted((CONFIGS / "model").glob("*.yaml")), ids=lambda p: p.stem)
def test_model_presets_build_valid_configs(path, capsys):
    config = ModelConfig(vocab_size=32000, **yaml.safe_load(path.read_text()))
    assert config.d_model % config.n_head == 0
    resolved = print_config(capsys, "--model.arch", str(path), "--data.path", "unused")["model"]["arch"]
    assert ModelConfig(**resolved) == config


def test_print_config_shows_the_default_callbacks_logger_and_checkpoint_io(capsys, tmp_path):
    printed = print_config(
        capsys,
        "--data.path",
        "unused",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--checkpoint.every_n_steps",
        "7",
    )
    trainer = printed["trainer"]
    callbacks = {c["class_path"].rsplit(".", 1)[1]: c.get("init_args", {}) for c in trainer["callbacks"]}
    assert set(callbacks) == {"ModelCheckpoint", "FinalCheckpoint", "TokenThroughput", "TrainingProgressBar"}
    periodic = [c["init_args"] for c in trainer["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    assert [c["every_n_train_steps"] for c in periodic] == [7, 1000]
    assert periodic[0]["dirpath"] == str(tmp_path / "checkpoints")
    assert trainer["logger"]["init_args"]["save_dir"] == str(tmp_path)
    assert trainer["plugins"]["class_path"] == "lit_llm.checkpoint_io.AtomicCheckpointIO"


def test_an_own_model_checkpoint_replaces_the_kit_ones(capsys):
    own = '{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"every_n_train_steps": 5}}'
    printed = print_config(capsys, "--data.path", "unused", "--trainer.callbacks+", own)
    periodic = [c for c in printed["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    assert [c["init_args"]["every_n_train_steps"] for c in periodic] == [5]


def test_the_saved_config_reruns_the_same_run(tmp_path):
    data = make_shard_folder(tmp_path / "data")
    fit_tiny(data, tmp_path / "first", "--trainer.max_steps", "4", "--checkpoint.every_n_steps", "2")
    saved = tmp_path / "first" / "logs" / "version_0" / "config.yaml"
    main(["fit", "--config", str(saved), "--trainer.default_root_dir", str(tmp_path / "again")])
    assert train_losses(tmp_path / "again") == train_losses(tmp_path / "first")
    written = sorted(p.name for p in (tmp_path / "again" / "checkpoints").glob("*.ckpt"))
    assert written == sorted(p.name for p in (tmp_path / "first" / "checkpoints").glob("*.ckpt"))
    again = yaml.safe_load((tmp_path / "again" / "logs" / "version_0" / "config.yaml").read_text())
    assert (
        again["trainer"]["callbacks"]
        == yaml.safe_load(saved.read_text().replace("first", "again"))["trainer"]["callbacks"]
    )


def test_printed_config_reruns_with_switches_off_and_refuses_edited_kit_checkpoints(capsys, tmp_path):
    saved = tmp_path / "config.yaml"
    printed = print_config(capsys, "--data.path", "unused", "--trainer.default_root_dir", str(tmp_path))
    saved.write_text(yaml.safe_dump(printed))
    off = ["--trainer.enable_progress_bar", "false", "--trainer.enable_checkpointing", "false"]
    again = print_config(capsys, "--config", str(saved), *off)
    assert [c["class_path"].rsplit(".", 1)[1] for c in again["trainer"]["callbacks"]] == ["TokenThroughput"]
    printed["trainer"]["callbacks"][0]["init_args"]["every_n_train_steps"] = 500
    saved.write_text(yaml.safe_dump(printed))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(saved), "--print_config"])
    error = capsys.readouterr().err
    assert (
        exit_info.value.code == 1
        and "every_n_train_steps/save_top_k 500/3, but checkpoint.* gives 100/3" in error
    )


def test_print_config_of_an_incomplete_run_and_of_validate(capsys):
    assert print_config(capsys)["data"]["path"] is None  # no data path yet: printed as it stands
    with pytest.raises(SystemExit):
        main(["validate", "--data.path", "unused", "--print_config"])
    callbacks = yaml.safe_load(capsys.readouterr().out)["trainer"]["callbacks"]
    assert "TokenThroughput" not in str(callbacks) and "TrainingProgressBar" in str(callbacks)


def test_model_parallel_runs_as_sharded_strategy_and_async_save_sets_both(capsys, caplog, tmp_path):
    model_parallel = ["--trainer.strategy.class_path", "lightning.pytorch.strategies.ModelParallelStrategy"]
    tp1 = ["--trainer.strategy.init_args.tensor_parallel_size", "1"]
    printed = print_config(
        capsys, "--data.path", "unused", *model_parallel, *tp1, "--checkpoint.async_save", "true"
    )
    strategy, plugins = printed["trainer"]["strategy"], printed["trainer"]["plugins"]
    assert strategy["class_path"] == "lit_llm.strategy.ShardedStrategy"
    assert (
        strategy["init_args"]["tensor_parallel_size"] == 1
        and strategy["init_args"]["async_checkpoint"] is True
    )
    assert plugins["init_args"]["async_save"] is True and printed["checkpoint"]["async_save"] is True
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(printed))
    assert print_config(capsys, "--config", str(saved)) == printed  # a saved config re-runs unchanged
    with caplog.at_level("INFO"):
        again = print_config(capsys, "--config", str(saved), "--checkpoint.async_save", "false")
    assert again["trainer"]["strategy"]["init_args"]["async_checkpoint"] is False
    assert again["trainer"]["plugins"]["init_args"]["async_save"] is False
    assert (
        "trainer.strategy: ShardedStrategy async_checkpoint True -> False (set by --checkpoint.async_save)"
        in caplog.text
    )
