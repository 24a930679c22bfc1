"""`lit-llm demo`: the whole path on a fresh machine, no download, a few minutes on CPU.

    lit-llm demo --out runs/demo

1. sources: the Python standard library (code) plus local prose if present
2. train a byte-level BPE tokenizer on them            -> OUT/tokenizer/
3. `data prepare`: filters, dedup, tokenize, shard     -> OUT/data/
4. `fit` a small Llama-style model on CPU              -> OUT/checkpoints/, OUT/logs/
5. validate, generate a sample, export to Hugging Face -> OUT/hf/
6. plot the loss curve                                 -> OUT/loss_curve.png
"""

from __future__ import annotations

import time
from pathlib import Path

from lit_llm.errors import UserError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_RECIPE = CONFIGS / "data" / "default.yaml"
DEMO_CONFIG = CONFIGS / "experiments" / "demo.yaml"


def default_recipe() -> tuple[dict, list]:
    """The built-in default data recipe as `prepare_dataset` arguments, and its sources present here."""
    from lit_llm.data.prepare import load_recipe
    from lit_llm.data.recipe import resolve_sources, to_source

    for path in (DEFAULT_RECIPE, DEMO_CONFIG):
        if not path.exists():
            raise UserError(f"{path}: not found; run the demo from a clone of the repository")
    recipe = load_recipe(DEFAULT_RECIPE)
    sources, _ = resolve_sources([to_source(s) for s in recipe["sources"]])
    return recipe, sources


def fit_args(out: Path, data: Path, max_steps: int, max_minutes: float) -> list[str]:
    """The demo's `lit-llm fit` command line: its experiment config, bounded by steps and wall time."""
    return [
        "fit",
        "--config",
        str(DEMO_CONFIG),
        "--data.path",
        str(data),
        "--trainer.max_steps",
        str(max_steps),
        "--trainer.max_time",
        f"00:00:{int(max_minutes):02d}:00",
        "--trainer.val_check_interval",
        str(max(max_steps // 4, 1)),
        "--trainer.default_root_dir",
        str(out),
    ]


def demo_command(
    out: str = "runs/demo",
    vocab_size: int = 4096,
    max_steps: int = 960,
    max_minutes: float = 8.0,
    max_chars: int = 8_000_000,
    prompt: str = "def main():",
    overwrite: bool = False,
) -> None:
    """Run the whole pipeline on the built-in default corpus: data, tokenizer, training, eval, sample, export.

    Args:
        out: Run folder for every output (tokenizer, data, checkpoints, logs, plot, HF export).
        vocab_size: Tokenizer vocabulary size.
        max_steps: Optimizer steps of pre-training.
        max_minutes: Wall-clock cap on pre-training (stops early, still validates and exports).
        max_chars: Characters sampled for tokenizer training.
        prompt: Prompt for the generated sample.
        overwrite: Replace the outputs of an earlier demo in `out`.
    """
    from lit_llm.checkpoint import load_gpt
    from lit_llm.data.prepare import prepare_dataset
    from lit_llm.data.tokenizer_training import train_tokenizer
    from lit_llm.export import export_checkpoint
    from lit_llm.generate import generate_text
    from lit_llm.lightning_cli import run_lightning_cli
    from lit_llm.tokenizer import load_tokenizer

    started = time.perf_counter()
    out = empty_run_folder(Path(out), overwrite)
    recipe, sources = default_recipe()
    print(f"[1/6] sources: {', '.join(f'{s.name} ({s.paths[0]})' for s in sources)}")
    print(f"[2/6] training a {vocab_size}-token BPE tokenizer")
    train_tokenizer(sources, out / "tokenizer", vocab_size=vocab_size, max_chars=max_chars)
    print("[3/6] preparing shards (filters, dedup, tokenize)")
    manifest = prepare_dataset(tokenizer=str(out / "tokenizer"), output=str(out / "data"), **recipe)
    print(f"[4/6] pre-training for up to {max_steps} steps / {max_minutes:g} minutes")
    cli = run_lightning_cli(fit_args(out, out / "data", max_steps, max_minutes))
    print("[5/6] validating, sampling, exporting")
    val = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    ckpt = out / "checkpoints" / "final.ckpt"  # the trained state; last.ckpt stays the resume point
    cli.trainer.save_checkpoint(ckpt, weights_only=False)
    gpt, info = load_gpt(ckpt)
    sample = generate_text(
        gpt, load_tokenizer(out / "tokenizer"), prompt, max_new_tokens=120, temperature=0.8, top_k=40, seed=0
    )
    hf_dir = export_checkpoint(ckpt, out / "hf")
    print(f"[6/6] done in {time.perf_counter() - started:.0f} s\n")
    print(f"sample ({prompt!r}):\n{prompt}{sample}\n")
    print_summary(out, info, manifest, val, ckpt, hf_dir)


def print_summary(out: Path, info, manifest: dict, val: dict, ckpt: Path, hf_dir: Path) -> None:
    """The demo's last lines: tokens, steps, validation figures, rollbacks and where each output is."""
    from lit_llm.plot import plot_loss_curve

    summary = {
        "tokens seen": f"{info.tokens_seen:,}",
        "optimizer steps": info.global_step,
        "training tokens in data": f"{manifest['num_tokens']:,}",
        "val loss": f"{val.get('val/loss', float('nan')):.3f}",
        "val bits/byte": f"{val.get('val/bpb', float('nan')):.3f}",
        "spike rollbacks": rollback_summary(out),
        "checkpoint": ckpt,
        "logs": out / "logs",
        "loss curve": plot_loss_curve(out),
        "hugging face export": hf_dir,
    }
    width = max(map(len, summary))
    print("\n".join(f"{k:<{width}}  {v}" for k, v in summary.items()))


def empty_run_folder(out: Path, overwrite: bool) -> Path:
    """`out`, created empty; an earlier run's outputs are removed only with `overwrite`."""
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out}: folder exists and is not empty (pass --overwrite true or another --out)")
    if overwrite and out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def rollback_summary(out: Path) -> str:
    """How many loss-spike rollbacks the run made, and where their events are."""
    from lit_llm.plot import read_rollbacks

    count = len(read_rollbacks(out))
    return f"{count} (events: {out / 'spike_events.jsonl'})" if count else "0"
