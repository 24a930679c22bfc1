"""A data recipe: what `lit-llm data prepare` reads and how it filters, deduplicates, splits and shards.

    # configs/data/NAME.yaml (every key is also a flag of `lit-llm data prepare`)
    sources:
      - {name: stdlib, paths: ["{stdlib}"], kind: code, weight: 0.7, max_chars: 4000000}
      - {name: shakespeare, paths: [../shared/data/tinyshakespeare/input.txt], optional: true}
    split: {val_fraction: 0.01, max_doc_chars: 50000}
    dedup: {exact: true, minhash: {bands: 14, rows: 8}}
    filters: {c4: {enabled: false}}
    decontaminate: {extra_files: [my_eval.jsonl]}   # MMLU, GSM8K, HumanEval are checked by default
    shard_tokens: 50000000

Each source is a `lit_llm.data.sources.Source`, with three recipe conveniences: path placeholders
(`{stdlib}` is the running interpreter's standard library, `$VAR`/`~` expand), `optional: true` (a
source whose paths are all missing is skipped and listed in the manifest, so one recipe serves
machines with and without some local data) and `max_chars` (read about that many characters: a
deterministic hash sample of documents). `Recipe` is the resolved, output-affecting part of a run;
its sha256 is stored in the folder so a run with another recipe refuses to mix into it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field

from lit_llm.data.decontaminate import DecontaminationPlan
from lit_llm.data.dedup import DedupConfig
from lit_llm.data.filters import FilterConfig
from lit_llm.data.sources import Source, path_exists, to_source
from lit_llm.errors import UserError

FORMAT_VERSION = 1
_SAFE_NAME = re.compile(r"[^\w.-]+")


@dataclass
class SplitConfig:
    """Train/validation split, by document."""

    val_fraction: float = 0.01
    """Fraction of documents held out: those with xxh3_64(text, seed) / 2^64 < val_fraction.
    At least one document goes to validation when there are two or more."""
    seed: int = 0
    """Seed of the split hash."""
    max_doc_chars: int | None = 50_000
    """Documents longer than this are cut into blocks of at most this many characters, at blank
    lines (paragraphs) where possible, else at line ends, before filtering: a single huge text file
    still gets a validation set, and blocks stay within the filters' length limits. null: never cut."""
    allow_empty_val: bool = False
    """Accept a folder without validation data (training then never validates). By default an empty
    validation split fails the run, naming the source and the filters that emptied it."""

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise UserError(f"split.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.max_doc_chars is not None and self.max_doc_chars < 1000:
            raise UserError(f"split.max_doc_chars must be >= 1000 (or null), got {self.max_doc_chars}")


@dataclass
class Recipe:
    """The resolved, output-affecting settings of a run (stored in the folder and the manifest)."""

    sources: list[Source]
    filters: FilterConfig = field(default_factory=FilterConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    shard_tokens: int = 50_000_000
    chunk_chars: int = 32_000_000
    natural_weights: bool = False  # weights = training-token shares (the `--input` case)
    decontaminate: DecontaminationPlan = field(default_factory=DecontaminationPlan)
    """Benchmark files found and their sha256 (off unless resolved): a change to them changes the hash."""
    skipped_sources: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.shard_tokens < 1 or self.chunk_chars < 1:
            raise UserError("shard_tokens and chunk_chars must be >= 1")
        if not self.sources:
            raise UserError("no sources: pass --input PATH ... or a recipe with `sources:`")
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise UserError(f"two sources are named {dup[0]!r}; give each source a unique name")
        if len(self.sources) > 65535:
            raise UserError("more than 65535 sources")

    @property
    def hash_split(self) -> bool:
        """True when documents of "auto" sources are split by hash (no source has split: val)."""
        return not any(s.split == "val" for s in self.sources)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    def sha256(self) -> str:
        settings = self.to_dict()
        settings["split"].pop("allow_empty_val")  # a check, not an output-affecting setting
        text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(f"{FORMAT_VERSION}:{text}".encode()).hexdigest()


def resolve_sources(sources: list[Source]) -> tuple[list[Source], list[dict]]:
    """Drop the missing paths of optional sources (and optional sources with none left).
    Return (the sources to read, validation sources first; the skipped ones with the reason)."""
    kept, skipped = [], []
    for src in sources:
        if src.optional and src.kind != "hf":
            present = [p for p in src.paths if path_exists(p)]
            if not present:
                skipped.append({"name": src.name, "paths": src.paths, "reason": "optional, paths not found"})
                continue
            src = Source(**{**asdict(src), "paths": present})
        kept.append(src)
    kept.sort(key=lambda s: s.split != "val")  # stable: validation sources first
    return kept, skipped


def natural_sources(inputs: list[str], text_field: str) -> list[Source]:
    """One source per `--input` (names from the paths, made unique)."""
    sources, seen = [], set()
    for item in inputs:
        src = to_source(item)
        src.text_field = text_field
        base, n = src.name, 2
        while src.name in seen:
            src.name, n = f"{base}-{n}", n + 1
        seen.add(src.name)
        sources.append(src)
    return sources


def file_stem(name: str) -> str:
    """A source name made safe for shard file names."""
    return _SAFE_NAME.sub("_", name).strip("._") or "source"


def describe_change(old: dict, new: dict) -> str:
    """The top-level recipe keys (and source names) that differ, for the refusal message."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if "sources" in keys:
        names = {s.get("name") for s in old.get("sources", [])} ^ {
            s.get("name") for s in new.get("sources", [])
        }
        keys[keys.index("sources")] = (
            f"sources ({', '.join(sorted(names))})" if names else "sources (settings)"
        )
    return ", ".join(keys) or "format version"


def absolute_paths(src: Source) -> Source:
    """The source with absolute paths (the recipe hash then names the files, not the working directory)."""
    if src.kind == "hf":
        return src
    return Source(**{**asdict(src), "paths": [os.path.abspath(p) for p in src.paths]})
