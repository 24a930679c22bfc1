"""A GPT and its tokenizer as one GGUF file, the format llama.cpp, Ollama and LM Studio load.

    from lit_llm.gguf_export import write_gguf
    write_gguf(gpt, "out/model-q8_0.gguf", tokenizer_dir="out/tokenizer", file_type="q8_0")
    # llama-cli -m out/model-q8_0.gguf -p "def main():"

Written through the `gguf` package (`pip install 'lit-llm[export]'`), as llama.cpp's own
`convert_hf_to_gguf.py` writes a Hugging Face Llama: architecture "llama", its hyperparameters, the
tensors under llama.cpp's names, the tokenizer as a "gpt2" (byte-level BPE) vocabulary with merges, or
a SentencePiece-style one (Llama 2, Mistral) as a "llama" vocabulary (`lit_llm.gguf_sentencepiece`).

Two things differ from a plain rename:
- Rotary layout: Hugging Face's Llama (and GPT) rotate the two halves of each head, llama.cpp
  rotates adjacent pairs; q and k rows are permuted per head as the converter does (`permute_qk`).
- The pre-tokenizer: llama.cpp splits text with a built-in regex chosen by the name in
  `tokenizer.ggml.pre`. The converter finds that name by hashing a tokenization of a fixed test
  string, which no newly trained vocabulary matches; here it comes from the split regex in
  tokenizer.json (the kit's "gpt2" pattern is llama.cpp's "gpt-2", "gpt4" its "llama-bpe").
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from lit_llm.errors import UserError
from lit_llm.gguf_sentencepiece import (
    add_sentencepiece_vocab,
    is_sentencepiece,
    sentencepiece_vocab,
    token_list,
)
from lit_llm.hf import make_readable
from lit_llm.model import GPT
from lit_llm.tokenizer import PATTERNS

FILE_TYPES = ("f32", "f16", "q8_0")
INSTALL_HINT = "pip install 'lit-llm[export]' (or pip install gguf)"
# The kit's pre-tokenization regexes -> llama.cpp's pre-tokenizer of the same split.
LLAMA_CPP_PRE = {PATTERNS["gpt2"]: "gpt-2", PATTERNS["gpt4"]: "llama-bpe"}

# GPT parameter name -> llama.cpp tensor name; "{i}" is the layer index.
_TENSOR_NAMES = {
    "embed.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "blocks.{i}.attn_norm.weight": "blk.{i}.attn_norm.weight",
    "blocks.{i}.attn.q_proj.weight": "blk.{i}.attn_q.weight",
    "blocks.{i}.attn.k_proj.weight": "blk.{i}.attn_k.weight",
    "blocks.{i}.attn.v_proj.weight": "blk.{i}.attn_v.weight",
    "blocks.{i}.attn.o_proj.weight": "blk.{i}.attn_output.weight",
    "blocks.{i}.mlp_norm.weight": "blk.{i}.ffn_norm.weight",
    "blocks.{i}.mlp.gate_proj.weight": "blk.{i}.ffn_gate.weight",
    "blocks.{i}.mlp.up_proj.weight": "blk.{i}.ffn_up.weight",
    "blocks.{i}.mlp.down_proj.weight": "blk.{i}.ffn_down.weight",
}


def import_gguf():
    """The `gguf` package, or a one-line `UserError` saying how to install it."""
    try:
        import gguf
    except ImportError:
        raise UserError(f"--format gguf needs the gguf package: {INSTALL_HINT}") from None
    return gguf


def tensor_names(n_layer: int) -> dict[str, str]:
    """Every GPT parameter name mapped to its llama.cpp tensor name."""
    names = {}
    for gpt_name, gguf_name in _TENSOR_NAMES.items():
        layers = range(n_layer) if "{i}" in gpt_name else [0]
        names.update({gpt_name.format(i=i): gguf_name.format(i=i) for i in layers})
    return names


def permute_qk(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """Rows of a q or k projection from rotate-half order (HF) to llama.cpp's adjacent pairs, per head.

    As `LlamaModel.permute` in llama.cpp's convert_hf_to_gguf.py; `n_head` is the number of heads the
    projection has (n_kv_head for k)."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def gguf_tensors(gpt: GPT) -> Iterator[tuple[str, np.ndarray]]:
    """(llama.cpp name, float32 array) for every tensor of `gpt`: vocabulary rows cut to vocab_size, q/k
    permuted, no output tensor when the embeddings are tied (llama.cpp then reuses token_embd)."""
    config = gpt.config
    names = tensor_names(config.n_layer)
    for name, tensor in gpt.state_dict().items():
        if name not in names or (name == "lm_head.weight" and config.tie_embeddings):
            continue
        tensor = tensor.detach().float().cpu()
        if name in ("embed.weight", "lm_head.weight"):
            tensor = tensor[: config.vocab_size]
        elif name.endswith("attn.q_proj.weight"):
            tensor = permute_qk(tensor, config.n_head)
        elif name.endswith("attn.k_proj.weight"):
            tensor = permute_qk(tensor, config.n_kv_head)
        yield names[name], tensor.numpy()


def encode_tensor(gguf, array: np.ndarray, file_type: str) -> tuple[np.ndarray, object]:
    """The array as stored for `file_type`: norms (1-D) stay f32 as in llama.cpp's converter; q8_0 falls
    back to f16 for a matrix whose rows are not a multiple of its 32-value blocks."""
    types = gguf.GGMLQuantizationType
    if array.ndim == 1 or file_type == "f32":
        return array.astype(np.float32), types.F32
    if file_type == "q8_0":
        try:
            return gguf.quants.quantize(array, types.Q8_0), types.Q8_0
        except gguf.quants.QuantError:
            pass
    return array.astype(np.float16), types.F16


def tokenizer_vocab(tokenizer_dir: str | Path, vocab_size: int) -> dict:
    """What GGUF stores of the tokenizer: tokens in id order, their types, merges, special ids, pre-tokenizer."""
    file = Path(tokenizer_dir) / "tokenizer.json"
    data = json.loads(file.read_text(encoding="utf-8"))
    model = data.get("model", {})
    if model.get("type") != "BPE":
        raise UserError(
            f"{file}: a {model.get('type')} tokenizer; GGUF export writes BPE vocabularies only (byte-level, or "
            f"SentencePiece-style with byte fallback): {_NOT_BPE.get(model.get('type'), _NOT_BPE[None])}"
        )
    if is_sentencepiece(data):
        return sentencepiece_vocab(tokenizer_dir, data, vocab_size)
    tokens = token_list(file, data, vocab_size)
    special = {added["content"]: added["id"] for added in data.get("added_tokens", [])}
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    config_file = Path(tokenizer_dir) / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
    return {
        "model": "gpt2",
        "tokens": tokens,
        "special": special,
        "merges": merges,
        "pre": llama_cpp_pre(data.get("pre_tokenizer"), file),
        "eos": _token_content(config.get("eos_token")) or "<|endoftext|>",
        "pad": _token_content(config.get("pad_token")) or "<|pad|>",
    }


# What to do instead, per tokenizer.json model type GGUF export refuses.
_NOT_BPE = {
    "Unigram": "export --format hf, add the sentencepiece tokenizer.model the vocabulary came from to that "
    "folder and convert it with llama.cpp's convert_hf_to_gguf.py",
    "WordPiece": "llama.cpp's convert_hf_to_gguf.py writes WordPiece vocabularies for BERT models only; "
    "export --format hf to use the model with transformers",
    None: "llama.cpp has no such vocabulary; export --format hf to use the model with transformers",
}


def llama_cpp_pre(pre_tokenizer: dict | None, file: Path) -> str:
    """llama.cpp's name for the split a tokenizer.json pre-tokenizer makes; a `UserError` when it has none."""
    parts = (pre_tokenizer or {}).get("pretokenizers", [pre_tokenizer or {}])
    for part in parts:
        if part.get("type") == "Split" and part.get("pattern", {}).get("Regex") in LLAMA_CPP_PRE:
            return LLAMA_CPP_PRE[part["pattern"]["Regex"]]
        if part.get("type") == "ByteLevel" and part.get("use_regex", True):
            return "gpt-2"  # ByteLevel's own regex is GPT-2's
    raise UserError(
        f"{file}: llama.cpp has no pre-tokenizer for this split pattern; GGUF export supports "
        "tokenizers trained with --pattern gpt2 or gpt4"
    )


def _token_content(value) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def write_gguf(
    gpt: GPT, path: str | Path, tokenizer_dir: str | Path, file_type: str = "f16", name: str = "lit-llm"
) -> Path:
    """Write `gpt` and its tokenizer as a GGUF file (f32, f16 or q8_0), atomically, mode 0666 less the umask."""
    gguf = import_gguf()
    if file_type not in FILE_TYPES:
        raise UserError(f"unknown GGUF type {file_type!r}; choose one of {', '.join(FILE_TYPES)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    vocab = tokenizer_vocab(tokenizer_dir, gpt.config.vocab_size)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    writer = gguf.GGUFWriter(tmp, "llama")
    try:
        _add_metadata(gguf, writer, gpt, vocab, file_type, name)
        for tensor_name, array in gguf_tensors(gpt):
            data, dtype = encode_tensor(gguf, array, file_type)
            writer.add_tensor(tensor_name, data, raw_dtype=dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    make_readable([path])
    return path


def _add_metadata(gguf, writer, gpt: GPT, vocab: dict, file_type: str, name: str) -> None:
    """The llama hyperparameters and the tokenizer, under the keys llama.cpp reads."""
    config = gpt.config
    writer.add_name(name)
    writer.add_context_length(config.max_seq_len)
    writer.add_embedding_length(config.d_model)
    writer.add_block_count(config.n_layer)
    writer.add_feed_forward_length(config.ffn_hidden)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.n_kv_head)
    writer.add_key_length(config.head_size)
    writer.add_value_length(config.head_size)
    writer.add_rope_dimension_count(config.head_size)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_layer_norm_rms_eps(config.norm_eps)
    writer.add_vocab_size(config.vocab_size)
    file_types = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0"}
    writer.add_file_type(getattr(gguf.LlamaFileType, file_types[file_type]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if vocab["model"] == "llama":
        add_sentencepiece_vocab(gguf, writer, vocab)
    else:
        _add_byte_level_vocab(gguf, writer, vocab)


def _add_byte_level_vocab(gguf, writer, vocab: dict) -> None:
    """The "gpt2" tokenizer keys: tokens, control types for the special tokens, merges, ids, no bos added."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab["pre"])
    writer.add_token_list(vocab["tokens"])
    special = set(vocab["special"].values())
    token_type = gguf.TokenType
    writer.add_token_types(
        [token_type.CONTROL if i in special else token_type.NORMAL for i in range(len(vocab["tokens"]))]
    )
    writer.add_token_merges(vocab["merges"])
    eos, pad = vocab["special"][vocab["eos"]], vocab["special"].get(vocab["pad"])
    writer.add_bos_token_id(eos)  # documents are separated by eos; as config.json's bos_token_id
    writer.add_eos_token_id(eos)
    if pad is not None:
        writer.add_pad_token_id(pad)
    writer.add_add_bos_token(False)  # as the Hugging Face tokenizer: the kit trains without a bos token
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
