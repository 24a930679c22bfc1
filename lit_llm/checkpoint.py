"""Load a trained GPT (and its tokenizer) from a `lit-llm fit` checkpoint, without a Trainer.

from lit_llm.checkpoint import load_gpt
gpt, info = load_gpt("runs/demo/checkpoints/last.ckpt")
info.tokenizer_path, info.tokens_seen, info.global_step
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lit_llm.errors import UserError
from lit_llm.model import GPT, ModelConfig


@dataclass
class CheckpointInfo:
    path: Path
    global_step: int
    tokens_seen: int
    tokenizer_path: Path | None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or `last.ckpt` inside a run folder / its checkpoints folder."""
    path = Path(path)
    for candidate in (path, path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
        if candidate.is_file():
            return candidate
    raise UserError(
        f"{path}: no checkpoint there (give a .ckpt file or a run folder with checkpoints/last.ckpt)"
    )


def load_gpt(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[GPT, CheckpointInfo]:
    """The GPT in a LitLLM checkpoint (eval mode) and what the checkpoint says about its run."""
    file = resolve_checkpoint(path)
    try:
        ckpt = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise UserError(
            f"{file}: not a readable checkpoint ({type(err).__name__}: {str(err)[:200]})"
        ) from None
    extra = ckpt.get("lit_llm")
    if extra is None or "model_config" not in extra:
        raise UserError(f"{file}: not a lit-llm checkpoint (no model config inside)")
    gpt = GPT(ModelConfig(**extra["model_config"]))
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    state = {
        k.replace("_orig_mod.", "").replace("_checkpoint_wrapped_module.", ""): v for k, v in state.items()
    }
    gpt.load_state_dict(state)
    tokenizer = extra.get("tokenizer_path")
    info = CheckpointInfo(
        file,
        int(ckpt.get("global_step", 0)),
        int(extra.get("tokens_seen", 0)),
        Path(tokenizer) if tokenizer else None,
    )
    return gpt.eval(), info
