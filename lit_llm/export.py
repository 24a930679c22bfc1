"""`lit-llm export`: a checkpoint as a Hugging Face folder (LlamaForCausalLM + tokenizer).

lit-llm export --ckpt_path runs/demo --out runs/demo/hf
python -c "from transformers import AutoModelForCausalLM; AutoModelForCausalLM.from_pretrained('runs/demo/hf')"
"""

from __future__ import annotations

from pathlib import Path

from lit_llm.checkpoint import load_gpt
from lit_llm.errors import UserError
from lit_llm.hf import save_hf
from lit_llm.tokenizer import load_tokenizer


def export_checkpoint(ckpt_path: str | Path, out: str | Path, tokenizer: str | Path | None = None) -> Path:
    """Write the checkpoint's GPT and tokenizer as a folder that `from_pretrained` loads."""
    gpt, info = load_gpt(ckpt_path)
    folder = tokenizer or info.tokenizer_path
    eos = pad = None
    if folder is not None:
        tok = load_tokenizer(folder)
        if tok.vocab_size != gpt.config.vocab_size:
            raise UserError(
                f"{folder}: tokenizer has {tok.vocab_size} ids, the model {gpt.config.vocab_size}"
            )
        eos, pad = tok.eos_id, tok.pad_id
    return save_hf(gpt, out, tokenizer_dir=folder, eos_id=eos, pad_id=pad)


def export_command(ckpt_path: str, out: str, tokenizer: str | None = None) -> None:
    """Export a checkpoint to Hugging Face format (config.json, model.safetensors, tokenizer files).

    Args:
        ckpt_path: Checkpoint file, or a run folder containing checkpoints/last.ckpt.
        out: Output folder; `transformers.AutoModelForCausalLM.from_pretrained(out)` loads it.
        tokenizer: Tokenizer folder (default: the one recorded in the checkpoint).
    """
    path = export_checkpoint(ckpt_path, out, tokenizer)
    print(f"exported {ckpt_path} -> {path}")
