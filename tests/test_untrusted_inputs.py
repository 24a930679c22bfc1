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
from tests.helpers import TINY, fit_tiny, make_text_folder


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


class Payload:
    """Unpickling this runs `touch <marker>`: the proof that a loader ran code from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def write_payload(path: Path, marker: Path) -> None:
    import pickle

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"state": Payload(marker)}))


def crafted_sharded_checkpoint(folder: Path, marker: Path) -> Path:
    import torch

    folder.mkdir(parents=True)
    torch.save({"global_step": 1, "lit_llm": {}}, folder / "meta.pt")  # what is_sharded() looks for
    write_payload(folder / ".metadata", marker)
    return folder


@pytest.mark.parametrize(
    "command",
    [
        ["generate", "--prompt", "hi"],
        ["export", "--out", "EXPORT"],
        ["checkpoint", "convert", "--out", "OUT.ckpt"],
        ["evaluate", "--tasks", "perplexity", "--text_file", "README.md"],
    ],
    ids=lambda c: c[0],
)
def test_a_crafted_sharded_checkpoint_runs_no_code(tmp_path, command, capsys):
    marker = tmp_path / "ran"
    folder = crafted_sharded_checkpoint(tmp_path / "ckpt", marker)
    args = [
        a.replace("EXPORT", str(tmp_path / "hf")).replace("OUT.ckpt", str(tmp_path / "o.ckpt"))
        for a in command
    ]
    with pytest.raises(SystemExit):
        main([*args, "--ckpt_path", str(folder)])
    err = capsys.readouterr().err.strip().splitlines()
    assert not marker.exists()
    assert (
        len(err) == 1 and "refused to load" in err[0] and "posix.system" in err[0] and ".metadata" in err[0]
    )


def test_fit_with_a_crafted_sharded_checkpoint_runs_no_code(data, tmp_path, capsys):
    marker = tmp_path / "ran"
    folder = crafted_sharded_checkpoint(tmp_path / "ckpt", marker)
    with pytest.raises(SystemExit):
        main(["fit", *TINY, "--data.path", str(data), "--trainer.max_steps", "2", "--ckpt_path", str(folder)])
    assert not marker.exists() and "refused to load" in capsys.readouterr().err


def test_a_crafted_data_work_file_runs_no_code(tmp_path, capsys):
    from lit_llm.data.merge import RECIPE, STATE, WORK

    marker = tmp_path / "ran"
    folder = tmp_path / "data"
    (folder / WORK).mkdir(parents=True)
    (folder / WORK / STATE).write_text(
        json.dumps({"recipe_sha256": "x", "tokenizer": {"sha256": "y"}, "dtype": "uint16"})
    )
    write_payload(folder / WORK / RECIPE, marker)
    with pytest.raises(SystemExit):
        main(["data", "merge", "--output", str(folder)])
    err = capsys.readouterr().err.strip().splitlines()
    assert not marker.exists() and len(err) == 1 and "refused to load" in err[0] and RECIPE in err[0]


def test_a_crafted_chunk_file_is_refused_not_skipped(tmp_path):
    from lit_llm.data.chunks import load_chunk
    from lit_llm.safe_pickle import RefusedFile

    marker = tmp_path / "ran"
    write_payload(tmp_path / "s000" / "c00000.pkl", marker)
    with pytest.raises(RefusedFile, match="refused to load"):
        load_chunk(tmp_path / "s000" / "c00000")
    assert not marker.exists()


def broken_checkpoints(tmp_path: Path, good: Path) -> dict[str, Path]:
    import torch

    cases = {name: tmp_path / f"{name}.ckpt" for name in ("truncated", "random", "empty", "foreign")}
    cases["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases["random"].write_bytes(bytes(range(256)) * 64)
    cases["empty"].write_bytes(b"")
    torch.save({"weights": torch.zeros(2)}, cases["foreign"])
    cases["folder"] = tmp_path / "folder.ckpt"
    cases["folder"].mkdir()
    cases["missing"] = tmp_path / "missing.ckpt"
    return cases


def test_broken_checkpoints_are_one_line_for_fit_and_validate(data, tmp_path, capsys):
    run = tmp_path / "run"
    fit_tiny(data, run, "--trainer.max_steps", "2")
    capsys.readouterr()
    for name, path in broken_checkpoints(tmp_path, run / "checkpoints" / "last.ckpt").items():
        for command in ("fit", "validate"):
            with pytest.raises(SystemExit) as exc:
                main([command, *TINY, "--data.path", str(data), "--ckpt_path", str(path)])
            err = capsys.readouterr().err.strip().splitlines()
            assert exc.value.code == 1 and len(err) == 1 and str(path) in err[0], (name, command, err)


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda m: None, "not a JSON object"),
        (lambda m: m["shards"][0].pop("sha256"), "shard entry 0 lacks or mistypes sha256"),
        (lambda m: m.update(shards="train/text-00000.bin"), "shards must be a list"),
        (lambda m: m.update(vocab_size="many"), "vocab_size must be a positive integer"),
        (lambda m: m.update(vocab_size=0), "vocab_size must be a positive integer"),
        (lambda m: m.update(vocab_size=100), "is outside the manifest's vocab_size 100"),
    ],
    ids=["null", "no-sha256", "shards-string", "vocab-text", "vocab-zero", "vocab-too-small"],
)
def test_malformed_manifests_are_one_line(data, tmp_path, change, problem):
    folder = tampered_copy(data, tmp_path, change)
    if problem == "not a JSON object":
        (folder / "manifest.json").write_text("null")
    with pytest.raises(UserError, match=problem) as err:
        LitDataModule(str(folder)).setup("fit")
    assert (
        "\n" not in str(err.value) and "manifest.json" in str(err.value) or "text-00000.bin" in str(err.value)
    )


def test_prepare_output_naming_a_file_is_one_line(data, tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("mine")
    corpus = data.parent / "corpus.jsonl"
    with pytest.raises(SystemExit):
        main(
            [
                "data",
                "prepare",
                "--input",
                str(corpus),
                "--tokenizer",
                str(data.parent / "tokenizer"),
                "--output",
                str(target),
            ]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(target) in err[0] and target.read_text() == "mine"


def test_a_second_writer_of_a_data_folder_is_refused(data, tmp_path, capsys):
    from lit_llm.data.prepare import folder_lock

    out = tmp_path / "out"
    corpus, tokenizer = data.parent / "corpus.jsonl", data.parent / "tokenizer"
    command = ["data", "prepare", "--input", str(corpus), "--tokenizer", str(tokenizer), "--output", str(out)]
    with folder_lock(out, "prepare"):  # as if another process were preparing it
        with pytest.raises(SystemExit):
            main(command)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "another `lit-llm data prepare`/`merge` is writing this folder" in err[0]
        assert not (out / ".work").exists()
    main(command)  # free again: it runs
    assert (out / "manifest.json").exists() and not list(out.glob(".lock-*"))
