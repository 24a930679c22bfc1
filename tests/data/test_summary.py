"""`lit-llm data inspect`: summary, decoded documents, checksum verification, clear errors.

.venv/bin/python -m pytest tests/data/test_summary.py -q
"""

from __future__ import annotations

import json

import pytest

from lit_llm.data.shards import ShardSet
from lit_llm.data.summary import inspect_command, summarize
from lit_llm.errors import UserError
from lit_llm.tokenizer import load_tokenizer
from tests.helpers import make_shard_folder, make_text_folder


def test_summary_and_decoded_documents(tmp_path, capsys):
    data = make_text_folder(tmp_path)
    inspect_command(str(data), num_docs=2, max_chars=10_000)
    out = capsys.readouterr().out
    assert "data folder" in out and "sources" in out and "dedup: exact 0 removed, near 0 removed" in out
    assert "train document 0 of 54" in out and "ends with eos" in out
    tok = load_tokenizer(tmp_path / "tokenizer")
    first = out.split("ends with eos ---\n", 1)[1].split("\n--- ", 1)[0]
    assert first == tok.decode(ShardSet.open(data, "train").document(0)[:-1])
    assert json.loads((data / "manifest.json").read_text())["num_tokens"] > 0
    inspect_command(str(data), num_docs=1, split="val", source="text", max_chars=20)
    assert "val document 0 of 6" in (out := capsys.readouterr().out) and "more characters]" in out


def test_verify_finds_a_corrupt_shard(tmp_path, capsys):
    data = make_text_folder(tmp_path)
    inspect_command(str(data), num_docs=0, verify=True)
    assert "verified train: 1 shards" in capsys.readouterr().out
    shard = data / "train" / "text-00000.bin"
    raw = bytearray(shard.read_bytes())
    raw[100] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="checksum mismatch"):
        inspect_command(str(data), num_docs=0, verify=True)
    shard.write_bytes(bytes(raw[:-8]))
    with pytest.raises(UserError, match="truncated or corrupt"):
        inspect_command(str(data), num_docs=1)


def test_errors_and_minimal_manifests(tmp_path, capsys):
    with pytest.raises(UserError, match="data folder not found"):
        inspect_command(str(tmp_path / "nothing"))
    with pytest.raises(UserError, match="split must be train or val"):
        inspect_command(str(tmp_path), split="test")
    folder = make_shard_folder(tmp_path / "bare")  # no tokenizer, few manifest keys
    inspect_command(str(folder), num_docs=0)
    assert "2 shards" in capsys.readouterr().out
    with pytest.raises(UserError, match="tokenizer .* is missing; cannot decode"):
        inspect_command(str(folder), num_docs=1)
    assert "sources" in summarize({"shards": []})
