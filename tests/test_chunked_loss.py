"""Chunked cross-entropy (lit_llm/chunked_loss.py) equals the plain loss and its gradients."""

import pytest
import torch
import torch.nn.functional as F

from lit_llm.chunked_loss import chunked_cross_entropy


def plain_loss(hidden, weight, labels, vocab, z_loss):
    logits = (hidden @ weight.T)[:, :vocab].float()
    loss = F.cross_entropy(logits, labels, ignore_index=-100)
    valid = labels != -100
    return loss + z_loss * torch.logsumexp(logits[valid], -1).pow(2).mean() if z_loss else loss


@pytest.mark.parametrize("z_loss", [0.0, 1e-4])
@pytest.mark.parametrize("chunk", [7, 64, 4096])
def test_loss_and_gradients_equal_the_plain_computation(z_loss, chunk):
    torch.manual_seed(0)
    hidden = torch.randn(150, 32, requires_grad=True)
    weight = torch.randn(320, 32, requires_grad=True)  # 300 real + 20 padded rows
    labels = torch.randint(0, 300, (150,))
    labels[::7] = -100  # padding is never a target
    expected = plain_loss(hidden, weight, labels, 300, z_loss)
    grads = torch.autograd.grad(expected, (hidden, weight))
    got = chunked_cross_entropy(hidden, weight, labels, 300, z_loss, chunk)
    got_grads = torch.autograd.grad(got * 3.0, (hidden, weight))  # a scaled upstream gradient
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(got_grads[0], 3.0 * grads[0], atol=1e-6)
    assert torch.allclose(got_grads[1], 3.0 * grads[1], atol=1e-6)
    assert (got_grads[1][300:] == 0).all()  # padded vocabulary rows get no gradient


def test_only_the_inputs_that_need_gradients_get_them():
    hidden = torch.randn(10, 8, requires_grad=True)
    weight = torch.randn(16, 8)  # frozen head
    (grad,) = torch.autograd.grad(
        chunked_cross_entropy(hidden, weight, torch.randint(0, 16, (10,)), 16), hidden
    )
    assert grad.shape == hidden.shape
    with torch.no_grad():
        assert chunked_cross_entropy(hidden, weight, torch.randint(0, 16, (10,)), 16).ndim == 0


def test_the_models_training_loss_equals_the_loss_of_its_logits():
    from lit_llm.model import GPT, ModelConfig

    torch.manual_seed(0)
    model = GPT(
        ModelConfig(vocab_size=100, n_layer=2, n_head=2, d_model=32, max_seq_len=16, tie_embeddings=True)
    )
    idx, labels = torch.randint(0, 100, (3, 16)), torch.randint(0, 100, (3, 16))
    labels[0, :5] = -100
    logits = model(idx)
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    expected = (
        expected + 1e-4 * torch.logsumexp(logits.flatten(0, 1)[labels.flatten() != -100], -1).pow(2).mean()
    )
    grads = torch.autograd.grad(expected, list(model.parameters()))
    got = model(idx, labels=labels, z_loss=1e-4)
    got_grads = torch.autograd.grad(got, list(model.parameters()))
    assert torch.allclose(got, expected, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got_grads, grads))  # the tied head included
