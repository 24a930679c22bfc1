"""Every YAML under configs/ parses with the command that consumes it."""

from pathlib import Path

import pytest
import yaml

from lit_llm.cli import main
from lit_llm.model import ModelConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted((CONFIGS / "experiments").glob("*.yaml")), ids=lambda p: p.stem)
def test_experiment_configs_parse_with_lightning_cli(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code in (0, None)
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["model"]["arch"]["n_layer"] >= 1 and resolved["data"]["seq_len"] >= 1


@pytest.mark.parametrize("path", sorted((CONFIGS / "model").glob("*.yaml")), ids=lambda p: p.stem)
def test_model_presets_build_valid_configs(path, capsys):
    config = ModelConfig(vocab_size=32000, **yaml.safe_load(path.read_text()))
    assert config.d_model % config.n_head == 0
    with pytest.raises(SystemExit):
        main(["fit", "--model.arch", str(path), "--data.path", "unused", "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["model"]["arch"]["n_layer"] == config.n_layer
