"""SentencePiece-style tokenizers (Llama 2, Mistral, TinyLlama) as GGUF's "llama" vocabulary.

    if is_sentencepiece(data):                                  # data: tokenizer.json, parsed
        vocab = sentencepiece_vocab(tokenizer_dir, data, vocab_size)
        add_sentencepiece_vocab(gguf, writer, vocab)              # gguf: the gguf package

Such a tokenizer.json is a BPE model over text whose spaces are "▁" (a Metaspace pre-tokenizer, or
Llama 2's Prepend + Replace normalizers) with byte fallback: a character outside the vocabulary
becomes its UTF-8 bytes, the tokens <0x00>..<0xFF>. llama.cpp tokenizes it as sentencepiece does
(`llm_tokenizer_spm`): starting from single characters it joins the adjacent pair whose joined text
is the token of highest score, and spells what no token covers in byte tokens. It is written as
llama.cpp's converter writes a tokenizer.model: tokens in id order, scores, types (normal, unknown,
control, user defined, byte), the bos/eos/unk/pad ids and whether a prompt gets bos/eos (as
transformers' tokenizer does). Scores come from the merges: a merged token scores minus the rank of
its first merge, so llama.cpp joins pairs in the order BPE merges them (a Llama 2 tokenizer.json
lists its merges in the order of sentencepiece's scores); tokens no merge makes score below all.
"""

from __future__ import annotations

from pathlib import Path

from lit_llm.errors import UserError
from lit_llm.tokenizer import BYTE_TOKEN

SPACE = "\u2581"  # "▁", sentencepiece's space
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
_SPACE_NORMALIZERS = ("Prepend", "Replace")  # Llama 2's: "▁" in front, spaces to "▁"


def _parts(component: dict | None, key: str) -> list[dict]:
    """A tokenizer.json normalizer or pre-tokenizer as a list (a Sequence's members, one, or none)."""
    if not component:
        return []
    return component.get(key, [component]) if component.get("type") == "Sequence" else [component]


def is_sentencepiece(data: dict) -> bool:
    """Whether tokenizer.json writes spaces as "▁" (Metaspace, or a normalizer replacing " " by "▁")."""
    pre = _parts(data.get("pre_tokenizer"), "pretokenizers")
    norm = _parts(data.get("normalizer"), "normalizers")
    return any(p.get("type") == "Metaspace" for p in pre) or any(
        n.get("type") == "Replace" and n.get("content") == SPACE for n in norm
    )


def add_space_prefix(data: dict, file: Path) -> bool:
    """Whether the tokenizer puts "▁" before a text; a `UserError` for normalizers llama.cpp does not apply."""
    norm = _parts(data.get("normalizer"), "normalizers")
    for n in norm:
        if n.get("type") not in _SPACE_NORMALIZERS or SPACE not in (n.get("prepend"), n.get("content")):
            raise UserError(
                f"{file}: normalizer {n.get('type')}: llama.cpp's sentencepiece vocabulary applies no "
                "normalization but spaces as '▁', so GGUF export would tokenize differently"
            )
    if any(n.get("type") == "Prepend" for n in norm):
        return True
    for p in _parts(data.get("pre_tokenizer"), "pretokenizers"):
        if p.get("type") == "Metaspace":
            return (
                p.get("prepend_scheme", "always" if p.get("add_prefix_space", True) else "never") != "never"
            )
    return False


def sentencepiece_vocab(tokenizer_dir: str | Path, data: dict, vocab_size: int) -> dict:
    """Tokens, scores and types in id order, special ids and flags, for GGUF's "llama" tokenizer model."""
    from transformers import AutoTokenizer

    file = Path(tokenizer_dir) / "tokenizer.json"
    model = data["model"]
    if not model.get("byte_fallback"):
        raise UserError(
            f"{file}: a BPE without byte_fallback: transformers turns characters outside the vocabulary into "
            f"{model.get('unk_token')} where llama.cpp spells them in byte tokens, so the ids would differ"
        )
    tokens = token_list(file, data, vocab_size)
    added = {a["id"]: a for a in data.get("added_tokens", [])}
    missing = set(BYTE_TOKENS) - set(tokens)
    if missing:
        raise UserError(
            f"{file}: {len(missing)} of the 256 byte tokens <0x00>..<0xFF> are missing (llama.cpp spells "
            "characters outside the vocabulary in them): export --format hf and convert that folder with "
            "llama.cpp's convert_hf_to_gguf.py"
        )
    merges = [m.split(" ", 1) if isinstance(m, str) else m for m in model.get("merges", [])]
    scores = [-float(len(merges) + 1)] * vocab_size  # below every merged token
    first_merge: dict[str, int] = {}
    for rank, (left, right) in enumerate(merges):
        first_merge.setdefault(left + right, rank)
    types = []
    for i, token in enumerate(tokens):
        kind = _token_type(token, added.get(i), model.get("unk_token"))
        if kind == "normal" and token in first_merge:
            scores[i] = -float(first_merge[token])
        elif kind in ("unknown", "control", "byte"):
            scores[i] = 0.0  # as sentencepiece scores them
        elif kind == "user_defined":
            scores[i] = -1000.0  # as llama.cpp's converter
        types.append(kind)
    hf = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = hf("a")["input_ids"]
    specials = {k: getattr(hf, f"{k}_token_id") for k in ("bos", "eos", "unk", "pad")}
    for kind, i in specials.items():
        if i is not None:
            check_id(file, i, getattr(hf, f"{kind}_token"), vocab_size)
    return {
        "model": "llama",
        "tokens": tokens,
        "scores": scores,
        "types": types,
        "ids": {k: v for k, v in specials.items() if v is not None},
        "add_bos": specials["bos"] is not None and ids[:1] == [specials["bos"]],
        "add_eos": specials["eos"] is not None and ids[-1:] == [specials["eos"]],
        "add_space_prefix": add_space_prefix(data, file),
        "chat_template": hf.chat_template if isinstance(hf.chat_template, str) else None,
    }


def token_list(file: Path, data: dict, vocab_size: int) -> list[str]:
    """tokenizer.json's tokens (vocabulary, then added tokens) in id order, one per embedding row; a one-line
    `UserError` for an id beyond the rows or a row without a token."""
    tokens: list[str | None] = [None] * vocab_size
    pairs = [
        *data["model"]["vocab"].items(),
        *((a["content"], a["id"]) for a in data.get("added_tokens", [])),
    ]
    for token, i in pairs:
        check_id(file, i, token, vocab_size)
        tokens[i] = token
    if any(t is None for t in tokens):
        raise UserError(f"{file}: ids missing from the vocabulary (the model has {vocab_size} rows)")
    return tokens


def check_id(file: Path, i: int, token: str, vocab_size: int) -> None:
    """A one-line `UserError` for a token id the model has no embedding row for."""
    if i >= vocab_size:
        raise UserError(f"{file}: token id {i} ({token}) is beyond the model's {vocab_size} embedding rows")


def _token_type(token: str, added: dict | None, unk: str | None) -> str:
    if token == unk:
        return "unknown"
    if added is not None:
        return "control" if added.get("special") else "user_defined"
    return "byte" if BYTE_TOKEN.match(token) else "normal"


def add_sentencepiece_vocab(gguf, writer, vocab: dict) -> None:
    """The "llama" tokenizer keys, as llama.cpp's converter writes them for a sentencepiece model."""
    token_type = {
        "normal": gguf.TokenType.NORMAL,
        "unknown": gguf.TokenType.UNKNOWN,
        "control": gguf.TokenType.CONTROL,
        "user_defined": gguf.TokenType.USER_DEFINED,
        "byte": gguf.TokenType.BYTE,
    }
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(vocab["tokens"])
    writer.add_token_scores(vocab["scores"])
    writer.add_token_types([token_type[t] for t in vocab["types"]])
    for kind, i in vocab["ids"].items():
        getattr(writer, f"add_{kind}_token_id")(i)
    writer.add_add_bos_token(vocab["add_bos"])
    writer.add_add_eos_token(vocab["add_eos"])
    writer.add_add_space_prefix(vocab["add_space_prefix"])
    if vocab["chat_template"]:
        writer.add_chat_template(vocab["chat_template"])
