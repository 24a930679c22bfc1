"""The kit's tokenizer: train a byte-level BPE (HF `tokenizers`), save it for `transformers`, load it.

    lit-llm tokenizer train --input data/books --vocab_size 32000 --output tokenizers/books
    lit-llm tokenizer train --input '[data/web.jsonl.zst, "code:/usr/lib/python3.11"]' --output tok

    from lit_llm.tokenizer import load_tokenizer
    tok = load_tokenizer("tokenizers/books")
    ids = tok.encode("Hello world") + [tok.eos_id]

An input is a file, a directory or a glob read by `lit_llm.data.sources` (the pipeline's readers);
prefix it with a kind ("code:DIR", "jsonl:FILE", "hf:NAME") to choose the reader yourself.

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
- Streaming: documents are cut into line-aligned blocks of at most 4K characters and fed
  to `train_from_iterator` from a generator, so memory holds the word counts, not the corpus.
  `max_chars` keeps a deterministic, evenly spread sample of blocks (a hash of document id
  and block index against a rate estimated from file sizes), and a hash-chosen 1% of blocks
  is held out of training to measure bytes per token.
- Output: tokenizer.json, tokenizer_config.json, special_tokens_map.json and report.json,
  written to a temporary folder and renamed into place. The same inputs and options give a
  byte-identical tokenizer.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from lit_llm.data.sources import KINDS, ReadStats, SourceSpec, iter_documents, source_files
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
BLOCK_CHARS = 4096  # documents reach the trainer in line-aligned blocks of at most this many characters
HELD_OUT_MAX_CHARS = 2_000_000  # the held-out sample kept in memory for bytes/token
# Characters per byte on disk, to estimate a corpus' size from its files for `max_chars` sampling.
_SIZE_FACTORS = {".gz": 4.0, ".zst": 4.0, ".parquet": 3.0}
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
        self._setup(
            folder, text, _token_str(config.get("eos_token"), EOS), _token_str(config.get("pad_token"), PAD)
        )

    def _setup(self, folder: Path, text: str, eos: str, pad: str) -> None:
        self.path = folder
        self._json = text
        self.sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
        try:
            self._special = tokenizers.Tokenizer.from_str(text)  # maps special-token literals to their ids
            self._plain = tokenizers.Tokenizer.from_str(text)
        except Exception as err:  # tokenizers raises a bare Exception on a bad file
            raise UserError(f"{folder / 'tokenizer.json'}: not a valid tokenizer ({err})") from err
        self._plain.encode_special_tokens = True  # literals are plain text
        self.eos_token, self.pad_token = eos, pad
        self.eos_id = self._special.token_to_id(eos)
        self.pad_id = self._special.token_to_id(pad)
        if self.eos_id is None or self.pad_id is None:
            raise UserError(f"{folder}: tokenizer has no {eos if self.eos_id is None else pad} token")
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

        In a byte-level BPE each character of a token's string stands for exactly one byte.
        """
        lengths = [0] * self.vocab_size
        special = set(self.special_tokens)
        for token, i in self._plain.get_vocab(with_added_tokens=True).items():
            lengths[i] = 0 if token in special else len(token)
        return lengths

    def token_to_id(self, token: str) -> int | None:
        return self._special.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self._special.id_to_token(i)

    def __getstate__(self) -> dict:  # tokenizers' own pickling drops `encode_special_tokens`
        return {"path": str(self.path), "json": self._json, "eos": self.eos_token, "pad": self.pad_token}

    def __setstate__(self, state: dict) -> None:
        self._setup(Path(state["path"]), state["json"], state["eos"], state["pad"])

    def __repr__(self) -> str:
        return f"Tokenizer({str(self.path)!r}, vocab_size={self.vocab_size}, eos_id={self.eos_id}, pad_id={self.pad_id})"


def load_tokenizer(folder: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer folder written by `train_tokenizer`; a `UserError` if it is missing or broken."""
    return Tokenizer(folder)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _token_str(value, default: str) -> str:
    if isinstance(value, dict):  # transformers may save {"content": ..., "lstrip": ...}
        value = value.get("content")
    return value if isinstance(value, str) and value else default


# ---------------------------------------------------------------- building blocks


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


def parse_input(item: str | SourceSpec, text_field: str = "text") -> SourceSpec:
    """A source from "PATH" or "KIND:PATH" (e.g. "code:/usr/lib/python3.11", "hf:user/data")."""
    if isinstance(item, SourceSpec):
        return item
    kind, sep, rest = str(item).partition(":")
    if sep and kind in KINDS and rest:
        return SourceSpec(paths=[rest], kind=kind, text_field=text_field)
    return SourceSpec(paths=[str(item)], text_field=text_field)


def _blocks(text: str, size: int = BLOCK_CHARS) -> Iterator[str]:
    """Cut text into pieces of at most `size` characters, at a newline where there is one."""
    start, n = 0, len(text)
    while start < n:
        end = min(n, start + size)
        if end < n:
            newline = text.rfind("\n", start, end)
            end = newline + 1 if newline > start else end
        yield text[start:end]
        start = end


def _doc_key(doc) -> str:
    """A document's id without the folder its files sit in, so that sampling and the held-out
    split (and so tokenizer.json) do not change when the same corpus is given by another path."""
    if "relpath" in doc.meta:
        return doc.meta["relpath"]
    if "path" in doc.meta:
        return doc.id.replace(str(Path(doc.meta["path"]).parent), "", 1)
    return doc.id


def _unit(key: str) -> tuple[float, float]:
    """Two independent uniform numbers in [0, 1) from a key: (held-out draw, sample draw)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return int.from_bytes(digest[:8], "little") / 2**64, int.from_bytes(digest[8:], "little") / 2**64


def estimate_chars(specs: Sequence[SourceSpec]) -> int | None:
    """Rough corpus size in characters from file sizes (no reading); None when unknown (hub data)."""
    total = 0.0
    for spec in specs:
        if spec.kind == "hf":
            return None
        for path, _ in source_files(spec):
            factor = next((f for ext, f in _SIZE_FACTORS.items() if path.name.lower().endswith(ext)), 1.0)
            total += path.stat().st_size * factor
    return int(total)


# ---------------------------------------------------------------- training


@dataclass
class _Feed:
    """The generator state while streaming documents into the trainer."""

    specs: list[SourceSpec]
    specials: list[str]
    max_chars: int | None
    held_out_fraction: float
    sample_rate: float
    progress: bool
    strict: bool
    stats: ReadStats = field(default_factory=ReadStats)
    chars_trained: int = 0
    blocks_trained: int = 0
    held_out: list[str] = field(default_factory=list)
    held_out_chars: int = 0
    fallback: list[str] = field(default_factory=list)  # a training sample, when nothing is held out
    fallback_chars: int = 0
    literals: dict[str, int] = field(default_factory=dict)

    def blocks(self, total: int | None) -> Iterator[str]:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="char", unit_scale=True, desc="reading", disable=not self.progress)
        try:
            for spec in self.specs:
                for doc in iter_documents(spec, self.stats, strict=self.strict):
                    bar.update(len(doc.text))
                    for k, block in enumerate(_blocks(doc.text)):
                        if self._keep(f"{doc.source}\0{_doc_key(doc)}\0{k}", block):
                            yield block
                        if self.max_chars is not None and self.chars_trained >= self.max_chars:
                            return
        finally:
            bar.close()

    def _keep(self, key: str, block: str) -> bool:
        held, sample = _unit(key)
        if held < self.held_out_fraction and self.held_out_chars < HELD_OUT_MAX_CHARS:
            self.held_out.append(block)
            self.held_out_chars += len(block)
            return False
        if sample >= self.sample_rate:
            return False
        self.chars_trained += len(block)
        self.blocks_trained += 1
        if self.fallback_chars < HELD_OUT_MAX_CHARS // 4:
            self.fallback.append(block)
            self.fallback_chars += len(block)
        for token in self.specials:
            if token in block:
                self.literals[token] = self.literals.get(token, 0) + block.count(token)
        return True


def train_tokenizer(
    inputs: Sequence[str | SourceSpec],
    output: str | os.PathLike,
    vocab_size: int = 32_000,
    min_frequency: int = 2,
    max_chars: int | None = None,
    pattern: str = "gpt2",
    special_tokens: Sequence[str] = (),
    held_out_fraction: float = 0.01,
    text_field: str = "text",
    overwrite: bool = False,
    strict: bool = False,
    progress: bool = True,
) -> Tokenizer:
    """Train a byte-level BPE on `inputs` and write it to the folder `output`; return it loaded.

    Arguments are those of `train_command`; `inputs` may also hold `SourceSpec`s (their mixture
    weights do not apply here: the trainer counts every source's text once). The report (also in
    `output/report.json`) is printed and available as `Tokenizer.report`.
    """
    started = time.perf_counter()
    output = Path(output)
    specials = check_special_tokens(list(special_tokens))
    if vocab_size < 256 + len(specials):
        raise UserError(
            f"vocab_size {vocab_size} is too small: the 256 byte symbols and {len(specials)} special tokens "
            f"need at least {256 + len(specials)}"
        )
    if not 0 <= held_out_fraction < 0.5:
        raise UserError(f"held_out_fraction must be in [0, 0.5), got {held_out_fraction}")
    if max_chars is not None and max_chars <= 0:
        raise UserError(f"max_chars must be > 0, got {max_chars}")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        foreign = _foreign_entries(output)
        if foreign:
            held = ", ".join(foreign[:3])
            raise UserError(
                f"{output}: exists and is not a tokenizer folder written by lit-llm (it holds {held}); choose another --output"
            )
        if not overwrite:
            raise UserError(f"{output}: a tokenizer is already there (pass --overwrite true to replace it)")
    if not inputs:
        raise UserError("no input given")
    specs = [parse_input(item, text_field) for item in inputs]
    total = estimate_chars(specs)
    rate = 1.0 if max_chars is None or not total else min(1.0, max_chars / (total * (1 - held_out_fraction)))
    feed = _Feed(specs, specials, max_chars, held_out_fraction, rate, progress, strict)
    tok = _train(feed.blocks(total), pattern, vocab_size, min_frequency, specials)
    if feed.chars_trained == 0 and feed.held_out:  # a tiny corpus whose every block was drawn for held-out
        feed.fallback, feed.held_out = feed.held_out, []
        feed.chars_trained = sum(map(len, feed.fallback))
        tok = _train(feed.fallback, pattern, vocab_size, min_frequency, specials)
    if feed.chars_trained == 0:
        sources = ", ".join(map(str, inputs))
        raise UserError(f"empty corpus: no text to train on in {sources} ({_read_summary(feed.stats)})")
    train_seconds = time.perf_counter() - started
    _check_no_merge_makes_special(tok, specials)
    report = _report(tok, feed, specials, vocab_size, min_frequency, pattern, max_chars, train_seconds)
    _save(tok, output, specials, report, overwrite)
    loaded = Tokenizer(output)
    print(_format_report(report, output))
    return loaded


def _train(blocks: Iterable[str], pattern: str, vocab_size: int, min_frequency: int, specials: list[str]):
    tok = build_tokenizer(pattern)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte, seen or not: lossless
        show_progress=False,
    )
    tok.train_from_iterator(blocks, trainer=trainer)
    return tok


def _read_summary(stats: ReadStats) -> str:
    skipped = sum(stats.skipped_files.values())
    return f"{stats.files} files read, {stats.documents} documents, {skipped} files skipped"


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


def _report(tok, feed: _Feed, specials, vocab_size, min_frequency, pattern, max_chars, seconds) -> dict:
    held_out = bool(feed.held_out)
    sample = feed.held_out if held_out else feed.fallback
    tokens = sum(len(e.ids) for e in tok.encode_batch([*sample], add_special_tokens=False))
    nbytes = sum(len(s.encode("utf-8")) for s in sample)
    return {
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "requested_vocab_size": vocab_size,
        "bytes_per_token": round(nbytes / tokens, 4) if tokens else None,
        "bytes_per_token_sample": {
            "held_out": held_out,
            "blocks": len(sample),
            "bytes": nbytes,
            "tokens": tokens,
        },
        "train_seconds": round(seconds, 3),
        "special_tokens": {t: i for i, t in enumerate(specials)},
        "eos_id": tok.token_to_id(EOS),
        "pad_id": tok.token_to_id(PAD),
        "special_token_literals_in_corpus": feed.literals,
        "pattern": pattern if pattern in PATTERNS else "custom",
        "pattern_regex": PATTERNS.get(pattern, pattern),
        "min_frequency": min_frequency,
        "max_chars": max_chars,
        "sample_rate": round(feed.sample_rate, 6),
        "chars_trained": feed.chars_trained,
        "blocks_trained": feed.blocks_trained,
        "read": feed.stats.as_dict(),
        "tokenizers_version": tokenizers.__version__,
    }


def _format_report(report: dict, output: Path) -> str:
    lines = [
        f"tokenizer saved to {output}",
        f"  vocab size       {report['vocab_size']} (requested {report['requested_vocab_size']})",
        f"  trained on       {report['chars_trained']:,} chars, {report['read']['documents']:,} documents",
        f"  bytes per token  {report['bytes_per_token']} "
        f"({'held-out' if report['bytes_per_token_sample']['held_out'] else 'training'} sample, "
        f"{report['bytes_per_token_sample']['bytes']:,} bytes)",
        f"  training time    {report['train_seconds']:.1f} s",
    ]
    if report["vocab_size"] < report["requested_vocab_size"]:
        lines.append(
            "  note: the corpus supported fewer merges than requested (small corpus or min_frequency)"
        )
    for token, count in report["special_token_literals_in_corpus"].items():
        lines.append(f"  note: the corpus contains the literal {token} {count} times (encoded as plain text)")
    return "\n".join(lines)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "report.json")


def _foreign_entries(output: Path) -> list[str]:
    """What in `output` the kit did not write (all of it when it is a file): never replaced by --overwrite."""
    if not output.is_dir():
        return [output.name]
    names = sorted(p.name for p in output.iterdir())
    if "report.json" not in names or "tokenizer.json" not in names:
        return names  # not a folder the kit finished writing
    return [n for n in names if n not in TOKENIZER_FILES]


def _save(
    tok: tokenizers.Tokenizer, output: Path, specials: list[str], report: dict, overwrite: bool
) -> None:
    """Write the folder atomically: a temporary sibling folder, then a rename."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the final folder gets the usual mode
    try:
        tok.save(str(tmp / "tokenizer.json"), pretty=True)
        extra = specials[2:]
        special_map = {"eos_token": EOS, "pad_token": PAD}
        if extra:
            special_map["additional_special_tokens"] = extra
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **special_map,
            "bos_token": None,
            "unk_token": None,
            "add_prefix_space": False,
            "clean_up_tokenization_spaces": False,  # keep decode lossless in transformers
        }
        report["sha256"] = hashlib.sha256((tmp / "tokenizer.json").read_bytes()).hexdigest()
        for name, data in [
            ("tokenizer_config.json", config),
            ("special_tokens_map.json", special_map),
            ("report.json", report),
        ]:
            (tmp / name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if output.exists():  # checked before training: empty, or overwrite was asked for
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            output.rename(old)
            tmp.rename(output)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            tmp.rename(output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- command line


def train_command(
    input: list[str] | str,
    vocab_size: int = 32_000,
    output: str = "tokenizer",
    min_frequency: int = 2,
    max_chars: int | None = None,
    pattern: str = "gpt2",
    special_tokens: list[str] | None = None,
    held_out_fraction: float = 0.01,
    text_field: str = "text",
    overwrite: bool = False,
    strict: bool = False,
    progress: bool = True,
) -> None:
    """Train a byte-level BPE tokenizer and save it so that transformers' AutoTokenizer loads it.

    Args:
        input: Files, directories or globs; prefix one with a reader kind ("code:DIR", "jsonl:FILE",
            "hf:NAME") to choose its reader. Several: --input '[a, b]' or --input+ a --input+ b.
        vocab_size: Vocabulary size, special tokens included (at least 256 + number of special tokens).
        output: Output folder (tokenizer.json, tokenizer_config.json, special_tokens_map.json, report.json).
        min_frequency: A pair must occur at least this often to be merged.
        max_chars: Train on about this many characters, sampled evenly over the corpus (default: all).
        pattern: Pre-tokenization regex, or a preset: gpt2 (default) or gpt4 (digits in groups of 3).
        special_tokens: Extra special tokens after <|endoftext|> (id 0) and <|pad|> (id 1), like <|user|>.
        held_out_fraction: Fraction of text blocks held out of training to measure bytes per token.
        text_field: Field holding the text in JSON Lines, Parquet and hub data sets.
        overwrite: Replace an existing output folder.
        strict: Fail on a malformed JSON line or unreadable file instead of skipping it.
        progress: Show a progress bar while reading.
    """
    inputs = [input] if isinstance(input, str) else list(input)
    train_tokenizer(
        inputs,
        output,
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        max_chars=max_chars,
        pattern=pattern,
        special_tokens=special_tokens or (),
        held_out_fraction=held_out_fraction,
        text_field=text_field,
        overwrite=overwrite,
        strict=strict,
        progress=progress,
    )
