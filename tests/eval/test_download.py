"""Where benchmark files are looked for, and `lit-llm evaluate --download`: hub rows written in the layout
the task loaders read (rows built here, in the hub data sets' schemas), and one line when offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from lit_llm.cli import main
from lit_llm.errors import UserError
from lit_llm.eval.download import (
    download_benchmarks,
    write_gsm8k,
    write_humaneval,
    write_mmlu,
    write_wikitext,
)
from lit_llm.eval.tasks.utils import data_root, load_gsm8k, load_humaneval, load_mmlu, text_file_path


def test_data_root_prefers_the_argument_then_the_environment_then_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("LIT_LLM_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_root(None) == tmp_path / "cache" / "lit-llm" / "benchmarks"
    monkeypatch.setenv("LIT_LLM_DATA", str(tmp_path / "env"))
    assert data_root(None) == tmp_path / "env"
    assert data_root(tmp_path / "given") == tmp_path / "given"


def test_hub_rows_are_written_in_the_layout_the_loaders_read(tmp_path):
    mmlu = {
        split: [
            {
                "question": f"Q{i} {split}?",
                "subject": subject,
                "choices": ["a", "b, c", "d", "e"],
                "answer": i % 4,
            }
            for i in range(3)
            for subject in ("anatomy", "virology")
        ]
        for split in ("dev", "test")
    }
    write_mmlu(mmlu, tmp_path)
    loaded = load_mmlu("anatomy", data_dir=tmp_path)
    assert loaded["test"][1] == {
        "question": "Q1 test?",
        "subject": "anatomy",
        "choices": ["a", "b, c", "d", "e"],
        "answer": 1,
    }
    write_gsm8k(
        {
            "train": [{"question": "1+1?", "answer": "2 #### 2"}],
            "test": [{"question": "2+2?", "answer": "#### 4"}],
        },
        tmp_path,
    )
    assert load_gsm8k(data_dir=tmp_path)["test"][0]["answer"] == "#### 4"
    problem = {"task_id": "HumanEval/0", "prompt": "def f():\n", "canonical_solution": "    return 1\n"}
    problem |= {"test": "def check(f):\n    assert f() == 1\n", "entry_point": "f"}
    write_humaneval([problem], tmp_path)
    assert load_humaneval(data_dir=tmp_path)["test"][0] == problem
    write_wikitext([{"text": " = Title = \n"}, {"text": " Some text .\n"}], tmp_path)
    assert text_file_path(tmp_path).read_text() == " = Title = \n Some text .\n"


def test_download_offline_is_one_line_naming_the_folder_and_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        download_benchmarks(["mmlu", "gsm8k"], tmp_path / "bench")
    message = str(err.value)
    assert (
        "HF_HUB_OFFLINE" in message
        and str(tmp_path / "bench") in message
        and "gsm8k/{train,test}.jsonl" in message
    )
    assert "\n" not in message


def test_evaluate_download_flag_reaches_the_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt = tmp_path / "x.ckpt"
    ckpt.write_bytes(b"not read: the download comes first")
    with pytest.raises(SystemExit):
        main(
            [
                "evaluate",
                "--ckpt_path",
                str(ckpt),
                "--tasks",
                "gsm8k",
                "--download",
                "true",
                "--data_dir",
                str(tmp_path),
            ]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and err[0].startswith("lit-llm: error: cannot download benchmarks")
        and Path(tmp_path).name in err[0]
    )
