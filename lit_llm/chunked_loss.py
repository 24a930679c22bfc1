"""Cross-entropy over the LM head without the full logits: chunk by chunk, gradients made in the forward.

The plain loss materializes logits (N, V) in float32 and, for backward, their gradient of the same
size: at a 128k vocabulary and 8k context that is 4 GB per sequence, twice. Here the head's matmul,
the log-softmax, the (optional) z-loss and the gradient of all of them with respect to the hidden
states and the head weight are computed for `chunk` positions at a time inside the forward pass;
backward only scales the stored gradients. Peak extra memory is one chunk of logits. Loss and
gradients equal the plain computation's to float tolerance (same float32 softmax).

    loss = chunked_cross_entropy(hidden.flatten(0, 1), lm_head.weight, labels.flatten(), vocab_size)
"""

from __future__ import annotations

import torch

from lit_llm.batch import IGNORE_INDEX

DEFAULT_CHUNK = 4096  # positions per chunk: 4096 x 128k vocabulary x 4 bytes = 2 GiB of float32 logits


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
            target = logits.gather(1, y.clamp(min=0)[:, None]).squeeze(1)
            loss += ((log_z - target) * keep).sum() / count
            grad = torch.softmax(logits, dim=-1)  # d(log_z)/d(logits), reused in place
            if z_loss:
                loss += z_loss * (log_z.pow(2) * keep).sum() / count
                grad *= 1 + 2 * z_loss * log_z[:, None]  # d(z log_z^2) = 2 z log_z softmax
            grad[torch.arange(len(y), device=y.device), y.clamp(min=0)] -= 1.0
            grad *= (keep.float() / count)[:, None]
            if grad_hidden is not None:
                grad_hidden[start : start + chunk] = (grad.to(head.dtype) @ head).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight[:vocab_size] += grad.T @ h.float()
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
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """Mean cross-entropy (+ z_loss * mean log Z^2) of logits hidden @ weight[:vocab_size].T over the
    labels that are not IGNORE_INDEX; hidden (N, d), weight (V_padded, d), labels (N,)."""
    return _ChunkedCrossEntropy.apply(hidden, weight, labels, vocab_size, z_loss, chunk)
