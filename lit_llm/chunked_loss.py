"""Cross-entropy over the LM head without the full logits: chunk by chunk, gradients made in the forward.

The plain loss materializes logits (N, V) in float32 and, for backward, their gradient of the same
size: at a 128k vocabulary and 8k context that is 4 GB per sequence, twice. Here the head's matmul,
the log-softmax, the (optional) z-loss and the gradient of all of them with respect to the hidden
states and the head weight are computed for `chunk` positions at a time inside the forward pass;
backward only scales the stored gradients. Peak extra memory is one chunk of logits (~128 MiB by default). Loss and
gradients equal the plain computation's to float tolerance (same float32 softmax).

    loss = chunked_cross_entropy(hidden.flatten(0, 1), lm_head.weight, labels.flatten(), vocab_size)
"""

from __future__ import annotations

import torch

from lit_llm.batch import IGNORE_INDEX

CHUNK_BYTES = 128 * 2**20  # float32 logits per chunk: 261 positions at a 128k vocabulary, 8,192 at 4k


def chunk_positions(vocab_size: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Positions per chunk so that one chunk's float32 logits take about `chunk_bytes`."""
    return max(1, chunk_bytes // (4 * vocab_size))


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, vocab_size: int, z_loss: float, chunk: int):
        valid = labels != IGNORE_INDEX
        count = valid.sum().clamp(min=1).float()
        grad_hidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        head = weight[:vocab_size]  # padded vocabulary rows are never scored
        for start in range(0, hidden.shape[0], chunk):
            h, y, keep = (
                hidden[start : start + chunk],
                labels[start : start + chunk],
                valid[start : start + chunk],
            )
            logits = (h @ head.T).float()  # (n, V)
            log_z = torch.logsumexp(logits, dim=-1)  # (n,)
            rows = torch.arange(len(y), device=y.device)
            target = logits[rows, y.clamp(min=0)]
            weight_of_row = keep.float() / count  # mean over the valid targets
            loss += ((log_z - target) * weight_of_row).sum()
            if z_loss:
                loss += z_loss * (log_z.pow(2) * weight_of_row).sum()
            grad = logits.sub_(log_z[:, None]).exp_()  # softmax = d(log_z)/d(logits), in place of the logits
            # d(z log_z^2) = 2 z log_z softmax; the target's logit gets -1
            grad *= (weight_of_row * (1 + 2 * z_loss * log_z))[:, None]
            grad[rows, y.clamp(min=0)] -= weight_of_row
            if grad_hidden is not None:
                grad_hidden[start : start + chunk] = (grad.to(head.dtype) @ head).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight[:vocab_size].addmm_(grad.T, h.float())  # in place: no (V, d) temporary per chunk
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype) if grad_weight is not None else None)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight = ctx.saved_tensors
        scale = [g * grad_output if g is not None else None for g in (grad_hidden, grad_weight)]
        return scale[0], scale[1], None, None, None, None


def chunked_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    vocab_size: int,
    z_loss: float = 0.0,
    chunk: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy (+ z_loss * mean log Z^2) of logits hidden @ weight[:vocab_size].T over the
    labels that are not IGNORE_INDEX; hidden (N, d), weight (V_padded, d), labels (N,); `chunk`
    positions at a time (default: `chunk_positions(vocab_size)`, ~128 MiB of logits)."""
    chunk = chunk or chunk_positions(vocab_size)
    return _ChunkedCrossEntropy.apply(hidden, weight, labels, vocab_size, z_loss, chunk)
