"""Peak memory of one training step: the plain loss over whole logits vs the kit's chunked loss.

    .venv/bin/python bench/bench_loss_memory.py                      # vocabulary 128,256, context 2,048
    .venv/bin/python bench/bench_loss_memory.py --vocab 32000 --seq_len 4096

Each variant runs in a fresh process: build a small-width GPT (Llama 3's vocabulary), then one
forward + backward at batch 1. "plain" is the loss as it was before the chunked loss: whole
logits (B, T, V), float32 cross-entropy, autograd's gradient of the same size. "chunked" is what
`LitLLM.training_step` runs now: `GPT.forward(idx, labels=...)`. The figure is the peak resident
memory of the step above the memory held once the model and the batch exist (ru_maxrss, read
before and after), with the loss and the gradient norm to show that both compute the same thing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STEP = """
import json, resource, sys, time, torch, torch.nn.functional as F
from lit_llm.model import GPT, ModelConfig
variant, vocab, seq_len, d_model, n_layer = sys.argv[1], *map(int, sys.argv[2:6])
torch.manual_seed(0)
model = GPT(ModelConfig(vocab_size=vocab, n_layer=n_layer, n_head=4, d_model=d_model, max_seq_len=seq_len))
idx = torch.randint(0, vocab, (1, seq_len)); labels = torch.randint(0, vocab, (1, seq_len))
for p in model.parameters():
    p.grad = torch.zeros_like(p)  # gradients held by both variants: not part of the difference
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if variant == "plain":
    logits = model(idx)
    loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten())
else:
    loss = model(idx, labels=labels)
loss.backward()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
print(json.dumps(dict(step_mib=(peak - before) / 1024, loss=loss.item(), grad_norm=norm.item(), seconds=seconds)))
"""


def run(variant: str, args) -> dict:
    cmd = [
        sys.executable,
        "-c",
        STEP,
        variant,
        str(args.vocab),
        str(args.seq_len),
        str(args.d_model),
        str(args.n_layer),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocab", type=int, default=128_256)
    p.add_argument("--seq_len", type=int, default=2048)
    p.add_argument("--d_model", type=int, default=256)
    p.add_argument("--n_layer", type=int, default=2)
    args = p.parse_args()
    started = time.perf_counter()
    plain, chunked = run("plain", args), run("chunked", args)
    logits_mib = args.seq_len * args.vocab * 4 / 2**20
    print(
        f"GPT {args.n_layer}x{args.d_model}, vocabulary {args.vocab:,}, context {args.seq_len:,}, batch 1; "
        f"one float32 logits tensor = {logits_mib:,.0f} MiB"
    )
    print(f"{'loss':<8} {'step peak MiB':>14} {'step s':>7} {'loss':>9} {'grad norm':>10}")
    for name, r in (("plain", plain), ("chunked", chunked)):
        print(
            f"{name:<8} {r['step_mib']:>14,.0f} {r['seconds']:>7.2f} {r['loss']:>9.5f} {r['grad_norm']:>10.5f}"
        )
    print(
        f"chunked uses {plain['step_mib'] / max(chunked['step_mib'], 1):.1f}x less step memory; "
        f"loss differs by {abs(plain['loss'] - chunked['loss']):.1e}, gradient norm by "
        f"{abs(plain['grad_norm'] - chunked['grad_norm']):.1e} ({time.perf_counter() - started:.0f} s in all; "
        f"peak RSS of this script {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
