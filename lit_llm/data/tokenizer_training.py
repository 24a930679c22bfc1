"""`lit-llm tokenizer train`: read sources, sample them and train the kit's byte-level BPE on them.

    lit-llm tokenizer train --input data/books --vocab_size 32000 --output tokenizers/books
    lit-llm tokenizer train --input '[data/web.jsonl.zst, "code:/usr/lib/python3.11"]' --output tok

    from lit_llm.data.tokenizer_training import train_tokenizer
    tok = train_tokenizer(["data/books"], "tokenizers/books", vocab_size=32_000)

An input is a file, a directory or a glob read by `lit_llm.data.sources` (the pipeline's readers);
prefix it with a kind ("code:DIR", "jsonl:FILE", "hf:NAME") to choose the reader yourself.

Streaming: documents are cut into line-aligned blocks of at most 4K characters and fed to the
trainer from a generator, so memory holds the word counts, not the corpus. `max_chars` keeps a
deterministic, evenly spread sample of blocks (a hash of document id and block index against a
rate estimated from file sizes), and a hash-chosen 1% of blocks is held out of training to measure
bytes per token. The same inputs and options give a byte-identical tokenizer.json.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import tokenizers

from lit_llm.command_options import command_options
from lit_llm.data.documents import Document, ReadStats
from lit_llm.data.sampling import key_uniform
from lit_llm.data.sources import Source, estimate_chars, iter_documents, to_source
from lit_llm.errors import UserError
from lit_llm.tokenizer import (
    EOS,
    PAD,
    PATTERNS,
    Tokenizer,
    check_output_folder,
    check_special_tokens,
    save_tokenizer,
    train_bpe,
)

BLOCK_CHARS = 4096  # documents reach the trainer in line-aligned blocks of at most this many characters
HELD_OUT_MAX_CHARS = 2_000_000  # the held-out sample kept in memory for bytes/token


@dataclass
class TokenizerTrainConfig:
    """How a tokenizer is trained: the options of `lit-llm tokenizer train` and `train_tokenizer`."""

    vocab_size: int = 32_000
    """Vocabulary size, special tokens included (at least 256 + number of special tokens)."""
    min_frequency: int = 2
    """A pair must occur at least this often to be merged."""
    max_chars: int | None = None
    """Train on about this many characters, sampled evenly over the corpus (default: all)."""
    pattern: str = "gpt2"
    """Pre-tokenization regex, or a preset: gpt2 (default) or gpt4 (digits in groups of 3)."""
    special_tokens: list[str] = field(default_factory=list)
    """Extra special tokens after <|endoftext|> (id 0) and <|pad|> (id 1), like <|user|>."""
    held_out_fraction: float = 0.01
    """Fraction of text blocks held out of training to measure bytes per token."""
    text_field: str = "text"
    """Field holding the text in JSON Lines, Parquet and hub data sets."""
    overwrite: bool = False
    """Replace an existing output folder."""
    strict: bool = False
    """Fail on a malformed JSON line or unreadable file instead of skipping it."""
    progress: bool = True
    """Show a progress bar while reading."""

    def __post_init__(self) -> None:
        self.special_tokens = list(self.special_tokens or ())
        specials = self.specials
        if self.vocab_size < 256 + len(specials):
            raise UserError(
                f"vocab_size {self.vocab_size} is too small: the 256 byte symbols and {len(specials)} "
                f"special tokens need at least {256 + len(specials)}"
            )
        if not 0 <= self.held_out_fraction < 0.5:
            raise UserError(f"held_out_fraction must be in [0, 0.5), got {self.held_out_fraction}")
        if self.max_chars is not None and self.max_chars <= 0:
            raise UserError(f"max_chars must be > 0, got {self.max_chars}")

    @functools.cached_property
    def specials(self) -> list[str]:
        """All special tokens in id order: eos, pad, then `special_tokens` (a `UserError` for a bad one)."""
        return check_special_tokens(self.special_tokens)


# ---------------------------------------------------------------- reading and sampling


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


def _doc_key(doc: Document) -> str:
    """A document's id without the folder its files sit in, so that sampling and the held-out
    split (and so tokenizer.json) do not change when the same corpus is given by another path."""
    if "relpath" in doc.meta:
        return doc.meta["relpath"]
    if "path" in doc.meta:
        return doc.id.replace(str(Path(doc.meta["path"]).parent), "", 1)
    return doc.id


@dataclass
class _Feed:
    """The generator state while streaming documents into the trainer."""

    sources: list[Source]
    config: TokenizerTrainConfig
    sample_rate: float
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

        max_chars = self.config.max_chars
        bar = tqdm(
            total=total, unit="char", unit_scale=True, desc="reading", disable=not self.config.progress
        )
        try:
            for src in self.sources:
                for doc in iter_documents(src, self.stats, strict=self.config.strict):
                    bar.update(len(doc.text))
                    for k, block in enumerate(_blocks(doc.text)):
                        if self._keep(f"{doc.source}\0{_doc_key(doc)}\0{k}", block):
                            yield block
                        if max_chars is not None and self.chars_trained >= max_chars:
                            return
        finally:
            bar.close()

    def _keep(self, key: str, block: str) -> bool:
        """Hold the block out, train on it (True) or skip it: two independent hash draws of `key`."""
        if key_uniform(key) < self.config.held_out_fraction and self.held_out_chars < HELD_OUT_MAX_CHARS:
            self.held_out.append(block)
            self.held_out_chars += len(block)
            return False
        if key_uniform(key + "\0sample") >= self.sample_rate:
            return False
        self.chars_trained += len(block)
        self.blocks_trained += 1
        if self.fallback_chars < HELD_OUT_MAX_CHARS // 4:
            self.fallback.append(block)
            self.fallback_chars += len(block)
        for token in self.config.specials:
            if token in block:
                self.literals[token] = self.literals.get(token, 0) + block.count(token)
        return True


# ---------------------------------------------------------------- training


def train_tokenizer(
    inputs: Sequence[str | Source],
    output: str | os.PathLike,
    config: TokenizerTrainConfig | None = None,
    **options,
) -> Tokenizer:
    """Train a byte-level BPE on `inputs` and write it to the folder `output`; return it loaded.

    `options` are `TokenizerTrainConfig` fields (they override `config`'s). `inputs` may also hold
    `Source`s (their mixture weights do not apply here: the trainer counts every source's text
    once). The report (also in `output/report.json`) is printed and available as `Tokenizer.report`.
    """
    started = time.perf_counter()
    config = dataclasses.replace(config, **options) if config else TokenizerTrainConfig(**options)
    output = Path(output)
    check_output_folder(output, config.overwrite)
    if not inputs:
        raise UserError("no input given")
    sources = [to_source(item, config.text_field) for item in inputs]
    total = estimate_chars(sources)
    rate = 1.0
    if config.max_chars is not None and total:
        rate = min(1.0, config.max_chars / (total * (1 - config.held_out_fraction)))
    feed = _Feed(sources, config, rate)
    tok = _train(feed, total)
    if feed.chars_trained == 0:
        sources_given = ", ".join(map(str, inputs))
        raise UserError(f"empty corpus: no text to train on in {sources_given} ({_read_summary(feed.stats)})")
    report = _report(tok, feed, time.perf_counter() - started)
    loaded = save_tokenizer(tok, output, config.specials, report)
    print(_format_report(report, output))
    return loaded


def _train(feed: _Feed, total: int | None) -> tokenizers.Tokenizer:
    """Train on the feed's blocks; on a tiny corpus whose every block was held out, on those instead."""
    cfg = feed.config
    tok = train_bpe(feed.blocks(total), cfg.vocab_size, cfg.min_frequency, cfg.pattern, cfg.specials)
    if feed.chars_trained == 0 and feed.held_out:
        feed.fallback, feed.held_out = feed.held_out, []
        feed.chars_trained = sum(map(len, feed.fallback))
        tok = train_bpe(feed.fallback, cfg.vocab_size, cfg.min_frequency, cfg.pattern, cfg.specials)
    return tok


# ---------------------------------------------------------------- report


def _read_summary(stats: ReadStats) -> str:
    skipped = sum(stats.skipped_files.values())
    return f"{stats.files} files read, {stats.documents} documents, {skipped} files skipped"


def _report(tok: tokenizers.Tokenizer, feed: _Feed, seconds: float) -> dict:
    cfg = feed.config
    held_out = bool(feed.held_out)
    sample = feed.held_out if held_out else feed.fallback
    tokens = sum(len(e.ids) for e in tok.encode_batch([*sample], add_special_tokens=False))
    nbytes = sum(len(s.encode("utf-8")) for s in sample)
    return {
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "requested_vocab_size": cfg.vocab_size,
        "bytes_per_token": round(nbytes / tokens, 4) if tokens else None,
        "bytes_per_token_sample": {
            "held_out": held_out,
            "blocks": len(sample),
            "bytes": nbytes,
            "tokens": tokens,
        },
        "train_seconds": round(seconds, 3),
        "special_tokens": {t: i for i, t in enumerate(cfg.specials)},
        "eos_id": tok.token_to_id(EOS),
        "pad_id": tok.token_to_id(PAD),
        "special_token_literals_in_corpus": feed.literals,
        "pattern": cfg.pattern if cfg.pattern in PATTERNS else "custom",
        "pattern_regex": PATTERNS.get(cfg.pattern, cfg.pattern),
        "min_frequency": cfg.min_frequency,
        "max_chars": cfg.max_chars,
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


# ---------------------------------------------------------------- command line


@command_options(TokenizerTrainConfig)
def train_command(input: list[str] | str, output: str = "tokenizer", **options) -> None:
    """Train a byte-level BPE tokenizer and save it so that transformers' AutoTokenizer loads it.

    Args:
        input: Files, directories or globs; prefix one with a reader kind ("code:DIR", "jsonl:FILE",
            "hf:NAME") to choose its reader. Several: --input '[a, b]' or --input+ a --input+ b.
        output: Output folder (tokenizer.json, tokenizer_config.json, special_tokens_map.json, report.json).
    """
    inputs = [input] if isinstance(input, str) else list(input)
    train_tokenizer(inputs, output, TokenizerTrainConfig(**options))
