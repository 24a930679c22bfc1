"""Benchmark the lm-eval wrapper: requests/s against lm-eval's `hf` backend, and the in-loop cost.

    python bench/bench_eval.py --ckpt runs/eval_demo/checkpoints/final.ckpt --data_dir ../shared/data
    python bench/bench_eval.py --skip_loop            # throughput only (random tiny model if no checkpoint)

1. Throughput: the same requests (MMLU 5-shot multiple choice, `limit` questions per subject;
   WikiText-2 documents for loglikelihood_rolling) scored by `LitLLMEval` on the GPT and by
   `HFLM` on its Hugging Face export (`save_hf`), same machine, threads and batch size; best of
   `repeats` rounds, interleaved. Prints requests/s and the ratio.
2. In-loop cost: a real `lit-llm fit` of the tiny CPU config with `BenchmarkEval` at its
   defaults (tasks, limit) evaluating once; the step time comes from `train/tokens_per_sec`,
   the evaluation time from `eval/seconds`; the cost is eval / (every_n_steps * step + eval).
"""

from __future__ import annotations

import argparse
import csv
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch
from lit_llm.callbacks import BenchmarkEval

from lit_llm.eval.tasks import task_manager
from lit_llm.eval.wrapper import LitLLMEval

ROOT = Path(__file__).resolve().parents[1]


def build_requests(names: list[str], data_dir: str, limit: int) -> dict[str, list]:
    """lm-eval Instances by request type, built exactly as `evaluate` builds them."""
    manager = task_manager(data_dir)
    by_type: dict[str, list] = {}
    for task in manager.load(names)["tasks"].values():
        task.set_fewshot_seed(seed=1234)
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        for instance in task.instances:
            by_type.setdefault(instance.request_type, []).append(instance)
    return by_type


def load_model(ckpt: str | None, tokenizer: str | None):
    """The checkpoint's GPT and tokenizer, or a random tiny CPU-config GPT over `tokenizer`."""
    from lit_llm.checkpoint import load_gpt
    from lit_llm.model import GPT, ModelConfig
    from lit_llm.tokenizer import load_tokenizer

    if ckpt:
        gpt, info = load_gpt(ckpt)
        return gpt, load_tokenizer(tokenizer or info.tokenizer_path)
    tok = load_tokenizer(tokenizer)
    config = ModelConfig(
        vocab_size=tok.vocab_size, n_layer=4, n_head=4, n_kv_head=2, d_model=128, max_seq_len=256
    )
    torch.manual_seed(0)
    return GPT(config).eval(), tok


def throughput(args) -> None:
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lit_llm.hf import save_hf

    gpt, tok = load_model(args.ckpt, args.tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        save_hf(gpt, Path(tmp) / "hf", tokenizer_dir=tok.path, eos_id=tok.eos_id, pad_id=tok.pad_id)
        llama = AutoModelForCausalLM.from_pretrained(Path(tmp) / "hf").eval()
        hf_tok = AutoTokenizer.from_pretrained(Path(tmp) / "hf")
    ours = LitLLMEval(gpt, tok, batch_size=args.batch_size, progress=False)
    theirs = HFLM(pretrained=llama, tokenizer=hf_tok, batch_size=args.batch_size)
    print(
        f"model: {gpt.num_params():,} parameters, context {gpt.config.max_seq_len}; batch size {args.batch_size}; "
        f"torch threads {torch.get_num_threads()}"
    )
    for kind, names, limit in (
        ("loglikelihood", ["mmlu"], args.limit),
        ("loglikelihood_rolling", ["perplexity"], 4),
    ):
        requests = build_requests(names, args.data_dir, limit)[kind]
        # tokens the model reads: a request's context + continuation cut to the context; whole documents
        cap = gpt.config.max_seq_len if kind == "loglikelihood" else None
        tokens = sum(len(tok.encode("".join(r.args))[-cap if cap else 0 :]) for r in requests)
        best = {"lit-llm": float("inf"), "hf": float("inf")}
        for _ in range(args.repeats):
            for name, lm in (("lit-llm", ours), ("hf", theirs)):
                started = time.perf_counter()
                with torch.no_grad():
                    getattr(lm, kind)(requests, disable_tqdm=True)
                best[name] = min(best[name], time.perf_counter() - started)
        rates = {k: len(requests) / v for k, v in best.items()}
        print(
            f"{kind:>22}: {len(requests)} requests (~{tokens:,} tokens) | lit-llm {rates['lit-llm']:.1f} req/s "
            f"({best['lit-llm']:.2f} s) | hf {rates['hf']:.1f} req/s ({best['hf']:.2f} s) | "
            f"ratio {rates['lit-llm'] / rates['hf']:.2f}x"
        )


def in_loop_cost(args) -> None:
    from lit_llm.cli import main

    defaults = BenchmarkEval()
    data = Path(args.ckpt).parents[1] / "data" if args.ckpt else None
    if data is None or not (data / "manifest.json").exists():
        print("in-loop cost: needs --ckpt inside a `lit-llm demo` run folder (for its data/); skipped")
        return
    run = Path(tempfile.mkdtemp()) / "run"
    config = run.parent / "callbacks.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: lit_llm.callbacks.BenchmarkEval\n"
        f"      init_args: {{every_n_steps: 0, data_dir: {Path(args.data_dir).resolve()}}}\n"
    )
    main(
        [
            "fit",
            "--config",
            str(ROOT / "configs/experiments/tiny_cpu.yaml"),
            "--config",
            str(config),
            "--data.path",
            str(data),
            "--trainer.max_steps",
            str(args.steps),
            "--trainer.log_every_n_steps",
            "1",
            "--trainer.val_check_interval",
            "1000",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.default_root_dir",
            str(run),
        ]
    )
    rows = [r for p in run.glob("logs/version_*/metrics.csv") for r in csv.DictReader(p.open())]
    speeds = [float(r["train/tokens_per_sec"]) for r in rows if r.get("train/tokens_per_sec")][
        2:
    ]  # skip warm-up
    eval_s = [float(r["eval/seconds"]) for r in rows if r.get("eval/seconds")][0]
    tokens_per_step = 12 * 256  # tiny_cpu.yaml: batch 12 x seq 256
    step_s = tokens_per_step / statistics.median(speeds)
    n = defaults.every_n_steps
    print(
        f"in-loop cost: tasks {','.join(defaults.config.tasks)}, limit {defaults.config.limit}: one evaluation {eval_s:.1f} s; "
        f"training step {step_s * 1000:.0f} ms (tiny_cpu.yaml); every {n} steps -> "
        f"{eval_s / (n * step_s + eval_s):.1%} of training time"
    )
    shown = {k: v for k, v in rows[-1].items() if k.startswith("eval/") and v}
    print("scores at the end of the bench fit:", shown)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", help="checkpoint (default: random tiny model over --tokenizer)")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: the checkpoint's)")
    parser.add_argument(
        "--data_dir", default=str(ROOT.parent / "shared" / "data"), help="benchmark data folder"
    )
    parser.add_argument("--batch_size", type=int, default=16, help="batch size of both backends")
    parser.add_argument("--limit", type=int, default=2, help="MMLU questions per subject (57 subjects)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per backend; the best is reported")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--steps", type=int, default=40, help="training steps of the in-loop cost fit")
    parser.add_argument("--skip_loop", action="store_true", help="only the throughput comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # per-request truncation notices of the hf backend
    throughput(args)
    if not args.skip_loop:
        in_loop_cost(args)


if __name__ == "__main__":
    main()
