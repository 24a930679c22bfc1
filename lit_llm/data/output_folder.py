"""The output folder of `lit-llm data prepare`: its layout, the lock a writer holds, and the check of
a folder against a recipe and tokenizer before a run writes into it.

    OUTPUT/manifest.json, train/, val/, tokenizer/, rejected/, prepare.log    (the finished folder)
    OUTPUT/.work/state.json, recipe.pkl, merged.json, task-*/               (while running)
    OUTPUT/.lock-<name>                                                      (while a writer runs)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import shutil
import socket
from pathlib import Path

from lit_llm.data.recipe import Recipe, describe_change
from lit_llm.data.shards import MANIFEST_NAME, Shard, atomic_write_bytes, token_dtype
from lit_llm.errors import UserError
from lit_llm.tokenizer import HF_TOKENIZER_FILES, TOKENIZER_FILES

WORK = ".work"  # chunk files and run state; removed after the merge unless keep_parts
STATE = "state.json"  # in WORK: the recipe's and tokenizer's sha256 and description, the token dtype
RECIPE = "recipe.pkl"  # in WORK: the resolved Recipe, for the merge
MERGED = "merged.json"  # in WORK: shards the merge has written so far (a re-run keeps them)
LOG = "prepare.log"
REJECTED = "rejected"
OUTPUT_ENTRIES = (MANIFEST_NAME, "train", "val", "tokenizer", REJECTED, LOG, WORK)
LOCK_PREFIX = ".lock-"


def _tokenizer_info(tok) -> dict:
    """The manifest's tokenizer entry: `eos_id` ends every document, `pad_id` (null: none; windows are packed,
    never padded) is masked out of the loss; `lit_llm.tokenizer` says how a stock tokenizer's are chosen."""
    return {
        "path": "tokenizer",
        "source_path": str(Path(tok.path).resolve()),
        "sha256": tok.sha256,
        "eos_id": tok.eos_id,
        "pad_id": tok.pad_id,
        "bos_id": tok.bos_id,
        "eos_token": tok.eos_token,
        "pad_token": tok.pad_token,
        "vocab_size": tok.vocab_size,
    }


def _existing(out: Path) -> dict | None:
    """{"recipe_sha256", "recipe", "tokenizer"} of what the folder was prepared with, or None."""
    for path in (out / MANIFEST_NAME, out / WORK / STATE):
        try:
            data = json.loads(path.read_text())
            return {
                "recipe_sha256": data["recipe_sha256"],
                "recipe": data.get("config") or data.get("recipe"),
                "tokenizer": data["tokenizer"],
            }
        except (OSError, ValueError, KeyError):
            continue
    return None


def _complete(out: Path, recipe_sha: str) -> dict | None:
    """The manifest when the folder is finished for this recipe and every shard is whole, else None."""
    try:
        data = json.loads((out / MANIFEST_NAME).read_text())
        if data.get("recipe_sha256") != recipe_sha or (out / WORK).exists():
            return None
        for entry in data["shards"]:
            shard = Shard(out / entry["file"])
            if (shard.num_tokens, shard.num_documents) != (entry["num_tokens"], entry["num_documents"]):
                return None
    except (OSError, ValueError, KeyError, UserError):
        return None
    return data


@contextlib.contextmanager
def folder_lock(out: Path, name: str):
    """Hold OUT/.lock-<name> (flock) while writing: a second writer of the same part is refused at once."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{LOCK_PREFIX}{name}"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            why = f"another `lit-llm data prepare`/`merge` is writing this folder ({holder})"
            raise UserError(f"{out}: {why}; wait for it or choose another --output") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def claim_folder(out: Path, recipe: Recipe, tok, overwrite: bool) -> dict | None:
    """Check the output folder against this recipe and tokenizer and record them in it.

    Returns the manifest when the folder is already complete for them (nothing to do)."""
    sha = recipe.sha256()
    old = _existing(out)
    entries = [p for p in out.iterdir() if not p.name.startswith(LOCK_PREFIX)] if out.is_dir() else []
    if entries and old is None and not (out / WORK).exists():
        raise UserError(
            f"{out}: folder is not empty and holds no lit-llm data (no {MANIFEST_NAME}); "
            "choose another --output"
        )
    if old is not None and not overwrite:
        if old["tokenizer"].get("sha256") != tok.sha256:
            raise UserError(
                f"{out}: prepared with another tokenizer ({old['tokenizer'].get('source_path')}, sha256 "
                f"{str(old['tokenizer'].get('sha256'))[:12]}), not {tok.path} (sha256 {tok.sha256[:12]}); "
                "use a new --output or pass --overwrite true"
            )
        if old["recipe_sha256"] != sha:
            raise UserError(
                f"{out}: prepared with a different recipe (changed: "
                f"{describe_change(old['recipe'] or {}, recipe.to_dict())}); "
                "use a new --output or pass --overwrite true"
            )
        done = _complete(out, sha)
        if done is not None:
            return done
    if overwrite:
        for name in OUTPUT_ENTRIES:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    _write_state(out, recipe, tok, sha)
    return None


def _write_state(out: Path, recipe: Recipe, tok, sha: str) -> None:
    work = out / WORK
    work.mkdir(parents=True, exist_ok=True)
    state = {
        "recipe_sha256": sha,
        "recipe": recipe.to_dict(),
        "tokenizer": _tokenizer_info(tok),
        "dtype": token_dtype(tok.vocab_size).name,
    }
    atomic_write_bytes(work / STATE, lambda f: f.write(json.dumps(state, indent=1).encode()))
    atomic_write_bytes(work / RECIPE, lambda f: pickle.dump(recipe, f))
    copy = out / "tokenizer"
    copy.mkdir(exist_ok=True)
    for file in sorted(Path(tok.path).iterdir()):  # a model's folder may be the tokenizer: not its weights
        if file.is_file() and file.name in (*TOKENIZER_FILES, *HF_TOKENIZER_FILES):
            data = file.read_bytes()
            atomic_write_bytes(copy / file.name, lambda f, data=data: f.write(data))
