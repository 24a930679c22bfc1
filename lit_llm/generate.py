"""`lit-llm generate`: sample text from a checkpoint.

lit-llm generate --ckpt_path runs/demo --prompt "def fibonacci(n):" --max_new_tokens 100
"""

from __future__ import annotations

import torch

from lit_llm.checkpoint import load_gpt
from lit_llm.errors import UserError
from lit_llm.tokenizer import load_tokenizer


def generate_text(
    gpt,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 50,
    top_p: float | None = None,
    seed: int | None = None,
) -> str:
    """The continuation of prompt (prompt not included), stopping at <|endoftext|>."""
    ids = tokenizer.encode(prompt) if prompt else [tokenizer.eos_id]
    if len(ids) >= gpt.config.max_seq_len:
        raise UserError(f"prompt is {len(ids)} tokens; the model's max_seq_len is {gpt.config.max_seq_len}")
    device = next(gpt.parameters()).device
    out = gpt.generate(
        torch.tensor(ids, device=device),
        max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        stop_tokens=tokenizer.eos_id,
        seed=seed,
    )
    new = out[len(ids) :].tolist()
    if new and new[-1] == tokenizer.eos_id:
        new = new[:-1]
    return tokenizer.decode(new)


def generate_command(
    ckpt_path: str,
    prompt: str = "",
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 50,
    top_p: float | None = None,
    seed: int | None = None,
    tokenizer: str | None = None,
    device: str = "cpu",
) -> None:
    """Generate a continuation of a prompt with a trained checkpoint and print it.

    Args:
        ckpt_path: Checkpoint file, or a run folder containing checkpoints/last.ckpt.
        prompt: Text to continue (empty: start a new document).
        max_new_tokens: Most tokens to generate (stops early at <|endoftext|>).
        temperature: Sampling temperature; 0 is greedy.
        top_k: Sample among the k most likely tokens (None: all).
        top_p: Nucleus sampling: the smallest set of tokens with this total probability (None: off).
        seed: Random seed for reproducible samples.
        tokenizer: Tokenizer folder (default: the one recorded in the checkpoint).
        device: Torch device to run on (cpu, cuda, cuda:1, ...).
    """
    gpt, info = load_gpt(ckpt_path, map_location=device)
    folder = tokenizer or info.tokenizer_path
    if folder is None:
        raise UserError(f"{info.path}: checkpoint names no tokenizer; pass --tokenizer DIR")
    tok = load_tokenizer(folder)
    if tok.vocab_size != gpt.config.vocab_size:
        raise UserError(
            f"{folder}: tokenizer has {tok.vocab_size} ids but the model was trained with "
            f"{gpt.config.vocab_size}"
        )
    print(prompt + generate_text(gpt, tok, prompt, max_new_tokens, temperature, top_k, top_p, seed))
