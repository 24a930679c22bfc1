"""Load a trained GPT (and its tokenizer) from a `lit-llm fit` checkpoint, without a Trainer.

from lit_llm.checkpoint import load_gpt
gpt, info = load_gpt("runs/demo/checkpoints/last.ckpt")
info.tokenizer_path, info.tokens_seen, info.global_step

Also the on-disk rules every reader and writer shares: a sharded checkpoint is a folder with meta.pt;
a replaced checkpoint waits at `.<name>.old` until the new one is in place (`move_into_place`), and
`recover_checkpoint` moves it back after a kill between the two renames.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from lit_llm.errors import UserError
from lit_llm.model import GPT, ModelConfig
from lit_llm.safe_pickle import check_sharded_checkpoint


@dataclass
class CheckpointInfo:
    path: Path
    global_step: int
    tokens_seen: int
    tokenizer_path: Path | None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or `last.ckpt` inside a run folder / its checkpoints folder (recovered from
    `.last.ckpt.old` when a save was killed between its two renames)."""
    path = Path(path)
    for candidate in (path, path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
        recover_checkpoint(candidate)
        if candidate.is_file() or is_sharded(candidate):
            return candidate
    raise UserError(
        f"{path}: no checkpoint there (give a .ckpt file or a run folder with checkpoints/last.ckpt)"
    )


SHARDED_METADATA = "meta.pt"  # what Lightning's ModelParallelStrategy writes next to the DCP shards


def is_sharded(path: Path) -> bool:
    return path.is_dir() and (path / SHARDED_METADATA).is_file()


def old_path(path: Path) -> Path:
    """Where a save that replaces `path` parks the previous checkpoint until the new one is in place."""
    return path.with_name(f".{path.name}.old")


def recover_checkpoint(path: str | Path) -> bool:
    """Move `.<name>.old` back to `name` when a save was killed between its two renames (the previous
    checkpoint moved aside, the new one not yet in place); say so in one line. True when it did."""
    path = Path(path)
    old = old_path(path)
    if path.exists() or not old.exists():
        return False
    try:
        os.replace(old, path)
    except FileNotFoundError:  # another process (another rank) moved it back first
        return False
    print(
        f"lit-llm: {path}: recovered from {old.name} (a save was killed between its two renames)",
        file=sys.stderr,
    )
    return True


def move_into_place(new: Path, path: Path) -> None:
    """Rename the finished checkpoint `new` (a file or a folder beside `path`) to `path`.

    A folder cannot replace a folder in one rename: an existing `path` is renamed to `.<name>.old` first
    and deleted once the new one is in place. A kill between the two renames leaves only `.<name>.old`,
    which `recover_checkpoint` moves back; a kill after them leaves a stale `.old` beside a whole `path`.
    """
    old = old_path(path)
    if path.exists() or path.is_symlink():
        remove_path(old)  # stale: `path` is whole
        os.replace(path, old)
        os.replace(new, path)
        remove_path(old)
    else:
        os.replace(new, path)
    _fsync_folder(path.parent)


def remove_stale(folder: Path) -> None:
    """What killed saves left in `folder`: `.<name>.tmp` (unfinished) goes; `.<name>.old` goes beside a whole
    `<name>` and is moved back where `<name>` is missing."""
    for tmp in folder.glob(".*.tmp"):
        remove_path(tmp)
    for old in folder.glob(".*.old"):
        target = folder / old.name[1 : -len(".old")]
        if not recover_checkpoint(target) and target.exists():
            remove_path(old)


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    """Make the renames in `folder` durable (POSIX: a rename is in the folder's entry list)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_checkpoint(path: str | Path) -> None:
    """Refuse, in one line, what is not a readable lit-llm checkpoint, before a loader that would raise a
    traceback (or, for a sharded folder's pickled metadata, run code) gets it. Reads no tensor data."""
    path = Path(path)
    recover_checkpoint(path)
    if not path.exists():
        raise UserError(f"{path}: checkpoint not found")
    if path.is_dir():
        if not is_sharded(path):
            raise UserError(
                f"{path}: a folder, not a checkpoint (a sharded checkpoint folder holds {SHARDED_METADATA})"
            )
        check_sharded_checkpoint(path)
        return
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises many types for truncated, empty or foreign files
        raise UserError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {str(err)[:120]})"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "lit_llm" not in ckpt:
        raise UserError(f"{path}: not a lit-llm training checkpoint (no state_dict and lit_llm entries)")


def consolidate_sharded(path: str | Path, out: str | Path | None = None) -> dict:
    """Merge a sharded (distributed checkpoint) folder into one checkpoint dict; save it to `out` if given.

    The result has the layout of a single-device Lightning checkpoint (`state_dict`,
    `optimizer_states`, loops, `lit_llm`, ...), so `load_gpt`, `lit-llm export` and a
    single-process `--ckpt_path` resume all accept it.
    """
    import tempfile

    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    path = Path(path)
    if not is_sharded(path):
        raise UserError(f"{path}: not a sharded checkpoint folder (no {SHARDED_METADATA})")
    check_sharded_checkpoint(path)  # its .metadata is a pickle that the reader below would unpickle
    with tempfile.TemporaryDirectory() as tmp:
        dcp_to_torch_save(path, Path(tmp) / "full.pt")
        shards = torch.load(Path(tmp) / "full.pt", map_location="cpu", weights_only=True)
    ckpt = torch.load(path / SHARDED_METADATA, map_location="cpu", weights_only=True)
    ckpt["state_dict"] = shards.pop("state_dict")
    ckpt["optimizer_states"] = [shards[k] for k in sorted(k for k in shards if k.startswith("optimizer_"))]
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_name(f".{out.name}.tmp")
        torch.save(ckpt, tmp_out)
        tmp_out.replace(out)
    return ckpt


def clean_parameter_name(name: str) -> str:
    """A parameter's name without the wrappers of activation checkpointing and torch.compile."""
    return name.replace("_checkpoint_wrapped_module.", "").replace("_orig_mod.", "")


def name_optimizer_state(module: torch.nn.Module, optimizer, state: dict) -> dict:
    """An optimizer state dict keyed by parameter names ("model.blocks.0.attn.q_proj.weight") instead of
    positions in the optimizer's parameter groups, as the distributed-checkpoint utilities key it.

    torch's `Optimizer.load_state_dict` matches parameters by position and accepts either key; loading a
    single-file checkpoint into a sharded run (1 -> N processes) keys positions by `module.parameters()`
    order, which is not the order of the kit's weight-decay groups: with names, every moment finds its
    parameter. A sharded (already named) state is returned as it is.
    """
    if not state.get("state") and not state.get("param_groups"):
        return state
    if any(not isinstance(k, int) for g in state["param_groups"] for k in g["params"]):
        return state
    names = {id(p): clean_parameter_name(n) for n, p in module.named_parameters()}
    in_order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    return {
        "state": {in_order[i]: v for i, v in state["state"].items()},
        "param_groups": [{**g, "params": [in_order[i] for i in g["params"]]} for g in state["param_groups"]],
    }


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict]:
    """The checkpoint dict at path (a file, a run folder or a sharded folder); a UserError if unreadable."""
    file = resolve_checkpoint(path)
    if is_sharded(file):
        return file, consolidate_sharded(file)
    try:
        return file, torch.load(file, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise UserError(
            f"{file}: not a readable checkpoint ({type(err).__name__}: {str(err)[:200]})"
        ) from None


def load_gpt(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[GPT, CheckpointInfo]:
    """The GPT in a LitLLM checkpoint (eval mode) and what the checkpoint says about its run."""
    file, ckpt = read_checkpoint(path, map_location)
    extra = ckpt.get("lit_llm")
    if extra is None or "model_config" not in extra:
        raise UserError(f"{file}: not a lit-llm checkpoint (no model config inside)")
    gpt = GPT(ModelConfig(**extra["model_config"]))
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    state = {clean_parameter_name(k): v for k, v in state.items()}
    gpt.load_state_dict(state)
    tokenizer = extra.get("tokenizer_path")
    info = CheckpointInfo(
        file,
        int(ckpt.get("global_step", 0)),
        int(extra.get("tokens_seen", 0)),
        Path(tokenizer) if tokenizer else None,
    )
    return gpt.eval(), info


def convert_command(ckpt_path: str, out: str) -> None:
    """Merge a sharded FSDP2 checkpoint folder (ModelParallelStrategy) into one single-file checkpoint.

    Args:
        ckpt_path: Sharded checkpoint folder (holds *.distcp files and meta.pt), or a run folder whose
            checkpoints/last.ckpt is one.
        out: Output .ckpt file: loadable by `lit-llm generate/export/evaluate` and resumable on one device.
    """
    file = resolve_checkpoint(ckpt_path)
    consolidate_sharded(file, out)
    print(f"consolidated {file} -> {out}")
