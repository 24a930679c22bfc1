"""GGUF export of SentencePiece-style tokenizers (Llama 2, Mistral, TinyLlama layout: "▁" for spaces, byte
fallback, <unk> <s> </s> then the 256 byte tokens), read back with gguf's reader; the refusals in one line
(also the byte-level path's, for ids beyond the model's rows).

    .venv/bin/python -m pytest tests/test_gguf_sentencepiece.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import pytest

from lit_llm.errors import UserError
from lit_llm.gguf_export import tokenizer_vocab, write_gguf
from lit_llm.gguf_sentencepiece import SPACE
from lit_llm.model import GPT, ModelConfig
from tests.test_export import read_gguf
from tests.test_init_from import save_stock_tokenizer, texts


def save_llama2_tokenizer(folder: Path, legacy: bool) -> dict:
    """A BPE trained on words, laid out as Llama 2's tokenizer.json: legacy (Prepend + Replace normalizers, a
    TemplateProcessing that adds <s>) or transformers' newer conversion (a Metaspace pre-tokenizer, no <s>)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.BPE(unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Metaspace()  # no token crosses a word, as sentencepiece's
    words.train_from_iterator(texts(200, 0), trainers.BpeTrainer(vocab_size=120, show_progress=False))
    learned = json.loads(words.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for token in sorted(learned["vocab"], key=learned["vocab"].get):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ") if isinstance(m, str) else m) for m in learned["merges"]]
    tok = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()])
    if legacy:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(folder)
    return {"vocab": vocab, "merges": merges}


def tiny_gpt(vocab_size: int) -> GPT:
    return GPT(
        ModelConfig(vocab_size=vocab_size, n_layer=1, n_head=2, n_kv_head=1, d_model=32, max_seq_len=64)
    )


@pytest.mark.parametrize("legacy", [True, False], ids=["llama2-normalizers", "metaspace"])
def test_sentencepiece_tokenizer_is_written_as_a_llama_vocabulary(legacy, tmp_path):
    from transformers import AutoTokenizer

    made = save_llama2_tokenizer(tmp_path / "tok", legacy)
    vocab, merges = made["vocab"], made["merges"]
    fields, _ = read_gguf(write_gguf(tiny_gpt(len(vocab)), tmp_path / "m.gguf", tmp_path / "tok", "f32"))
    hf = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert (fields["tokenizer.ggml.model"], fields["tokenizer.ggml.pre"]) == ("llama", "default")
    assert fields["tokenizer.ggml.tokens"] == hf.convert_ids_to_tokens(list(range(len(vocab))))
    types, scores = fields["tokenizer.ggml.token_type"], fields["tokenizer.ggml.scores"]
    kinds = {"<unk>": "UNKNOWN", "<s>": "CONTROL", "</s>": "CONTROL"}
    for token, i in vocab.items():
        want = kinds.get(token, "BYTE" if 3 <= i < 259 else "NORMAL")
        assert types[i] == getattr(gguf.TokenType, want), token
    first = {}
    for rank, (left, right) in enumerate(merges):
        first.setdefault(left + right, rank)
    assert all(scores[vocab[token]] == -rank for token, rank in first.items())  # BPE's order, highest first
    assert all(
        scores[i] < -len(merges)
        for t, i in vocab.items()
        if types[i] == gguf.TokenType.NORMAL and t not in first
    )
    assert (hf("a b")["input_ids"][0] == 1) is legacy  # what transformers adds, the GGUF says
    ids = ("bos", "eos", "unknown")
    assert [fields[f"tokenizer.ggml.{k}_token_id"] for k in ids] == [1, 2, 0]
    assert (
        fields["tokenizer.ggml.add_bos_token"] is legacy and fields["tokenizer.ggml.add_eos_token"] is False
    )
    assert fields["tokenizer.ggml.add_space_prefix"] is True


def test_tokenizers_llama_cpp_cannot_read_alike_are_refused_in_one_line(tmp_path):
    vocab = save_stock_tokenizer(tmp_path / "no-bytes")  # Metaspace and byte fallback, but no <0xNN> tokens
    with pytest.raises(UserError, match=r"256 of the 256 byte tokens <0x00>..<0xFF> are missing") as err:
        write_gguf(tiny_gpt(vocab), tmp_path / "a.gguf", tmp_path / "no-bytes")
    assert "no-bytes/tokenizer.json" in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).endswith(
        "export --format hf and convert that folder with llama.cpp's convert_hf_to_gguf.py"
    )
    from tokenizers import Tokenizer, models

    unigram = Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0), ("b", -2.0)], unk_id=0))
    (tmp_path / "unigram").mkdir()
    unigram.save(str(tmp_path / "unigram" / "tokenizer.json"))
    with pytest.raises(
        UserError, match="a Unigram tokenizer; GGUF export writes BPE vocabularies only"
    ) as err:
        write_gguf(tiny_gpt(3), tmp_path / "b.gguf", tmp_path / "unigram")
    assert "convert_hf_to_gguf.py" in str(err.value) and not (tmp_path / "b.gguf").exists()
    wordpiece = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    (tmp_path / "wordpiece").mkdir()
    wordpiece.save(str(tmp_path / "wordpiece" / "tokenizer.json"))
    with pytest.raises(UserError, match="a WordPiece tokenizer; .* for BERT models only; export --format hf"):
        tokenizer_vocab(tmp_path / "wordpiece", 2)


def test_ids_beyond_the_models_rows_are_refused_in_one_line(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer

    n = len(save_llama2_tokenizer(tmp_path / "sp", legacy=True)["vocab"])
    last = AutoTokenizer.from_pretrained(tmp_path / "sp").convert_ids_to_tokens(n - 1)
    with pytest.raises(
        UserError, match=rf"token id {n - 1} \({last}\) is beyond the model's {n - 1} embedding"
    ):
        tokenizer_vocab(tmp_path / "sp", n - 1)
    hf = AutoTokenizer.from_pretrained(tmp_path / "sp")
    hf.add_special_tokens({"pad_token": "<pad>"})  # an added token past the model's rows
    hf.save_pretrained(tmp_path / "sp-pad")
    with pytest.raises(UserError, match=rf"token id {n} \(<pad>\) is beyond the model's {n} embedding rows"):
        tokenizer_vocab(tmp_path / "sp-pad", n)
    byte_level = Tokenizer(models.BPE())  # the "gpt2" path: an IndexError before
    byte_level.pre_tokenizer = pre_tokenizers.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    byte_level.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 4, trainer)
    (tmp_path / "bl").mkdir()
    byte_level.save(str(tmp_path / "bl" / "tokenizer.json"))
    size = byte_level.get_vocab_size()
    with pytest.raises(UserError, match=rf"bl/tokenizer.json: token id {size - 1} \(.+\) is beyond") as err:
        tokenizer_vocab(tmp_path / "bl", size - 1)
    assert "\n" not in str(err.value)


def test_a_bpe_without_byte_fallback_is_refused_in_one_line(tmp_path):
    n = len(save_llama2_tokenizer(tmp_path / "tok", legacy=False)["vocab"])
    file = tmp_path / "tok" / "tokenizer.json"
    data = json.loads(file.read_text())
    data["model"]["byte_fallback"] = False
    file.write_text(json.dumps(data))
    with pytest.raises(UserError, match="tok/tokenizer.json: a BPE without byte_fallback") as err:
        tokenizer_vocab(tmp_path / "tok", n)
    assert "<unk>" in str(err.value) and "\n" not in str(err.value)
