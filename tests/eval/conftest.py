"""Fixtures of the evaluation tests: a real tokenizer, tiny GPTs, benchmark files in tmp folders."""

from __future__ import annotations

import contextlib

import pytest
import torch

from lit_llm.model import GPT, ModelConfig
from lit_llm.tokenizer import load_tokenizer
from tests.eval.fixtures import make_eval_data
from tests.helpers import make_text_folder


@contextlib.contextmanager
def single_thread():
    """Tiny matmuls run 5-10x faster on one thread than on two on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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


def tiny_gpt(vocab_size: int, max_seq_len: int = 64, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=vocab_size,
        n_layer=2,
        n_head=2,
        n_kv_head=1,
        d_model=32,
        max_seq_len=max_seq_len,
        init_std=0.2,
    )
    return GPT(config).eval()


@pytest.fixture(scope="session")
def gpt(tokenizer):
    return tiny_gpt(tokenizer.vocab_size)


EVAL_TASKS = "mmlu_anatomy,gsm8k,perplexity"


def tiny_fit_args() -> list[str]:
    """test_training's tiny model and data flags (n_kv_head explicit: the arch default derives it from n_head=4)."""
    from tests.helpers import TINY

    return [*TINY, "--model.arch.n_kv_head", "2"]


def callback_config(path, data_dir, **overrides):
    """A LightningCLI config file adding BenchmarkEval (small limits) to the trainer's callbacks."""
    import yaml

    init_args = {
        "tasks": EVAL_TASKS,
        "every_n_steps": 3,
        "limit": 2,
        "data_dir": str(data_dir),
        "max_gen_toks": 8,
        "batch_size": 4,
        **overrides,
    }
    path.write_text(
        yaml.safe_dump(
            {
                "trainer": {
                    "callbacks": [{"class_path": "lit_llm.callbacks.BenchmarkEval", "init_args": init_args}]
                }
            }
        )
    )
    return path


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
