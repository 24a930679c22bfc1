"""Time to quality: validation bits per byte on tinyshakespeare after ~200 s of wall clock, everything included.

    .venv/bin/python bench/bench_time_to_quality.py                 # the kit's recipe, 200 s
    .venv/bin/python bench/bench_time_to_quality.py --budget 200 --n_layer 4 --d_model 128
    .venv/bin/python bench/bench_time_to_quality.py --sampling epoch,random   # both samplers, side by side
    .venv/bin/python bench/bench_time_to_quality.py --optimizer adamw,muon --seeds 1337,1338

The clock starts when this script starts and covers: splitting the text (first 90% train, last
10% validation, as nanoGPT splits it), training the BPE tokenizer on the training part,
`lit-llm data prepare` (no quality filters: verse is not web prose), a few timed steps that
estimate the run's length (its warm-up is at most a tenth of it), `lit-llm fit` as a fresh process
(start-up, data, training, final validation over the whole held-out 10%), then reading `val/bpb`
from its metrics. The fit trains for the seconds left (`--trainer.max_time`: the budget less what
came before and `--reserve` for start-up and the final validation) with its LR schedule on the
time clock (`--model.schedule.clock time`), so it decays to zero as the time runs out however fast
the machine is that minute; `--steps N` trains exactly N steps on the step clock instead.
References on this machine: nanoGPT's CPU recipe 2.72 bpb in 200 s; litgpt 0.5.13 2.28 bpb in 207 s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
# AdamW's peak LR and weight decay per optimizer kind (with muon: the LM head, norms; docs/training_recipe.md)
RECIPE = {"adamw": {"lr": 4e-3, "weight_decay": 0.1}, "muon": {"lr": 2e-3, "weight_decay": 0.3}}
STARTED = [time.perf_counter()]  # the clock of the recipe being run (restarted for each sampler)


def elapsed() -> float:
    return time.perf_counter() - STARTED[0]


def prepare(tmp: Path, vocab: int) -> Path:
    from lit_llm.data.prepare import prepare_dataset
    from lit_llm.data.tokenizer_training import train_tokenizer

    text = SHAKESPEARE.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    (tmp / "train.txt").write_text(text[:cut], encoding="utf-8")
    (tmp / "val.txt").write_text(text[cut:], encoding="utf-8")
    with contextlib.redirect_stdout(io.StringIO()):  # the tokenizer's summary, once per run, is not a figure
        train_tokenizer([str(tmp / "train.txt")], tmp / "tokenizer", vocab_size=vocab, progress=False)
    sources = [
        {
            "name": "train",
            "paths": [str(tmp / "train.txt")],
            "kind": "text",
            "filters": "none",
            "split": "train",
        },
        {"name": "val", "paths": [str(tmp / "val.txt")], "kind": "text", "filters": "none", "split": "val"},
    ]
    from lit_llm.data.decontaminate import DecontaminateConfig
    from lit_llm.data.dedup import DedupConfig, MinHashConfig

    prepare_dataset(
        sources=sources,
        tokenizer=str(tmp / "tokenizer"),
        output=str(tmp / "data"),
        dedup=DedupConfig(exact=False, minhash=MinHashConfig(enabled=False)),
        decontaminate=DecontaminateConfig(enabled=False),  # verse holds no benchmark items
        progress=False,
    )
    return tmp / "data"


def step_seconds(args, vocab: int, optimizer: str) -> float:
    """Seconds per optimizer step of this model on this machine, from a few timed steps."""
    import torch

    from lit_llm.model import GPT, ModelConfig

    model = GPT(
        ModelConfig(
            vocab_size=vocab,
            n_layer=args.n_layer,
            n_head=args.n_head,
            d_model=args.d_model,
            max_seq_len=args.seq_len,
            n_kv_head=args.n_kv_head,
            tie_embeddings=args.tie_embeddings,
        )
    )
    from lit_llm.optim import OptimizerConfig, build_optimizer

    opt = build_optimizer(model, OptimizerConfig(kind=optimizer))
    x = torch.randint(0, vocab, (args.batch, args.seq_len + 1))
    times = []
    for _ in range(6):
        t = time.perf_counter()
        loss = model(x[:, :-1], labels=x[:, 1:])  # the chunked training loss, as fit computes it
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return sorted(times[2:])[len(times[2:]) // 2] * 1.08  # fit adds logging, clipping and data


def adamw_setting(args, name: str, optimizer: str) -> float:
    """AdamW's `name` (lr, weight_decay): the flag when given, else the recipe's value for `optimizer`."""
    value = getattr(args, name)
    return RECIPE[optimizer][name] if value is None else value


def fit_command(
    args, data: Path, steps: int, run: Path, sampling: str, optimizer: str, seed: int, seconds: int | None
) -> list[str]:
    """The recipe's `lit-llm fit` command line (a fresh process): `steps` optimizer steps, or with `seconds`
    as many as that many seconds of training hold (the LR schedule on the time clock; `steps` an estimate
    that sizes the warm-up, and three times it a cap)."""
    timed = [] if seconds is None else ["--trainer.max_time", f"00:00:{seconds // 60:02d}:{seconds % 60:02d}"]
    timed += ["--model.schedule.clock", "steps" if seconds is None else "time"]
    cap = steps if seconds is None else 3 * steps
    return [
        sys.executable,
        "-m",
        "lit_llm.cli",
        "fit",
        "--seed_everything",
        str(seed),
        "--model.optimizer.kind",
        optimizer,
        "--model.optimizer.muon_lr",
        str(args.muon_lr),
        "--model.schedule.kind",
        args.schedule,
        "--model.arch.n_layer",
        str(args.n_layer),
        "--model.arch.n_head",
        str(args.n_head),
        "--model.arch.d_model",
        str(args.d_model),
        "--model.arch.max_seq_len",
        str(args.seq_len),
        "--model.optimizer.lr",
        str(adamw_setting(args, "lr", optimizer)),
        "--model.optimizer.weight_decay",
        str(adamw_setting(args, "weight_decay", optimizer)),
        "--model.optimizer.embedding_lr",
        str(args.embedding_lr) if args.embedding_lr else "null",
        "--model.optimizer.muon_weight_decay",
        str(args.muon_weight_decay),
        "--model.arch.dropout",
        str(args.dropout),
        "--model.arch.n_kv_head",
        str(args.n_kv_head or args.n_head),
        "--model.arch.tie_embeddings",
        str(args.tie_embeddings).lower(),
        "--model.schedule.warmup_steps",
        str(min(args.warmup, steps // 10)),
        "--model.schedule.min_lr_ratio",
        str(args.min_lr_ratio),
        "--model.schedule.decay_fraction",
        str(args.decay_fraction),
        "--data.path",
        str(data),
        "--data.seq_len",
        str(args.seq_len),
        "--data.batch_size",
        str(args.batch),
        "--data.val_tokens",
        "null",
        "--data.val_batch_size",
        "64",
        "--data.sampling",
        sampling,
        "--trainer.accelerator",
        "cpu",
        "--trainer.max_steps",
        str(cap),
        "--trainer.val_check_interval",
        str(cap),
        *timed,
        "--trainer.limit_val_batches",
        "1.0",
        "--trainer.gradient_clip_val",
        "1.0",
        "--trainer.enable_checkpointing",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.log_every_n_steps",
        "50",
        "--trainer.default_root_dir",
        str(run),
    ]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=200.0, help="wall-clock seconds, everything included")
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--n_layer", type=int, default=4)
    p.add_argument("--n_head", type=int, default=4)
    p.add_argument("--d_model", type=int, default=128)
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="AdamW's LR (default: 4e-3 for every weight with adamw, 2e-3 for the LM head and norms with muon)",
    )
    p.add_argument("--muon_lr", type=float, default=0.02, help="Muon's learning rate (with --optimizer muon)")
    p.add_argument("--schedule", default="wsd", help="LR schedule: cosine, wsd, constant")
    p.add_argument("--warmup", type=int, default=100, help="warm-up steps (at most a tenth of the run)")
    p.add_argument("--min_lr_ratio", type=float, default=0.0, help="final LR as a fraction of the peak")
    p.add_argument("--decay_fraction", type=float, default=0.4, help="wsd: share of the run spent decaying")
    p.add_argument("--embedding_lr", type=float, default=0.05, help="the token embedding's LR (0: --lr)")
    p.add_argument(
        "--weight_decay",
        type=float,
        default=None,
        help="AdamW's weight decay (default: 0.1 on every matrix with adamw, 0.3 on the LM head with muon)",
    )
    p.add_argument("--muon_weight_decay", type=float, default=0.1, help="Muon's weight decay")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout on attention and residual branches")
    p.add_argument("--n_kv_head", type=int, default=None, help="key/value heads (default: n_head)")
    p.add_argument("--tie_embeddings", action="store_true", help="share the embedding and the LM head")
    p.add_argument("--optimizer", default="muon", help="optimizers to run, comma-separated (adamw, muon)")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="train exactly this many steps (default: as many as the budget fits)",
    )
    p.add_argument("--seeds", default="1337", help="seeds to run, comma-separated (each a whole run)")
    p.add_argument(
        "--sampling",
        default="epoch",
        help="data samplers to run, comma-separated (epoch, random); each gets the whole budget in turn",
    )
    p.add_argument(
        "--reserve",
        type=float,
        default=14.0,
        help="seconds kept for fit start-up (~7) and the final validation (~4): not given to training",
    )
    return p.parse_args(argv)


def run_recipe(args, sampling: str, optimizer: str, seed: int) -> dict:
    """The whole recipe on a fresh clock with one data sampler, optimizer and seed; its figures."""
    STARTED[0] = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ttq-"))
    data = prepare(tmp, args.vocab)
    vocab = json.loads((data / "manifest.json").read_text())["vocab_size"]
    prepared_at = elapsed()
    per_step = step_seconds(args, vocab, optimizer)
    seconds = int(args.budget - elapsed() - args.reserve)
    steps = args.steps or max(10, int(seconds / per_step))
    cmd = fit_command(
        args, data, steps, tmp / "run", sampling, optimizer, seed, None if args.steps else seconds
    )
    proc = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    total = elapsed()
    from lit_llm.plot import read_metrics

    rows = read_metrics(tmp / "run")
    bpb = [float(r["val/bpb"]) for r in rows if r.get("val/bpb")]
    steps = max(int(r["step"]) for r in rows if r.get("train/loss")) + 1 if not args.steps else steps
    loss = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    sampled = [line for line in proc.stderr.splitlines() if line.startswith("data: ")]
    return dict(
        optimizer=optimizer,
        seed=seed,
        sampling=sampling,
        vocab=vocab,
        steps=steps,
        per_step=per_step,
        prepared_at=prepared_at,
        total=total,
        loss=loss[-1],
        bpb=bpb[-1],
        line=sampled[0] if sampled else "",
    )


def main() -> None:
    args = parse_args()
    if not SHAKESPEARE.exists():
        raise SystemExit(f"{SHAKESPEARE} not found: this benchmark needs ../shared/data")
    results = [
        run_recipe(args, sampling, optimizer, int(seed))
        for sampling in args.sampling.split(",")
        for optimizer in args.optimizer.split(",")
        for seed in args.seeds.split(",")
    ]
    adamw = "; ".join(
        f"{k}: lr {adamw_setting(args, 'lr', k)}, weight decay {adamw_setting(args, 'weight_decay', k)}"
        for k in args.optimizer.split(",")
    )
    print(
        f"model {args.n_layer}x{args.d_model}, ctx {args.seq_len}, batch {args.batch}, BPE vocab "
        f"{results[0]['vocab']}; AdamW ({adamw}); embedding lr {args.embedding_lr}; muon_lr {args.muon_lr}, "
        f"muon weight decay {args.muon_weight_decay}; {args.schedule} schedule, warm-up {args.warmup}, "
        f"budget {args.budget:.0f} s per run"
    )
    print(
        f"{'sampler':<8} {'optim':<6} {'seed':>5} {'steps':>6} {'ms/step':>8} {'prepared':>9} {'total':>7} "
        f"{'val loss':>9} {'val bpb':>8}"
    )
    for r in results:
        print(
            f"{r['sampling']:<8} {r['optimizer']:<6} {r['seed']:>5} {r['steps']:>6} {r['per_step'] * 1e3:>8.0f} "
            f"{r['prepared_at']:>8.1f}s {r['total']:>6.1f}s {r['loss']:>9.3f} {r['bpb']:>8.3f}"
        )
    for line in sorted({r["line"] for r in results}):
        print(f"  {line}")
    print("validation is the whole held-out 10%; loss in nats/token, bpb in bits/byte")
    print("references here: nanoGPT char-level 2.72 bpb in 200 s; litgpt 0.5.13 BPE-1024 2.28 bpb in 207 s")


if __name__ == "__main__":
    main()
