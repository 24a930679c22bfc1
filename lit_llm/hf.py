"""GPT <-> `transformers.LlamaForCausalLM`: config, weights, and a saved HF folder.

The kit's GPT is Llama's architecture under shorter names, so conversion is a rename;
the only reshaping is the vocabulary: GPT pads its embedding rows to a multiple of 64
(padded rows are always zero), the HF model holds exactly `vocab_size` rows.

    from lit_llm.hf import to_hf, from_hf, save_hf
    llama = to_hf(gpt)                  # transformers.LlamaForCausalLM, same logits
    gpt2 = from_hf(llama)               # back, exactly
    save_hf(gpt, "out/hf", tokenizer_dir="out/tokenizer")  # AutoModelForCausalLM.from_pretrained("out/hf")
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import torch

from lit_llm.model import GPT, ModelConfig
from lit_llm.tokenizer import HF_TOKENIZER_FILES

# Hugging Face model types with GPT's architecture (Mistral: without sliding window)
LLAMA_TYPES = ("llama", "mistral")

# GPT parameter name -> HF LlamaForCausalLM name; "{i}" is the layer index.
_BLOCK_NAMES = {
    "blocks.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "blocks.{i}.attn.q_proj.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "blocks.{i}.attn.k_proj.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "blocks.{i}.attn.v_proj.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "blocks.{i}.attn.o_proj.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "blocks.{i}.mlp_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "blocks.{i}.mlp.gate_proj.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "blocks.{i}.mlp.up_proj.weight": "model.layers.{i}.mlp.up_proj.weight",
    "blocks.{i}.mlp.down_proj.weight": "model.layers.{i}.mlp.down_proj.weight",
}
_TOP_NAMES = {
    "embed.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}
_VOCAB_ROWS = ("embed.weight", "lm_head.weight")


def name_map(n_layer: int) -> dict[str, str]:
    """Every GPT parameter name mapped to its LlamaForCausalLM name."""
    names = dict(_TOP_NAMES)
    for i in range(n_layer):
        names.update({k.format(i=i): v.format(i=i) for k, v in _BLOCK_NAMES.items()})
    return names


def hf_config(config: ModelConfig, **extra):
    """The `transformers.LlamaConfig` describing the same network as `config`."""
    from transformers import LlamaConfig

    hf = LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        intermediate_size=config.ffn_hidden,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        num_key_value_heads=config.n_kv_head,
        head_dim=config.head_size,
        hidden_act="silu",
        max_position_embeddings=config.max_seq_len,
        rms_norm_eps=config.norm_eps,
        initializer_range=config.init_std,
        tie_word_embeddings=config.tie_embeddings,
        attention_bias=False,
        mlp_bias=False,
        attention_dropout=config.dropout,
        rope_theta=config.rope_theta,
        rope_scaling=dict(config.rope_scaling) if config.rope_scaling else None,
        **extra,
    )
    hf.rope_theta = config.rope_theta  # newer transformers keep it in rope_parameters; older read this
    return hf


def check_architecture(hf) -> None:
    """A one-line ValueError naming what a Hugging Face config has that GPT does not: another model type,
    biases, an activation other than SiLU, sliding-window attention, a head size other than hidden / heads."""
    model_type = getattr(hf, "model_type", "llama")
    if model_type not in LLAMA_TYPES:
        raise ValueError(
            f"model_type {model_type!r} is not Llama's architecture (supported: {', '.join(LLAMA_TYPES)})"
        )
    biases = [k for k in ("attention_bias", "mlp_bias") if getattr(hf, k, False)]
    if biases:
        raise ValueError(f"{' and '.join(biases)}=true: GPT's projections have no biases")
    act = getattr(hf, "hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"hidden_act={act!r}: GPT's MLP is SwiGLU (silu)")
    window = getattr(hf, "sliding_window", None)
    if window is not None and window < hf.max_position_embeddings:
        raise ValueError(
            f"sliding_window={window} < max_position_embeddings={hf.max_position_embeddings}: GPT attends to "
            "the whole context (sliding-window attention is not supported)"
        )
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    if head_dim * hf.num_attention_heads != hf.hidden_size:
        raise ValueError(f"head_dim={head_dim} * heads != hidden_size={hf.hidden_size}: not supported by GPT")


def rope_from_hf(hf) -> tuple[float, dict | None]:
    """(rope_theta, ModelConfig.rope_scaling) of a Hugging Face config: transformers 5 keeps both in
    `rope_parameters`, 4.x in `rope_theta` and `rope_scaling` ("type" in older files)."""
    params = dict(getattr(hf, "rope_parameters", None) or getattr(hf, "rope_scaling", None) or {})
    theta = params.pop("rope_theta", None) or getattr(hf, "rope_theta", None) or 10000.0
    kind = params.pop("rope_type", None) or params.pop("type", None) or "default"
    params.pop("type", None)
    if kind == "default":
        return float(theta), None
    if kind not in ("linear", "llama3"):
        raise ValueError(
            f"rope scaling type {kind!r} is not supported by GPT (supported: default, linear, llama3)"
        )
    if kind == "llama3":  # transformers falls back to max_position_embeddings too
        params.setdefault("original_max_position_embeddings", hf.max_position_embeddings)
    return float(theta), {"rope_type": kind, **params}


def model_config_from_hf(hf) -> ModelConfig:
    """The kit's ModelConfig for a Llama-architecture Hugging Face config (`LlamaConfig`, a `MistralConfig`
    without sliding window); a one-line ValueError for what GPT does not have (`check_architecture`)."""
    check_architecture(hf)
    rope_theta, rope_scaling = rope_from_hf(hf)
    return ModelConfig(
        vocab_size=hf.vocab_size,
        n_layer=hf.num_hidden_layers,
        n_head=hf.num_attention_heads,
        n_kv_head=hf.num_key_value_heads or hf.num_attention_heads,
        d_model=hf.hidden_size,
        max_seq_len=hf.max_position_embeddings,
        ffn_hidden=hf.intermediate_size,
        rope_theta=rope_theta,
        rope_scaling=rope_scaling,
        norm_eps=hf.rms_norm_eps,
        tie_embeddings=bool(hf.tie_word_embeddings),
        dropout=float(getattr(hf, "attention_dropout", 0.0) or 0.0),
        init_std=hf.initializer_range,
    )


def to_hf(gpt: GPT, **config_extra):
    """A `transformers.LlamaForCausalLM` with the weights of `gpt` (padded vocab rows dropped)."""
    from transformers import LlamaForCausalLM

    config = gpt.config
    llama = LlamaForCausalLM(hf_config(config, **config_extra))
    names = name_map(config.n_layer)
    state = {}
    for name, tensor in gpt.state_dict().items():
        if name not in names:
            continue  # non-persistent buffers never appear; anything else is a bug caught below
        if name in _VOCAB_ROWS:
            tensor = tensor[: config.vocab_size]
        state[names[name]] = tensor.detach().clone()
    if config.tie_embeddings:
        state.pop("lm_head.weight", None)
    missing, unexpected = llama.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (config.tie_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"GPT -> Llama conversion mismatch: missing={missing} unexpected={unexpected}")
    return llama.to(dtype=next(gpt.parameters()).dtype)


def from_hf(llama) -> GPT:
    """A `GPT` with the weights of a `LlamaForCausalLM` (vocab rows zero-padded to the GPT's multiple)."""
    config = model_config_from_hf(llama.config)
    gpt = GPT(config)
    hf_state = llama.state_dict()
    state = {}
    for name, hf_name in name_map(config.n_layer).items():
        if hf_name not in hf_state:
            if config.tie_embeddings and name == "lm_head.weight":
                continue
            raise KeyError(f"{hf_name} missing from the Hugging Face state dict")
        tensor = hf_state[hf_name].detach().float()
        if name in _VOCAB_ROWS:
            tensor = torch.cat(
                [tensor, tensor.new_zeros(config.padded_vocab_size - tensor.shape[0], tensor.shape[1])]
            )
        state[name] = tensor
    if config.tie_embeddings:
        state["lm_head.weight"] = state["embed.weight"]
    gpt.load_state_dict(state, strict=True)
    return gpt


def save_hf(
    gpt: GPT,
    out_dir: str | Path,
    tokenizer_dir: str | Path | None = None,
    eos_id: int | None = None,
    pad_id: int | None = None,
    bos_id: int | None = None,
) -> Path:
    """Write `gpt` as a Hugging Face folder: config.json, model.safetensors, generation_config.json
    [+ the tokenizer files, `tokenizer_config.json` with `export_tokenizer_config`'s fields], every
    file readable by others (mode 0666 less the umask, like any file the user writes). `bos_id`
    defaults to `eos_id` (the kit's tokenizers have one end-of-text token)."""
    out_dir = Path(out_dir)
    bos_id = eos_id if bos_id is None else bos_id
    extra = {
        k: v
        for k, v in {"eos_token_id": eos_id, "bos_token_id": bos_id, "pad_token_id": pad_id}.items()
        if v is not None
    }
    llama = to_hf(gpt, **extra)
    llama.generation_config = generation_config(eos_id, pad_id, bos_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time_ns()
    llama.save_pretrained(out_dir, safe_serialization=True)
    if tokenizer_dir is not None:
        copy_tokenizer(tokenizer_dir, out_dir, gpt.config.max_seq_len)
    make_readable(p for p in out_dir.iterdir() if p.is_file() and p.stat().st_mtime_ns >= started)
    return out_dir


def generation_config(eos_id: int | None, pad_id: int | None, bos_id: int | None):
    """generation_config.json: the ids `generate` stops at and pads with (a base model: no sampling defaults)."""
    from transformers import GenerationConfig

    ids = {"bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": pad_id}
    return GenerationConfig(**{k: v for k, v in ids.items() if v is not None})


def export_tokenizer_config(config: dict, model_max_length: int) -> dict:
    """tokenizer_config.json for an exported model: the tokenizer's own, plus what `transformers` needs to
    use it for inference. `model_input_names`: no `token_type_ids` (Llama's forward rejects them, so
    `model.generate(**tokenizer(text, return_tensors="pt"))` would fail); `model_max_length`: truncation
    cuts at the model's context; `padding_side: left`: batched generation continues every row from its
    last real token."""
    return {
        **config,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": model_max_length,
        "padding_side": "left",
    }


def copy_tokenizer(tokenizer_dir: str | Path, out_dir: Path, model_max_length: int) -> None:
    """The tokenizer files of `tokenizer_dir` into `out_dir`, tokenizer_config.json completed for inference."""
    src = Path(tokenizer_dir)
    for name in HF_TOKENIZER_FILES:
        if (src / name).exists() and name != "tokenizer_config.json":
            shutil.copyfile(src / name, out_dir / name)
    config_file = src / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
    config = export_tokenizer_config(config, model_max_length)
    text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    (out_dir / "tokenizer_config.json").write_text(text, encoding="utf-8")


def make_readable(files: Iterable[str | Path]) -> None:
    """Give each file the mode a new file of this user gets: 0666 less the umask (0644 under the usual
    022). Some writers (transformers 5's safetensors, temporary files renamed into place) leave 0600,
    which another user or a container cannot read."""
    umask = os.umask(0)
    os.umask(umask)
    for file in files:
        Path(file).chmod(0o666 & ~umask)
