"""The final shards of a merge: documents of each (split, source) in global order, cut into shards of
about `shard_tokens` tokens (a shard closes at the first document boundary at or past the size). A
shard already on disk with the checksum recorded for it (by an earlier manifest for this recipe, or
by this merge's progress file .work/merged.json) is kept, not rewritten.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lit_llm.data.chunks import RunChunks, remove_temp_files
from lit_llm.data.output_folder import MERGED, WORK
from lit_llm.data.recipe import Recipe, file_stem
from lit_llm.data.shards import MANIFEST_NAME, atomic_write_bytes, sha256_file, write_shard


def write_shards(
    folder: Path,
    recipe: Recipe,
    chunks: RunChunks,
    train: np.ndarray,
    val: np.ndarray,
    state: dict,
    progress: bool,
) -> list[dict]:
    """Write (or keep) every shard of the train and val documents; return the manifest's entries."""
    for split in ("train", "val"):
        if (folder / split).is_dir():
            remove_temp_files(folder / split)
    dtype, known = np.dtype(state["dtype"]), _known_shards(folder, state)
    recs, entries, merged_path = chunks.records, [], folder / WORK / MERGED
    plans = _shard_plans(recipe, recs, train, val)
    total = int(recs["num_tokens"][train | val].sum())
    with tqdm(total=total, unit="tok", unit_scale=True, desc="write shards", disable=not progress) as bar:
        for file, split, source, part in plans:
            entry = _write_or_keep(folder / file, known.get(file), chunks, part, dtype)
            entries.append(
                {
                    "file": file,
                    "split": split,
                    "source": source,
                    **entry,
                    "num_bytes": int(recs["num_bytes"][part].sum()),
                }
            )
            known[file] = entries[-1]
            if merged_path.parent.exists():
                atomic_write_bytes(merged_path, lambda f: f.write(json.dumps(known).encode()))
            bar.update(entry["num_tokens"])
    listed = {folder / e["file"] for e in entries}
    for stale in [*folder.glob("train/*.bin"), *folder.glob("val/*.bin")]:
        if stale not in listed:
            stale.unlink()
    return entries


def _shard_plans(recipe: Recipe, recs: np.ndarray, train: np.ndarray, val: np.ndarray) -> list[tuple]:
    """(file, split, source name, document indices) of every shard, train then val, source by source."""
    plans = []
    for split, mask in (("train", train), ("val", val)):
        for s, src in enumerate(recipe.sources):
            idx = np.nonzero(mask & (recs["source"] == s))[0]
            for k, part in enumerate(_cut_into_shards(idx, recs["num_tokens"], recipe.shard_tokens)):
                plans.append((f"{split}/{file_stem(src.name)}-{k:05d}.bin", split, src.name, part))
    return plans


def _cut_into_shards(idx: np.ndarray, tokens: np.ndarray, shard_tokens: int) -> list[np.ndarray]:
    """Cut document indices into shards: each closes at the first document that reaches shard_tokens."""
    cum = np.cumsum(tokens[idx])
    out, start = [], 0
    while start < len(idx):
        base = cum[start - 1] if start else 0
        end = int(np.searchsorted(cum, base + shard_tokens, side="left")) + 1
        out.append(idx[start:end])
        start = end
    return out


def _write_or_keep(
    path: Path, old: dict | None, chunks: RunChunks, part: np.ndarray, dtype: np.dtype
) -> dict:
    """{num_tokens, num_documents, sha256} of the shard: the one on disk when it matches `old`, else written."""
    counts = {"num_tokens": int(chunks.records["num_tokens"][part].sum()), "num_documents": len(part)}
    if (
        old
        and path.exists()
        and all(old.get(k) == v for k, v in counts.items())
        and sha256_file(path) == old["sha256"]
    ):
        return {k: old[k] for k in ("num_tokens", "num_documents", "sha256")}
    return write_shard(path, [chunks.document(i) for i in part], dtype)


def _known_shards(output: Path, state: dict) -> dict:
    """Shards written earlier for this recipe (an earlier manifest or this merge's progress file)."""
    known = {}
    try:
        old = json.loads((output / MANIFEST_NAME).read_text())
        if old.get("recipe_sha256") == state["recipe_sha256"]:
            known = {s["file"]: s for s in old["shards"]}
    except (OSError, ValueError, KeyError):
        pass
    with contextlib.suppress(OSError, ValueError):
        known.update(json.loads((output / WORK / MERGED).read_text()))
    return known
