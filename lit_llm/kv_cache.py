"""The key/value cache for incremental decoding (`GPT.forward(idx, cache=cache)`, `GPT.generate`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from lit_llm.model import ModelConfig


class KVCache:
    """Keys and values of past positions for incremental decoding.

    Holds only the key/value heads per layer (GQA/MQA shrink it by n_head / n_kv_head; under tensor
    parallelism a rank holds its own heads only): each layer's buffers are allocated at its first
    `append`, shaped after the keys it is given. `GPT.forward(idx, cache=cache)` appends the new
    positions and advances `pos`.
    """

    def __init__(
        self,
        config: ModelConfig,
        batch_size: int,
        max_len: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.max_len = max_len or config.max_seq_len
        if self.max_len > config.max_seq_len:
            raise ValueError(f"KV cache length {self.max_len} exceeds max_seq_len={config.max_seq_len}")
        self.batch_size, self.device, self.dtype = batch_size, device, dtype
        self.keys: list[torch.Tensor | None] = [None] * config.n_layer  # (B, n_kv, T_max, hs) each
        self.values: list[torch.Tensor | None] = [None] * config.n_layer
        self.pos = 0

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, n_kv, T, hs) at the current position; return all keys/values so far."""
        end = self.pos + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: position {end} > cache length {self.max_len}")
        if self.keys[layer] is None:
            shape = (self.batch_size, k.shape[1], self.max_len, k.shape[3])
            device = self.device or k.device
            self.keys[layer] = torch.zeros(shape, device=device, dtype=self.dtype)
            self.values[layer] = torch.zeros(shape, device=device, dtype=self.dtype)
        self.keys[layer][:, :, self.pos : end] = k
        self.values[layer][:, :, self.pos : end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]
