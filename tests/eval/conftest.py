"""Fixtures of the evaluation tests: a real tokenizer, tiny GPTs, benchmark files in tmp folders."""

from __future__ import annotations

import pytest

from lit_llm.tokenizer import load_tokenizer
from tests.eval.fixtures import callback_config, make_eval_data, single_thread, tiny_fit_args, tiny_gpt
from tests.helpers import make_text_folder


@pytest.fixture(autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="session")
def text_folder(tmp_path_factory):
    """tokenizer/ and data/ (shards) under one folder."""
    root = tmp_path_factory.mktemp("eval_text")
    make_text_folder(root)
    return root


@pytest.fixture(scope="session")
def tokenizer(text_folder):
    return load_tokenizer(text_folder / "tokenizer")


@pytest.fixture(scope="session")
def eval_data(tmp_path_factory):
    return make_eval_data(tmp_path_factory.mktemp("eval_data"))


@pytest.fixture(scope="session")
def gpt(tokenizer):
    return tiny_gpt(tokenizer.vocab_size)


@pytest.fixture(scope="session")
def runs(text_folder, eval_data, tmp_path_factory):
    """Two real 6-step fits from the same seed, without and with BenchmarkEval (every 3 steps)."""
    from lit_llm.cli import main

    root = tmp_path_factory.mktemp("runs")
    common = [
        "fit",
        *tiny_fit_args(),
        "--data.path",
        str(text_folder / "data"),
        "--trainer.max_steps",
        "6",
        "--trainer.val_check_interval",
        "100",
        "--model.arch.dropout",
        "0.1",
    ]
    (root / "eval").mkdir()
    config = callback_config(root / "eval" / "callbacks.yaml", eval_data)
    with single_thread():
        main([*common, "--trainer.default_root_dir", str(root / "plain")])
        main([*common, "--trainer.default_root_dir", str(root / "eval"), "--config", str(config)])
    return root / "plain", root / "eval"
