"""Data folders and checkpoints from elsewhere: paths that escape the folder, a tokenizer swapped under a
checkpoint. Each refusal is one line naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lit_llm.cli import main
from lit_llm.data.datamodule import LitDataModule
from lit_llm.errors import UserError
from tests.helpers import make_text_folder
from tests.test_training import TINY


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_text_folder(tmp_path_factory.mktemp("text"))


def tampered_copy(data: Path, tmp_path: Path, change) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(data, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize(
    "escape", ["../outside/x.bin", "/etc/passwd", "../../../../etc/passwd", "train/../../x.bin"]
)
def test_shard_paths_outside_the_folder_are_refused(data, tmp_path, escape, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(data / "train" / "text-00000.bin", outside / "x.bin")

    def change(manifest):
        next(s for s in manifest["shards"] if s["split"] == "train")["file"] = escape

    folder = tampered_copy(data, tmp_path, change)
    with pytest.raises(UserError, match="lies outside the data folder; refused") as err:
        LitDataModule(str(folder)).setup("fit")
    assert "\n" not in str(err.value) and "manifest.json" in str(err.value)
    with pytest.raises(SystemExit):
        main(["data", "inspect", str(folder), "--verify", "true", "--num_docs", "0"])
    assert "lies outside the data folder" in capsys.readouterr().err


def test_an_external_tokenizer_must_match_its_recorded_hash(data, tmp_path):
    folder = tampered_copy(data, tmp_path, lambda m: None)
    assert (
        LitDataModule(str(folder)).tokenizer_path == (data.parent / "tokenizer").resolve()
    )  # pinned by hash
    unpinned = tampered_copy(data, tmp_path / "b", lambda m: m["tokenizer"].pop("sha256"))
    with pytest.raises(
        UserError, match="tokenizer .* lies outside the data folder and its sha256 does not match"
    ):
        LitDataModule(str(unpinned)).tokenizer_path  # noqa: B018


def test_resume_on_data_of_another_tokenizer_is_refused_unless_allowed(data, tmp_path, capsys):
    other = make_text_folder(tmp_path / "other", seed=3)  # another corpus: another BPE of the same size
    assert (
        json.loads((other / "manifest.json").read_text())["vocab_size"]
        == json.loads((data / "manifest.json").read_text())["vocab_size"]
    )
    run = tmp_path / "run"
    common = [*TINY, "--trainer.default_root_dir", str(run), "--trainer.val_check_interval", "100"]
    main(["fit", *common, "--data.path", str(data), "--trainer.max_steps", "3"])
    resume = ["fit", *common, "--data.path", str(other), "--trainer.max_steps", "5", "--ckpt_path", "last"]
    with pytest.raises(SystemExit):
        main(resume)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "made with another tokenizer" in err[0] and str(other) in err[0]
    main([*resume, "--model.allow_tokenizer_change", "true"])
