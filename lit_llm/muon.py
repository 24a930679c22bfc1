"""Muon for the hidden matrices and AdamW for everything else, as one torch optimizer.

Muon (Jordan et al. 2024; Liu et al. 2025, "Muon is Scalable for LLM Training") keeps a momentum
buffer per 2-D weight and steps along its orthogonalized direction: five Newton-Schulz iterations
map the (Nesterov) momentum M = U S V^T to roughly U V^T, so every direction of the update has a
similar size. Embeddings, norms and the LM head keep AdamW (they are lookups or vectors, and
orthogonalizing the head's update hurts). One optimizer holds both kinds of parameter groups, so
Lightning's automatic optimization, one LR schedule (it scales every group's `lr`), gradient
clipping, checkpoints and `load_state_dict` treat it like any other; its state has torch's layout
(`momentum_buffer` for Muon, `step`/`exp_avg`/`exp_avg_sq` for AdamW).

    groups = [
        {"params": hidden_matrices, "algorithm": "muon", "lr": 0.02, "weight_decay": 0.0},
        {"params": the_rest, "algorithm": "adamw", "lr": 3e-3, "weight_decay": 0.1},
    ]
    opt = MuonAdamW(groups)

The Muon math equals `torch.optim.Muon` (same momentum, Nesterov, coefficients and LR adjustment);
the Newton-Schulz dtype is a setting (torch fixes bfloat16, which is slow on most CPUs).
"""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer
from torch.optim.adamw import adamw

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # quintic Newton-Schulz coefficients (Keller Jordan's)
ALGORITHMS = ("muon", "adamw")
LR_ADJUSTMENTS = ("original", "match_rms_adamw")


def orthogonalize(
    matrix: torch.Tensor, steps: int = 5, eps: float = 1e-7, dtype: torch.dtype = torch.bfloat16
) -> torch.Tensor:
    """~U V^T of matrix = U S V^T by `steps` quintic Newton-Schulz iterations, computed in `dtype`;
    matrix (m, n), or a stack (k, m, n) of matrices of one shape orthogonalized each on its own.

    The iteration pushes every singular value towards [0.7, 1.2] rather than exactly 1 (its slope at
    zero is maximized, which is what training needs); the wide side goes last so X X^T is the small Gram.
    """
    a, b, c = NS_COEFFICIENTS
    x = matrix.to(dtype)
    tall = matrix.shape[-2] > matrix.shape[-1]
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    multiply_add = torch.addmm if x.ndim == 2 else torch.baddbmm
    for _ in range(steps):
        gram = x @ x.mT  # (rows, rows), rows <= cols
        x = multiply_add(
            x, multiply_add(gram, gram, gram, beta=b, alpha=c), x, beta=a
        )  # a x + (b G + c G^2) x
    return (x.mT if tall else x).to(matrix.dtype)


def adjusted_lr(lr: float, shape: torch.Size, rule: str) -> float:
    """Muon's step size for a (rows, cols) matrix: "original" scales by sqrt(max(1, rows / cols));
    "match_rms_adamw" by 0.2 sqrt(max(rows, cols)), which gives updates of AdamW's RMS (so AdamW's LR
    and weight decay carry over)."""
    rows, cols = shape[:2]
    if rule == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr * math.sqrt(max(1.0, rows / cols))


class MuonAdamW(Optimizer):
    """One optimizer over parameter groups that each say `algorithm`: "muon" (2-D weights) or "adamw"."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        adjust_lr: str = "match_rms_adamw",
        ns_dtype: str = "bfloat16",
    ) -> None:
        """Defaults for groups that do not set their own; `ns_dtype` ("bfloat16" or "float32") is the
        Newton-Schulz precision (bfloat16 as torch.optim.Muon on GPUs; float32 is faster on most CPUs)."""
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            betas=betas,
            eps=eps,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            adjust_lr=adjust_lr,
            ns_dtype=ns_dtype,
            algorithm="adamw",
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["algorithm"] not in ALGORITHMS:
                raise ValueError(
                    f"param group algorithm must be one of {ALGORITHMS}, got {group['algorithm']!r}"
                )
            if group["adjust_lr"] not in LR_ADJUSTMENTS:
                raise ValueError(f"adjust_lr must be one of {LR_ADJUSTMENTS}, got {group['adjust_lr']!r}")
            if group["algorithm"] == "muon" and any(p.ndim != 2 for p in group["params"]):
                raise ValueError("Muon param groups take 2-D weight matrices only (AdamW for the rest)")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if group["algorithm"] == "muon":
                self._muon_step(group, params)
            else:
                self._adamw_step(group, params)
        return loss

    def _muon_step(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, momentum = group["lr"], group["momentum"]
        by_shape: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            buf = state["momentum_buffer"]
            buf.lerp_(p.grad, 1 - momentum)  # B = momentum B + (1 - momentum) g
            update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
            by_shape.setdefault((tuple(p.shape), p.device, p.dtype), []).append((p, update))
        # matrices of one shape in one batched iteration: fewer, larger matmuls
        for pairs in by_shape.values():
            stacked = torch.stack([update for _, update in pairs])  # (k, rows, cols)
            directions = orthogonalize(stacked, group["ns_steps"], dtype=getattr(torch, group["ns_dtype"]))
            for (p, _), direction in zip(pairs, directions):
                p.mul_(1 - lr * group["weight_decay"])  # decoupled weight decay
                p.add_(direction, alpha=-adjusted_lr(lr, p.shape, group["adjust_lr"]))

    def _adamw_step(self, group: dict, params: list[torch.Tensor]) -> None:
        exp_avgs, exp_avg_sqs, steps = [], [], []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        beta1, beta2 = group["betas"]
        adamw(
            params,
            [p.grad for p in params],
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            foreach=None,
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )
