"""The kit's tokenizer: a byte-level BPE (HF `tokenizers`), trained from texts, saved for `transformers`, loaded.

    from lit_llm.tokenizer import load_tokenizer
    tok = load_tokenizer("tokenizers/books")
    ids = tok.encode("Hello world") + [tok.eos_id]

A leaf module (no data code): `lit-llm tokenizer train` reads sources and samples them in
`lit_llm.data.tokenizer_training`, then trains with `train_bpe` and writes with `save_tokenizer`.

Design:
- Byte-level BPE: text is split by a pre-tokenization regex (GPT-2's by default, or GPT-4's,
  which splits numbers into groups of at most 3 digits), each piece mapped to bytes, and the
  256 byte symbols are always in the vocabulary; no normalizer. So decode(encode(t)) == t
  for every string.
- Special tokens: `<|endoftext|>` (eos, ends every document) is id 0 and `<|pad|>` id 1,
  extra ones follow. A special token must be delimited ("<...>" or "[...]"), at least 3
  characters and without whitespace, so it never equals a word, a number or a run of
  spaces of normal text. `Tokenizer.encode` treats text as plain text: a literal
  "<|endoftext|>" inside a document is encoded as ordinary bytes (never the eos id), so a
  document cannot fake a boundary; pass `allow_special=True` to map literals to their ids.
  (`transformers.AutoTokenizer` keeps its own default and maps literals to special ids.)
  Training checks that no merge rebuilds a special token from plain text.
- Output: tokenizer.json, tokenizer_config.json, special_tokens_map.json and report.json,
  written to a temporary folder and renamed into place. The same texts and options give a
  byte-identical tokenizer.json.
- Stock tokenizers (a Hugging Face model's folder: tokenizer.json + tokenizer_config.json, as
  `save_pretrained` writes them; Llama 2/3, Mistral, SmolLM, TinyLlama) load too, by this rule:
  the document separator (`eos_id`) is the config's `eos_token`, else `<|endoftext|>`, else the
  `bos_token`; padding (`pad_id`) is the config's `pad_token` unless it is missing or the
  separator itself, else `<|pad|>`, else none. Training windows are packed and never padded, so
  no pad token is needed; a pad that equals the separator would hide every document end from
  the loss, so it is dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from lit_llm.errors import UserError

EOS = "<|endoftext|>"
PAD = "<|pad|>"
PATTERNS = {
    "gpt2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "gpt4": (
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
        r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
    ),
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "report.json")
# Files of a Hugging Face model's tokenizer that travel with it (data folders, exports); weights never do.
HF_TOKENIZER_FILES = (*TOKENIZER_FILES[:3], "tokenizer.model", "added_tokens.json", "chat_template.jinja")
BYTE_TOKEN = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")  # SentencePiece byte fallback
_SPECIAL_RULE = re.compile(r"^[<\[]\S+[>\]]$")


# ---------------------------------------------------------------- the kit's tokenizer object


class Tokenizer:
    """A trained tokenizer folder, loaded: the one tokenizer object the rest of the kit uses.

    `encode` treats its input as plain text (special-token literals become ordinary tokens)
    unless `allow_special=True`; `decode` keeps special tokens, so it is the exact inverse.
    """

    def __init__(self, folder: str | os.PathLike):
        folder = Path(folder)
        file = folder / "tokenizer.json"
        if not folder.is_dir():
            raise UserError(f"{folder}: no such tokenizer folder (train one with `lit-llm tokenizer train`)")
        if not file.is_file():
            raise UserError(f"{folder}: no tokenizer.json in this folder")
        try:
            text = file.read_text(encoding="utf-8")
            config = (
                _read_json(folder / "tokenizer_config.json")
                if (folder / "tokenizer_config.json").exists()
                else {}
            )
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise UserError(f"{file}: cannot read ({err})") from err
        names = tuple(_token_str(config.get(f"{k}_token")) for k in ("eos", "pad", "bos"))
        self._setup(folder, text, *names)

    def _setup(self, folder: Path, text: str, eos: str | None, pad: str | None, bos: str | None) -> None:
        """`eos`, `pad`, `bos`: the names tokenizer_config.json gives (None: not given); the module docstring's
        rule picks the separator and the padding token from them."""
        self.path = folder
        self._json = text
        self.sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
        try:
            self._special = tokenizers.Tokenizer.from_str(text)  # maps special-token literals to their ids
            self._plain = tokenizers.Tokenizer.from_str(text)
        except Exception as err:  # tokenizers raises a bare Exception on a bad file
            raise UserError(f"{folder / 'tokenizer.json'}: not a valid tokenizer ({err})") from err
        self._plain.encode_special_tokens = True  # literals are plain text
        self._names = (eos, pad, bos)
        known = [t for t in (eos, EOS, bos) if t is not None and self._special.token_to_id(t) is not None]
        if not known:
            raise UserError(
                f"{folder}: tokenizer has no token to end documents with (no eos_token in "
                f"tokenizer_config.json, no {EOS}, no bos_token)"
            )
        self.eos_token = known[0]
        pads = [
            t
            for t in (pad, PAD)
            if t not in (None, self.eos_token) and self._special.token_to_id(t) is not None
        ]
        self.pad_token = pads[0] if pads else None
        self.bos_token = bos if bos is not None and self._special.token_to_id(bos) is not None else None
        self.eos_id = self._special.token_to_id(self.eos_token)
        self.pad_id = None if self.pad_token is None else self._special.token_to_id(self.pad_token)
        self.bos_id = None if self.bos_token is None else self._special.token_to_id(self.bos_token)
        self._batch = getattr(self._plain, "encode_batch_fast", self._plain.encode_batch)
        self._batch_special = getattr(self._special, "encode_batch_fast", self._special.encode_batch)

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included (the model's embedding rows)."""
        return self._plain.get_vocab_size(with_added_tokens=True)

    @property
    def special_tokens(self) -> dict[str, int]:
        return {t.content: i for i, t in self._plain.get_added_tokens_decoder().items() if t.special}

    @property
    def report(self) -> dict | None:
        """The training report saved next to the tokenizer, if any."""
        file = self.path / "report.json"
        return _read_json(file) if file.exists() else None

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        tok = self._special if allow_special else self._plain
        return tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], allow_special: bool = False) -> list[list[int]]:
        """Encode many texts in parallel (Rust threads), without computing offsets."""
        batch = self._batch_special if allow_special else self._batch
        return [e.ids for e in batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._plain.decode(list(ids), skip_special_tokens=False)

    def token_byte_lengths(self) -> list[int]:
        """UTF-8 bytes each id decodes to; 0 for special tokens (for bits-per-byte metrics).

        In a byte-level BPE each character of a token's string stands for exactly one byte. In a
        SentencePiece-style vocabulary (Llama 2, Mistral) a token is text with "▁" for a space, or a
        byte-fallback token <0xNN> of one byte.
        """
        lengths = [0] * self.vocab_size
        special = set(self.special_tokens)
        byte_level = isinstance(self._plain.decoder, decoders.ByteLevel)
        for token, i in self._plain.get_vocab(with_added_tokens=True).items():
            if token in special:
                lengths[i] = 0
            elif byte_level:
                lengths[i] = len(token)
            else:
                lengths[i] = (
                    1 if BYTE_TOKEN.match(token) else len(token.replace("\u2581", " ").encode("utf-8"))
                )
        return lengths

    def token_to_id(self, token: str) -> int | None:
        return self._special.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self._special.id_to_token(i)

    def __getstate__(self) -> dict:  # tokenizers' own pickling drops `encode_special_tokens`
        return {"path": str(self.path), "json": self._json, "names": self._names}

    def __setstate__(self, state: dict) -> None:
        self._setup(Path(state["path"]), state["json"], *state["names"])

    def __repr__(self) -> str:
        return f"Tokenizer({str(self.path)!r}, vocab_size={self.vocab_size}, eos_id={self.eos_id}, pad_id={self.pad_id})"


def load_tokenizer(folder: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer folder written by `save_tokenizer`, or a Hugging Face model's (tokenizer.json and
    tokenizer_config.json; the module docstring's rule for its separator and padding); a `UserError` if it
    is missing or broken."""
    return Tokenizer(folder)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _token_str(value) -> str | None:
    if isinstance(value, dict):  # transformers may save {"content": ..., "lstrip": ...}
        value = value.get("content")
    return value if isinstance(value, str) and value else None


# ---------------------------------------------------------------- building and training


def build_tokenizer(pattern: str = "gpt2") -> tokenizers.Tokenizer:
    """An untrained byte-level BPE: regex split, bytes mapped to symbols, ByteLevel decoder, no normalizer."""
    regex = PATTERNS.get(pattern, pattern)
    try:
        split = pre_tokenizers.Split(tokenizers.Regex(regex), behavior="isolated")
    except Exception as err:  # tokenizers raises a bare Exception on a bad regex
        raise UserError(f"invalid pre-tokenization pattern {pattern!r}: {err}") from err
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def check_special_tokens(extra: Sequence[str]) -> list[str]:
    """All special tokens in id order: eos, pad, then `extra`; a `UserError` for a bad one."""
    specials = [EOS, PAD, *extra]
    for token in extra:
        if not _SPECIAL_RULE.match(token) or len(token) < 3:
            raise UserError(
                f"special token {token!r} could collide with normal text: it must look like <name> or "
                "[name] (at least 3 characters, no whitespace)"
            )
    duplicates = sorted({t for t in specials if specials.count(t) > 1})
    if duplicates:
        raise UserError(f"special token {duplicates[0]!r} given twice ({EOS} and {PAD} are always included)")
    return specials


def train_bpe(
    texts: Iterable[str], vocab_size: int, min_frequency: int, pattern: str, specials: list[str]
) -> tokenizers.Tokenizer:
    """Train a byte-level BPE on `texts` (streamed), `specials` first (`check_special_tokens`).

    A `UserError` when a merge rebuilds a special token from its literal text."""
    tok = build_tokenizer(pattern)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte, seen or not: lossless
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    _check_no_merge_makes_special(tok, specials)
    return tok


def _check_no_merge_makes_special(tok: tokenizers.Tokenizer, specials: list[str]) -> None:
    """A custom pattern could let merges rebuild a special token from its literal text: refuse that."""
    tok.encode_special_tokens = True
    try:
        for i, token in enumerate(specials):
            if i in tok.encode(token, add_special_tokens=False).ids:
                raise UserError(
                    f"special token {token!r} is also learned from plain text (the corpus contains it "
                    "and the pattern keeps it whole); use a pattern that splits it or a different token"
                )
    finally:
        tok.encode_special_tokens = False


# ---------------------------------------------------------------- saving


def check_output_folder(output: Path, overwrite: bool) -> None:
    """Refuse an `output` holding anything the kit did not write, or a tokenizer unless `overwrite`."""
    if not output.exists() or (output.is_dir() and not any(output.iterdir())):
        return
    foreign = _foreign_entries(output)
    if foreign:
        held = ", ".join(foreign[:3])
        raise UserError(
            f"{output}: exists and is not a tokenizer folder written by lit-llm (it holds {held}); choose another --output"
        )
    if not overwrite:
        raise UserError(f"{output}: a tokenizer is already there (pass --overwrite true to replace it)")


def _foreign_entries(output: Path) -> list[str]:
    """What in `output` the kit did not write (all of it when it is a file): never replaced by --overwrite."""
    if not output.is_dir():
        return [output.name]
    names = sorted(p.name for p in output.iterdir())
    if "report.json" not in names or "tokenizer.json" not in names:
        return names  # not a folder the kit finished writing
    return [n for n in names if n not in TOKENIZER_FILES]


def save_tokenizer(tok: tokenizers.Tokenizer, output: Path, specials: list[str], report: dict) -> Tokenizer:
    """Write the folder atomically (a temporary sibling folder, then a rename) and load it.

    `report` gets the sha256 of tokenizer.json; an existing `output` (see `check_output_folder`) is replaced.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the final folder gets the usual mode
    try:
        tok.save(str(tmp / "tokenizer.json"), pretty=True)
        report["sha256"] = hashlib.sha256((tmp / "tokenizer.json").read_bytes()).hexdigest()
        for name, data in [*_transformers_files(specials).items(), ("report.json", report)]:
            (tmp / name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if output.exists():
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            output.rename(old)
            tmp.rename(output)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            tmp.rename(output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Tokenizer(output)


def _transformers_files(specials: list[str]) -> dict[str, dict]:
    """tokenizer_config.json and special_tokens_map.json, for `AutoTokenizer.from_pretrained`."""
    special_map = {"eos_token": EOS, "pad_token": PAD}
    if specials[2:]:
        special_map["additional_special_tokens"] = specials[2:]
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special_map,
        "bos_token": None,
        "unk_token": None,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,  # keep decode lossless in transformers
        # no token_type_ids: a causal LM's forward (and so `generate(**tokenizer(...))`) rejects them
        "model_input_names": ["input_ids", "attention_mask"],
    }
    return {"tokenizer_config.json": config, "special_tokens_map.json": special_map}
