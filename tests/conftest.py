"""Shared test set-up: offline Hugging Face, deterministic torch, small thread count."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


import pytest  # noqa: E402

from tests.helpers import make_text_folder  # noqa: E402


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    """A real BPE tokenizer and text shards (`make_text_folder`), built once for the session: do not
    write into it (copy it first, as tests of tampered data do)."""
    return make_text_folder(tmp_path_factory.mktemp("text"))
