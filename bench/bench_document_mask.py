"""The CPU cost of document masking: a training step and attention alone, masked against plain causal.

    .venv/bin/python bench/bench_document_mask.py                    # GPT 4 x 256, T=512, B=8, vocab 8192
    .venv/bin/python bench/bench_document_mask.py --n_layer 2 --seq_len 1024 --doc_median 800

Windows of B x T tokens are packed from documents whose lengths follow a log-normal (median
`doc_median` tokens, sigma 1: web text has many short pages and a long tail), cut at window edges as
the data module cuts them; positions come from `lit_llm.batch.document_positions`. On CPU document
masking is SDPA with a dense boolean (B, 1, T, T) mask (`lit_llm.document_mask`); plain training is
SDPA with is_causal. Both are timed in this process, forward + backward, alternating the two and
taking the median of each, so background load hits both alike. Prints ms per step and the ratio
masked / unmasked for the whole model (embedding to LM head, mask building included) and for the
attention kernel alone, in wall time and in the process's CPU time (steadier on a shared machine;
use --threads 1 there). On CUDA document masking runs FlexAttention instead: not measured here.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from lit_llm.batch import document_positions
from lit_llm.document_mask import dense_mask
from lit_llm.model import GPT, ModelConfig

EOS = 0


def packed_windows(batch: int, seq_len: int, doc_median: float, vocab: int, seed: int = 0) -> torch.Tensor:
    """(B, T) token ids: documents of log-normal lengths, each ended by EOS, cut into windows."""
    rng = np.random.default_rng(seed)
    tokens: list[np.ndarray] = []
    total = 0
    while total < batch * seq_len:
        length = max(1, int(rng.lognormal(np.log(doc_median), 1.0)))
        doc = rng.integers(1, vocab, size=length)
        doc[-1] = EOS
        tokens.append(doc)
        total += length
    flat = np.concatenate(tokens)[: batch * seq_len]
    return torch.from_numpy(flat).view(batch, seq_len).long()


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(name: str, plain, masked, repeats: int, warmup: int = 2) -> None:
    """Print the medians of plain() and masked(), measured alternately after a warm-up, and their ratios."""
    for _ in range(warmup):
        plain(), masked()
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(plain))
        b.append(timed(masked))
    (wall_a, cpu_a), (wall_b, cpu_b) = ([statistics.median(t) for t in zip(*x)] for x in (a, b))
    print(
        f"{name}: causal {wall_a * 1e3:8.1f} ms, document-masked {wall_b * 1e3:8.1f} ms, ratio "
        f"{wall_b / wall_a:.3f} (CPU time: {cpu_a * 1e3:8.1f} / {cpu_b * 1e3:8.1f} ms, ratio {cpu_b / cpu_a:.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n_layer", type=int, default=4)
    parser.add_argument("--d_model", type=int, default=256)
    parser.add_argument("--n_head", type=int, default=4)
    parser.add_argument("--n_kv_head", type=int, default=None)
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--seq_len", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--doc_median", type=float, default=300.0, help="median document length (tokens)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, T = args.batch_size, args.seq_len
    config = ModelConfig(
        vocab_size=args.vocab_size,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_kv_head=args.n_kv_head,
        d_model=args.d_model,
        max_seq_len=T,
    )
    model = GPT(config)
    idx = packed_windows(B, T, args.doc_median, args.vocab_size)
    positions = document_positions(idx, EOS)
    docs = int((positions == 0).sum())
    print(
        f"GPT {config.n_layer} x {config.d_model} ({config.n_head} heads, {config.n_kv_head} kv), vocab "
        f"{config.vocab_size}, B={B} T={T}, {torch.get_num_threads()} threads; documents: median "
        f"{args.doc_median:.0f} tokens, {docs / B:.1f} per window (cut pieces included)"
    )
    kept = dense_mask(positions).float().mean().item() / ((T + 1) / (2 * T))  # of the causal pairs
    print(f"query-key pairs the document mask removes: {100 * (1 - kept):.0f}% of the causal ones")

    def step(positions_or_none):
        def run():
            model.zero_grad(set_to_none=True)
            model(idx, positions=positions_or_none).float().logsumexp(-1).mean().backward()

        return run

    compare("training step (forward + backward)", step(None), step(positions), args.repeats)

    hs, nh, nkv = config.head_size, config.n_head, config.n_kv_head
    q = torch.randn(B, nh, T, hs, requires_grad=True)
    k = torch.randn(B, nkv, T, hs, requires_grad=True)
    v = torch.randn(B, nkv, T, hs, requires_grad=True)
    gqa = nkv != nh
    mask = dense_mask(positions)

    def attention(**kw):
        def run():
            F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa, **kw).sum().backward()

        return run

    one_layer = "attention alone, one layer (forward + backward)"
    compare(one_layer, attention(is_causal=True), attention(attn_mask=mask), args.repeats * 3)
    build = statistics.median(timed(lambda: dense_mask(positions))[0] for _ in range(args.repeats))
    print(f"building the (B, 1, T, T) mask: {build * 1e3:.2f} ms per step ({mask.numel() / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
