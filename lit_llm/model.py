"""The decoder-only transformer, in pure torch.

Reads top to bottom: config, RMSNorm, rotary embeddings, attention (MHA / GQA / MQA),
SwiGLU MLP, block, model (with its chunked training loss), generation (the KV cache is in
`kv_cache.py`). Parameter names and math follow `transformers`' Llama, so `lit_llm.hf` converts by
renaming (see `hf.py`).

    from lit_llm.model import GPT, ModelConfig
    model = GPT(ModelConfig(vocab_size=1000, n_layer=2, n_head=4, d_model=64, max_seq_len=128))
    logits = model(torch.randint(0, 1000, (2, 16)))  # (2, 16, 1000)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lit_llm.chunked_loss import chunked_cross_entropy
from lit_llm.document_mask import attend, document_mask
from lit_llm.kv_cache import KVCache


@dataclass
class ModelConfig:
    """Shape and numerics of the transformer. Every field is a YAML key / CLI flag."""

    vocab_size: int = 32000
    """True vocabulary size (from the tokenizer). Logits have exactly this many columns."""
    n_layer: int = 4
    """Number of transformer blocks."""
    n_head: int = 4
    """Number of query heads."""
    n_kv_head: int | None = None
    """Number of key/value heads: None or n_head = multi-head, 1 = multi-query, a divisor of n_head = grouped-query."""
    d_model: int = 128
    """Residual stream width; must be divisible by n_head (head size = d_model // n_head)."""
    max_seq_len: int = 256
    """Longest sequence the rotary tables and the KV cache are built for."""
    ffn_hidden: int | None = None
    """SwiGLU hidden size. None derives it Llama-style: 8/3 * d_model rounded up to ffn_multiple_of."""
    ffn_multiple_of: int = 64
    """Rounding of the derived SwiGLU hidden size (Llama uses 256; 64 keeps tiny models tiny)."""
    rope_theta: float = 10000.0
    """Base of the rotary position embedding frequencies (Llama 2: 1e4, Llama 3: 5e5)."""
    rope_scaling: dict | None = None
    """RoPE frequency scaling, as in a Hugging Face config: None, {"rope_type": "linear", "factor": f} or Llama 3.1's
    {"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}."""
    norm_eps: float = 1e-5
    """Epsilon inside RMSNorm."""
    tie_embeddings: bool = False
    """Share the token embedding matrix with the LM head (saves vocab * d_model parameters)."""
    dropout: float = 0.0
    """Dropout on attention probabilities and on each residual branch (0 for pre-training)."""
    init_std: float = 0.02
    """Std of the normal init; output projections use init_std / sqrt(2 * n_layer) (GPT-2 / NeoX)."""
    pad_vocab_multiple: int = 64
    """Embedding and LM-head rows are padded up to a multiple of this for fast matmuls; padded rows stay zero."""

    def __post_init__(self) -> None:
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        for name in (
            "vocab_size",
            "n_layer",
            "n_head",
            "n_kv_head",
            "d_model",
            "max_seq_len",
            "pad_vocab_multiple",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(
                f"n_kv_head={self.n_kv_head} must divide n_head={self.n_head} (1 = MQA, n_head = MHA)"
            )
        if (self.d_model // self.n_head) % 2:
            raise ValueError(
                f"head size d_model/n_head={self.d_model // self.n_head} must be even for rotary embeddings"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        rope_frequencies(2, self.rope_theta, self.rope_scaling)  # refuses an unknown scaling
        if self.ffn_hidden is None:
            hidden = int(2 * 4 * self.d_model / 3)
            self.ffn_hidden = self.ffn_multiple_of * math.ceil(hidden / self.ffn_multiple_of)

    @property
    def head_size(self) -> int:
        return self.d_model // self.n_head

    @property
    def padded_vocab_size(self) -> int:
        return self.pad_vocab_multiple * math.ceil(self.vocab_size / self.pad_vocab_multiple)


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in float32, as Llama does."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_frequencies(head_size: int, theta: float, scaling: dict | None = None) -> torch.Tensor:
    """RoPE's inverse frequencies (head_size/2,). `scaling` (ModelConfig.rope_scaling): "linear" divides all by
    factor; "llama3" divides those whose wavelength exceeds the original context / low_freq_factor, keeps those
    under context / high_freq_factor and blends in between (transformers' `_compute_llama3_parameters`)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_size, 2, dtype=torch.int64).float() / head_size))
    kind = (scaling or {}).get("rope_type", "default")
    if kind not in ("default", "linear", "llama3"):
        raise ValueError(f"rope_scaling type {kind!r} is not supported (default, linear, llama3)")
    if kind != "llama3":
        return inv_freq / (scaling or {}).get("factor", 1.0)
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    context = scaling.get("original_max_position_embeddings", 8192)  # Llama 3's pre-training context
    wavelen = 2 * math.pi / inv_freq
    smooth = ((context / wavelen - low) / (high - low)).clamp(0.0, 1.0)  # 0: long wavelengths, 1: short
    return (1 - smooth) * inv_freq / factor + smooth * inv_freq


def rope_tables(head_size: int, max_seq_len: int, theta: float, scaling: dict | None = None) -> tuple:
    """cos and sin tables, each (max_seq_len, head_size), in Llama's half-rotation layout."""
    inv_freq = rope_frequencies(head_size, theta, scaling)
    freqs = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)  # (T, hs/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, hs)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, nh, T, hs) by the angles in cos/sin: (T, hs), or (B, 1, T, hs) per token."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos.to(x.dtype)) + (rotated * sin.to(x.dtype))


class CausalSelfAttention(nn.Module):
    """Multi-head attention with n_kv_head key/value heads (MHA, GQA or MQA), RoPE on q and k."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_size = config.n_head, config.n_kv_head, config.head_size
        self.dropout = config.dropout
        self.q_proj = nn.Linear(config.d_model, config.n_head * config.head_size, bias=False)
        self.k_proj = nn.Linear(config.d_model, config.n_kv_head * config.head_size, bias=False)
        self.v_proj = nn.Linear(config.d_model, config.n_kv_head * config.head_size, bias=False)
        self.o_proj = nn.Linear(config.n_head * config.head_size, config.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos, sin, cache: KVCache | None, mask=None) -> torch.Tensor:
        """x (B, T, d); mask: None (causal) or a `document_mask` (causal within each document)."""
        B, T, _ = x.shape
        # -1 heads: under tensor parallelism a rank holds n_head / K query and n_kv_head / K key/value heads
        q = self.q_proj(x).view(B, T, -1, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_proj(x).view(B, T, -1, self.head_size).transpose(1, 2)  # (B, n_kv, T, hs)
        v = self.v_proj(x).view(B, T, -1, self.head_size).transpose(1, 2)  # (B, n_kv, T, hs)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.append(self.layer, k, v)  # (B, n_kv, T_past + T, hs)
        dropout_p, gqa = (self.dropout if self.training else 0.0), self.n_kv_head != self.n_head
        if mask is not None:  # document masking
            y = attend(q, k, v, mask, dropout_p, gqa)  # (B, nh, T, hs)
        else:
            causal = causal_mask(T, k.shape[2], x.device)
            is_causal = k.shape[2] == T and T > 1
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=causal, dropout_p=dropout_p, is_causal=is_causal, enable_gqa=gqa
            )  # (B, nh, T, hs)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


def causal_mask(t_query: int, t_key: int, device: torch.device) -> torch.Tensor | None:
    """Boolean mask (T_q, T_k) for queries that are the last T_q of T_k positions; None when SDPA needs none."""
    if t_query == t_key or t_query == 1:
        return None  # full causal (is_causal) or one new token attending to every cached one
    offset = t_key - t_query
    return torch.ones(t_query, t_key, dtype=torch.bool, device=device).tril(diagonal=offset)


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.d_model, config.ffn_hidden, bias=False)
        self.up_proj = nn.Linear(config.d_model, config.ffn_hidden, bias=False)
        self.down_proj = nn.Linear(config.ffn_hidden, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attn = CausalSelfAttention(config, layer)
        self.mlp_norm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = SwiGLU(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cos, sin, cache: KVCache | None = None, mask=None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), cos, sin, cache, mask))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


def zero_rows_from(weight: torch.Tensor, start: int) -> None:
    """Zero the rows `start:` of a (rows, d) weight, also of a DTensor sharded on its rows (FSDP2's
    Shard(0), replicated on other mesh dims under HSDP: a rank holds ceil(rows / shards) consecutive
    rows), where slicing would write to a copy."""
    if not hasattr(weight, "to_local"):
        weight[start:].zero_()
        return
    mesh, placements = weight.device_mesh, weight.placements
    sharded = [i for i, p in enumerate(placements) if p.is_shard()]
    if len(sharded) != 1 or placements[sharded[0]].dim != 0:
        raise NotImplementedError(f"zero_rows_from: placements {placements} on a {mesh.ndim}-D mesh")
    dim = sharded[0]
    offset = mesh.get_local_rank(dim) * math.ceil(weight.shape[0] / mesh.size(dim))
    weight.to_local()[max(0, start - offset) :].zero_()


class GPT(nn.Module):
    """Token embedding -> n_layer Blocks -> RMSNorm -> LM head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.padded_vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
        self.tie_weights()
        cos, sin = rope_tables(config.head_size, config.max_seq_len, config.rope_theta, config.rope_scaling)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def tie_weights(self) -> None:
        """With tie_embeddings, the LM head is the embedding matrix (again after `to_empty`, which unties)."""
        if self.config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def reset_parameters(self, before_each=None) -> None:
        """Normal(0, init_std) everywhere; residual output projections scaled by 1/sqrt(2 n_layer).

        The scaling (GPT-2, GPT-NeoX) keeps the residual stream's variance from growing with
        depth, since each block adds two branches. Padded vocabulary rows are zero: they are
        never looked up nor targets, so with zero gradients they stay zero, and export can
        slice them off losslessly. `before_each(weight)`, when given, runs before each random
        draw (`parallel.materialize` seeds each shard with it).
        """
        std = self.config.init_std
        residual_std = std / math.sqrt(2 * self.config.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)) and before_each is not None:
                before_each(module.weight)
            if isinstance(module, nn.Linear):
                is_residual_out = name.endswith(("o_proj", "down_proj"))
                nn.init.normal_(module.weight, mean=0.0, std=residual_std if is_residual_out else std)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        with torch.no_grad():
            zero_rows_from(self.embed.weight, self.config.vocab_size)
            zero_rows_from(self.lm_head.weight, self.config.vocab_size)
        cfg = self.config
        rope = rope_tables(cfg.head_size, cfg.max_seq_len, cfg.rope_theta, cfg.rope_scaling)
        self.rope_cos, self.rope_sin = (t.to(self.rope_cos.device) for t in rope)

    def forward(
        self,
        idx: torch.Tensor,
        cache: KVCache | None = None,
        positions=None,
        labels=None,
        z_loss: float = 0.0,
    ) -> torch.Tensor:
        """Logits (B, T, vocab_size) for token ids idx (B, T); with a cache, idx are the next positions.
        With positions (B, T) inside each token's document, RoPE restarts at and attention stays in each
        document of the window (document masking, `document_mask.py`). With labels (B, T): the mean
        cross-entropy (+ z_loss) instead, computed chunk by chunk without the full logits (`chunked_loss.py`)."""
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.config.max_seq_len:
            raise ValueError(f"sequence of {start + T} tokens exceeds max_seq_len={self.config.max_seq_len}")
        cos, sin, mask = self.rope_cos[start : start + T], self.rope_sin[start : start + T], None  # (T, hs)
        if positions is not None:
            if cache is not None:
                raise ValueError("positions (document masking) are for whole windows, not with a KV cache")
            cos, sin = self.rope_cos[positions][:, None], self.rope_sin[positions][:, None]  # (B, 1, T, hs)
            mask = document_mask(positions, self.config.dropout if self.training else 0.0)
        x = self.embed(idx)  # (B, T, d)
        for block in self.blocks:
            x = block(x, cos, sin, cache, mask)
        if cache is not None:
            cache.pos += T
        x = self.norm(x)
        if labels is not None:
            return chunked_cross_entropy(
                x.flatten(0, 1), self.lm_head.weight, labels.flatten(), self.config.vocab_size, z_loss
            )
        return self.lm_head(x)[..., : self.config.vocab_size]  # (B, T, vocab)

    # ---- sizes and FLOPs -------------------------------------------------------------

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count. non_embedding=True drops the embedding table and an untied LM head (Kaplan et al.)."""
        total = sum(p.numel() for p in self.parameters())  # tied weights are counted once
        if non_embedding:
            total -= self.embed.weight.numel()
            if not self.config.tie_embeddings:
                total -= self.lm_head.weight.numel()
        return total

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token: 6 * (non-embedding params + LM-head matmul) + 12 * L * d_attn * T.

        The first term is forward (2 FLOPs per multiply-add) plus backward (twice forward)
        over every weight matmul, the LM head included (padded width, as computed); the
        embedding lookup does no matmul. The second is attention scores and values, as
        in PaLM's MFU formula (causal masking not subtracted).
        """
        cfg = self.config
        seq_len = seq_len or cfg.max_seq_len
        matmul_params = self.num_params(non_embedding=True) + cfg.padded_vocab_size * cfg.d_model
        return 6 * matmul_params + 12 * cfg.n_layer * cfg.n_head * cfg.head_size * seq_len

    # ---- generation ------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stop_tokens: int | list[int] | None = None,
        seed: int | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Extend idx (B, T) or (T,) by up to max_new_tokens; returns the prompt plus new tokens.

        temperature 0 is greedy. A row that emits a stop token keeps emitting it; generation
        ends early once every row has stopped. With the KV cache each step feeds one token;
        without it each step recomputes the whole sequence; both give the same tokens.
        """
        squeeze = idx.dim() == 1
        idx = idx.unsqueeze(0) if squeeze else idx
        stops = torch.tensor(
            [stop_tokens] if isinstance(stop_tokens, int) else (stop_tokens or []), device=idx.device
        )
        generator = None if seed is None else torch.Generator(device=idx.device).manual_seed(seed)
        done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        new = []
        for token in self.decode_steps(idx, max_new_tokens, temperature, top_k, top_p, generator, use_cache):
            token = torch.where(done, stops[0], token) if len(stops) else token
            new.append(token[:, None])
            if len(stops):
                done |= torch.isin(token, stops)
                if bool(done.all()):
                    break
        out = torch.cat([idx, *new], dim=1)
        return out[0] if squeeze else out

    @torch.no_grad()
    def decode_steps(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> Iterator[torch.Tensor]:
        """Yield the next token of every row of idx (B, T), one (B,) tensor per step; stop iterating to stop.

        The one decoding loop (`generate`, the lm-eval wrapper): at most max_new_tokens steps, fewer
        when the context (max_seq_len) runs out; `sample_next` picks each token (temperature 0: greedy).
        """
        steps = min(max_new_tokens, self.config.max_seq_len - idx.shape[1])
        cache = None
        if use_cache:
            cache = KVCache(
                self.config, idx.shape[0], idx.shape[1] + steps, idx.device, self.lm_head.weight.dtype
            )
        step_input = idx
        for _ in range(max(steps, 0)):
            logits = self(step_input, cache=cache)[:, -1, :].float()  # (B, V)
            token = sample_next(logits, temperature, top_k, top_p, generator)  # (B,)
            yield token
            step_input = token[:, None] if use_cache else torch.cat([step_input, token[:, None]], dim=1)


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row of logits (B, V): greedy at temperature 0, else top-k / nucleus sampling."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        remove = cumulative - sorted_logits.softmax(-1) > top_p  # keep the smallest prefix reaching top_p
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


__all__ = [
    "GPT",
    "ModelConfig",
    "KVCache",
    "RMSNorm",
    "Block",
    "CausalSelfAttention",
    "SwiGLU",
    "sample_next",
]
