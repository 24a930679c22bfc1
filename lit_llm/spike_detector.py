"""SpikeDetector: is this optimizer step's loss (or gradient norm) a spike? Pure Python, no Lightning.

    detector = SpikeDetector()
    for step, (loss, grad_norm) in enumerate(curve):
        reason = detector.check(loss, grad_norm)     # a sentence, or None
        if reason is None:
            detector.observe(loss, grad_norm)        # only clean steps enter the history

Three tests, in order:
1. a non-finite loss or gradient norm is always a spike (from the first step);
2. a gross blow-up: the loss is more than `loss_ratio` times the median of the last `recent`
   clean steps (from the second step, so warm-up is covered);
3. once `min_history` clean steps exist, the statistical test: the loss is more than `loss_z`
   standard deviations above the mean of the last `window` steps and more than `loss_rise`
   above it (OLMo-core's 6 sigma over 128 steps, plus a floor that ignores wobbles on a very
   flat curve); optionally the same for the gradient norm (`grad_norm_z`).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SpikeDetector:
    """Window statistics and the spike decision; `state_dict` is plain Python (JSON and weights_only safe)."""

    window: int = 128
    """Clean steps of loss and gradient-norm history the statistics use."""
    min_history: int = 16
    """Clean steps needed before the statistical (z-score) test applies."""
    loss_z: float = 6.0
    """Statistical test: standard deviations above the window mean (0 disables the test)."""
    loss_rise: float = 0.2
    """Statistical test: and more than this fraction above the window mean."""
    loss_ratio: float = 3.0
    """Gross blow-up: loss above this multiple of the median of the last `recent` steps (0 disables)."""
    recent: int = 8
    """Steps the gross blow-up test takes its median over."""
    grad_norm_z: float | None = None
    """Statistical test on the pre-clip gradient norm too (None: loss only)."""
    grad_norm_rise: float = 2.0
    """Gradient-norm test: and more than this fraction above its window mean (heavy-tailed: 2.0 = 3x)."""
    losses: deque = field(default_factory=deque, init=False, repr=False)
    grad_norms: deque = field(default_factory=deque, init=False, repr=False)
    last_stats: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("window", "min_history", "recent"):
            if getattr(self, name) < 1:
                raise ValueError(f"SpikeDetector: {name} must be >= 1 (got {getattr(self, name)})")
        for name in ("loss_z", "loss_rise", "loss_ratio", "grad_norm_rise"):
            if getattr(self, name) < 0:
                raise ValueError(f"SpikeDetector: {name} must be >= 0 (got {getattr(self, name)})")
        if 0 < self.loss_ratio <= 1:
            raise ValueError(f"SpikeDetector: loss_ratio must be > 1 or 0 to disable (got {self.loss_ratio})")
        self.min_history = max(2, min(self.min_history, self.window))  # a standard deviation needs 2 values
        self.losses = deque(self.losses, maxlen=self.window)
        self.grad_norms = deque(self.grad_norms, maxlen=self.window)

    def check(self, loss: float, grad_norm: float | None = None) -> str | None:
        """Why this step is a spike, or None. Fills `last_stats` with the statistics of the test that ran."""
        self.last_stats = {}
        if not math.isfinite(loss):
            return f"non-finite loss {loss}"
        if grad_norm is not None and not math.isfinite(grad_norm):
            return f"non-finite gradient norm {grad_norm}"
        if self.loss_ratio and self.losses:
            level = statistics.median(list(self.losses)[-self.recent :])
            if level > 0 and loss > self.loss_ratio * level:
                self.last_stats = {"loss_recent_median": level, "loss_ratio": loss / level}
                return f"loss {loss:.4g} is {loss / level:.1f}x the median {level:.4g} of the last steps"
        reason = self._outlier("loss", loss, self.losses, self.loss_z, self.loss_rise)
        if reason is None and self.grad_norm_z is not None and grad_norm is not None:
            reason = self._outlier(
                "grad_norm", grad_norm, self.grad_norms, self.grad_norm_z, self.grad_norm_rise
            )
        return reason

    def observe(self, loss: float, grad_norm: float | None = None) -> None:
        """Add a clean step to the history (spikes never enter it)."""
        self.losses.append(float(loss))
        if grad_norm is not None:
            self.grad_norms.append(float(grad_norm))

    def _outlier(self, name: str, value: float, history: deque, z: float, rise: float) -> str | None:
        if not z or len(history) < self.min_history:
            return None
        mean = math.fsum(history) / len(history)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in history) / (len(history) - 1))
        score = (value - mean) / std if std > 0 else math.inf
        self.last_stats = {f"{name}_mean": mean, f"{name}_std": std, f"{name}_z": score}
        if score > z and value > mean * (1 + rise):
            return (
                f"{name} {value:.4g} is {score:.1f} sigma and {value / mean - 1:+.0%} above "
                f"the mean of {len(history)} steps"
            )
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "grad_norms": list(self.grad_norms)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the history with the saved one."""
        self.losses = deque((float(v) for v in state.get("losses", [])), maxlen=self.window)
        self.grad_norms = deque((float(v) for v in state.get("grad_norms", [])), maxlen=self.window)
