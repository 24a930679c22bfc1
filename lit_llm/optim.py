"""Optimizer and learning-rate schedule of `LitLLM`: configs, parameter groups, the optimizer itself.

optimizer = build_optimizer(model, OptimizerConfig(kind="muon"))
factor = lr_factor(step, total_steps, ScheduleConfig(kind="wsd"))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from lit_llm.errors import UserError
from lit_llm.model import GPT
from lit_llm.muon import MuonAdamW


@dataclass(frozen=True)
class OptimizerConfig:
    """The optimizer: AdamW for every weight, or Muon for the blocks' matrices and AdamW for the rest.

    AdamW's weight decay applies to matrices only (not norms, biases or embeddings).
    """

    kind: Literal["adamw", "muon"] = "adamw"
    """adamw: AdamW everywhere. muon: Muon for the 2-D weights inside the blocks (attention and MLP
    matrices, muon_* settings) and AdamW (lr, weight_decay, betas, eps) for the embedding, the norms and
    the LM head. One LR schedule scales both. Muon needs whole matrices: one process or DDP."""
    lr: float = 3e-4
    """Peak learning rate of AdamW (with kind=muon: of the embedding, norms and LM head)."""
    embedding_lr: float | None = None
    """Peak learning rate of the token embedding (AdamW, no weight decay; None: lr). An untied embedding
    receives sparse, small gradients and trains well at a much higher rate than the rest."""
    weight_decay: float = 0.1
    """AdamW's decoupled weight decay on 2-D weights other than the embedding (with kind=muon: the LM head)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """Adam betas."""
    eps: float = 1e-8
    """Adam epsilon."""
    fused: bool | None = None
    """Use the fused AdamW kernel (None: when all parameters are on CUDA; else foreach). AdamW only."""
    muon_lr: float = 0.02
    """Muon's peak learning rate (scaled by sqrt(max(1, rows / cols)) per matrix with muon_adjust_lr=original)."""
    muon_weight_decay: float = 0.0
    """Muon's decoupled weight decay on the blocks' matrices."""
    muon_momentum: float = 0.95
    """Muon's (Nesterov) momentum."""
    muon_adjust_lr: Literal["original", "match_rms_adamw"] = "original"
    """original: Keller Jordan's per-matrix scale sqrt(max(1, rows / cols)); match_rms_adamw: 0.2 sqrt(max(rows,
    cols)), updates of AdamW's size (Moonshot), so AdamW's learning rate carries over to muon_lr."""
    muon_ns_dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """Precision of Muon's Newton-Schulz iterations; auto: bfloat16 on CUDA, float32 elsewhere (bfloat16
    matmuls are ~15x slower than float32 on CPUs without bfloat16 units)."""


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule, computed from the Trainer's max_steps (never from estimated_stepping_batches)."""

    kind: Literal["cosine", "wsd", "constant"] = "cosine"
    """cosine: warmup then cosine to min_lr; wsd: warmup, stable, then linear decay over decay_fraction; constant."""
    warmup_steps: int = 100
    """Linear warmup from 0 over this many optimizer steps."""
    min_lr_ratio: float = 0.1
    """Final LR as a fraction of the peak."""
    decay_fraction: float = 0.2
    """wsd only: fraction of total steps spent in the final decay."""
    total_steps: int | None = None
    """Steps the schedule spans (default: trainer.max_steps)."""
    clock: Literal["steps", "time"] = "steps"
    """steps: the schedule advances with optimizer steps over total_steps. time: it advances with whichever is
    further on, the steps or the training time elapsed over trainer.max_time, so a run bounded by wall clock
    ends its decay as its time runs out (the LR then depends on the machine's speed; warm-up stays in steps)."""


def lr_factor(step: int, total: int, cfg: ScheduleConfig, time_fraction: float | None = None) -> float:
    """Multiplier of the peak LR at optimizer step `step` (0-based) of `total` (<= 0: no step bound, clock
    "time"). With `time_fraction` (the share of trainer.max_time spent) the schedule is as far on as the
    further of the two: the smaller multiplier, since both decay."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.kind == "constant":
        return 1.0
    by_steps = decayed(decay_progress_by_steps(step, total, cfg), cfg) if total > 0 else 1.0
    if time_fraction is None:
        return by_steps
    return min(by_steps, decayed(decay_progress_by_time(time_fraction, cfg), cfg))


def decay_progress_by_steps(step: int, total: int, cfg: ScheduleConfig) -> float:
    """How far through its decay the schedule is at `step` of `total` (cosine: from the end of warm-up;
    wsd: from the last decay_fraction of the steps; negative before the decay starts)."""
    if cfg.kind == "cosine":
        return (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    decay_start = int(total * (1 - cfg.decay_fraction))
    return (step - decay_start) / max(1, total - decay_start)


def decay_progress_by_time(fraction: float, cfg: ScheduleConfig) -> float:
    """How far through its decay the schedule is when `fraction` of trainer.max_time is spent."""
    if cfg.kind == "cosine":
        return fraction
    return (fraction - (1 - cfg.decay_fraction)) / max(cfg.decay_fraction, 1e-9)


def decayed(progress: float, cfg: ScheduleConfig) -> float:
    """The multiplier `progress` (clamped to 0..1) of the way through the decay to min_lr_ratio: cosine, or
    linear (wsd)."""
    progress = min(1.0, max(0.0, progress))
    if cfg.kind == "cosine":
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0 - (1 - cfg.min_lr_ratio) * progress


def adamw_groups(model: GPT, params, cfg: OptimizerConfig) -> list[dict]:
    """Weight decay on 2-D weights except the embedding; none on norms, biases and embeddings. The embedding
    gets its own group when `embedding_lr` is set (a tied embedding is the LM head: it stays with lr)."""
    embed = model.embed.weight
    own_group = cfg.embedding_lr is not None and not model.config.tie_embeddings
    decay, no_decay, embedding = [], [], []
    for p in params:
        if p is embed:
            (embedding if own_group else no_decay).append(p)
        else:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if embedding:
        groups.append({"params": embedding, "weight_decay": 0.0, "lr": cfg.embedding_lr})
    return groups


def trainable_parameters(model: GPT) -> list[torch.nn.Parameter]:
    """Each parameter that requires a gradient once (a tied LM head is the embedding)."""
    seen, params = set(), []
    for param in model.parameters():
        if param.requires_grad and id(param) not in seen:
            seen.add(id(param))
            params.append(param)
    return params


def check_whole_matrices(params) -> None:
    """Muon orthogonalizes each matrix: refuse shards (FSDP2, tensor parallel) with one line."""
    if any(hasattr(p, "device_mesh") for p in params):
        raise UserError(
            "model.optimizer.kind=muon needs whole weight matrices, but under FSDP2 / tensor parallelism each "
            "rank holds a shard (its orthogonalization would be another matrix's); use one process or DDP, "
            "or model.optimizer.kind=adamw"
        )


def build_optimizer(model: GPT, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """AdamW over every trainable weight, or MuonAdamW (Muon for the blocks' matrices, AdamW for the rest)."""
    params = trainable_parameters(model)
    on_cuda = all(p.is_cuda for p in params)
    if cfg.kind == "adamw":
        fused = on_cuda if cfg.fused is None else cfg.fused
        return torch.optim.AdamW(
            adamw_groups(model, params, cfg),
            lr=cfg.lr,
            betas=tuple(cfg.betas),
            eps=cfg.eps,
            fused=fused or None,
            foreach=None if fused else True,
        )
    check_whole_matrices(params)
    hidden = {id(p) for block in model.blocks for p in block.parameters() if p.dim() == 2}
    muon = [p for p in params if id(p) in hidden]
    ns_dtype = cfg.muon_ns_dtype if cfg.muon_ns_dtype != "auto" else ("bfloat16" if on_cuda else "float32")
    muon_group = {
        "params": muon,
        "algorithm": "muon",
        "lr": cfg.muon_lr,
        "weight_decay": cfg.muon_weight_decay,
        "momentum": cfg.muon_momentum,
        "adjust_lr": cfg.muon_adjust_lr,
        "ns_dtype": ns_dtype,
    }
    rest = adamw_groups(model, [p for p in params if id(p) not in hidden], cfg)
    return MuonAdamW([muon_group, *rest], lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
