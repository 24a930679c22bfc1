"""`PrepareConfig`: every setting of `lit-llm data prepare`, written once. The command's flags, the
keyword arguments of `prepare_dataset` and the keys of a recipe YAML (configs/data/*.yaml) are its
fields; `build_recipe` resolves one into the `Recipe` a run works from.

    cfg = PrepareConfig(input=["corpus/"], tokenizer="tok", output="data/mine")
    recipe = build_recipe(cfg)   # sources resolved, missing paths fail here
"""

from __future__ import annotations

import dataclasses

from lit_llm.data.decontaminate import DecontaminateConfig, resolve_plan
from lit_llm.data.dedup import DedupConfig
from lit_llm.data.filters import FilterConfig
from lit_llm.data.recipe import (
    Recipe,
    Source,
    SplitConfig,
    absolute_paths,
    natural_sources,
    resolve_sources,
    to_source,
)
from lit_llm.data.sources import source_files
from lit_llm.errors import UserError


@dataclasses.dataclass
class PrepareConfig:
    """Raw sources -> a folder of filtered, deduplicated, tokenized shards with a manifest."""

    input: list[str] | str | None = None
    """Files, directories or globs, one source each ("KIND:PATH" picks the reader, e.g.
    "code:src/"); mixture weights follow their token counts. Or use a recipe's `sources`."""
    tokenizer: str | None = None
    """Tokenizer folder (`lit-llm tokenizer train`), or a Hugging Face model's folder or Hub id (owner/name:
    its tokenizer files; documents end with its eos_token, see docs/continued_pretraining.md); copied into
    the output folder."""
    output: str | None = None
    """Output folder (manifest.json, train/, val/, tokenizer/, rejected/, prepare.log)."""
    sources: list[Source] | None = None
    """Recipe sources (YAML list: paths, name, kind, weight, filters, split, optional,
    max_chars, text_field, ...); `{stdlib}` in a path is Python's standard library."""
    val_input: list[str] | str | None = None
    """Validation files: they replace the hash split (every other document trains)."""
    filters: FilterConfig | None = None
    """Quality filters, each with `enabled` and thresholds (e.g. --filters.c4.enabled false)."""
    dedup: DedupConfig | None = None
    """Exact and MinHash near-duplicate removal across all sources."""
    decontaminate: DecontaminateConfig | None = None
    """Benchmark decontamination (on by default when benchmark files are found): documents sharing a
    word 13-gram with an MMLU, GSM8K or HumanEval test item are removed (e.g. --decontaminate.enabled false)."""
    split: SplitConfig | None = None
    """Train/validation split: val_fraction, seed, max_doc_chars (long documents become blocks)."""
    shard_tokens: int = 50_000_000
    """Tokens per shard (a shard ends at the first document boundary past this)."""
    chunk_chars: int = 32_000_000
    """Characters per unit of resumable work (a re-run skips finished chunks)."""
    text_field: str = "text"
    """JSON/Parquet field with the text, for --input and --val_input."""
    num_workers: int | None = None
    """Worker processes (default: the CPU cores available; 0 = in this process)."""
    num_tasks: int | None = None
    """Split the input over this many tasks by file (default: SLURM_ARRAY_TASK_COUNT or 1);
    with more than one, run `lit-llm data merge` after all of them."""
    task_index: int | None = None
    """This task's index (default: SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN, or 0)."""
    strict: bool = False
    """Fail on malformed input lines and binary files instead of skipping and logging them."""
    overwrite: bool = False
    """Replace a folder prepared with another recipe or tokenizer."""
    keep_parts: bool = False
    """Keep the per-task chunk files in OUTPUT/.work after the merge."""
    progress: bool = True
    """Show progress bars and print a summary."""


def build_recipe(cfg: PrepareConfig) -> Recipe:
    """Resolve inputs or recipe sources (+ validation input) into a `Recipe`; missing paths fail here.
    `cfg.sources` may also hold plain `Source`s or dicts."""
    if cfg.input and cfg.sources:
        raise UserError("give either --input or a recipe's sources, not both")
    inputs = [cfg.input] if isinstance(cfg.input, str) else cfg.input
    val_input = [cfg.val_input] if isinstance(cfg.val_input, str) else cfg.val_input
    srcs = (
        natural_sources(list(inputs), cfg.text_field) if inputs else [to_source(s) for s in cfg.sources or []]
    )
    if val_input:
        if any(s.name == "val" for s in srcs):
            raise UserError("a source is already named 'val'; rename it to use --val_input")
        srcs.append(Source(paths=list(val_input), name="val", split="val", text_field=cfg.text_field))
    resolved, skipped = resolve_sources(srcs)
    if not resolved and skipped:
        raise UserError(
            f"no sources: every source is optional and missing ({', '.join(s['name'] for s in skipped)})"
        )
    resolved = [absolute_paths(s) for s in resolved]
    for src in resolved:
        if src.kind != "hf":
            source_files(src)  # a missing path or an empty directory is a UserError now, not mid-run
    return Recipe(
        sources=resolved,
        filters=cfg.filters or FilterConfig(),
        dedup=cfg.dedup or DedupConfig(),
        split=cfg.split or SplitConfig(),
        shard_tokens=cfg.shard_tokens,
        chunk_chars=cfg.chunk_chars,
        natural_weights=bool(inputs),
        decontaminate=resolve_plan(cfg.decontaminate or DecontaminateConfig()),
        skipped_sources=skipped,
    )
