"""MuonAdamW (lit_llm/muon.py): one Muon step against a straightforward reference and torch.optim.Muon,
AdamW groups equal torch.optim.AdamW, state round trip, orthogonalization."""

import copy
import math

import pytest
import torch

from lit_llm.muon import MuonAdamW, orthogonalize


def reference_muon_step(weight, grad, buf, lr, momentum, weight_decay):
    """Muon written out plainly (float32): Nesterov momentum, 5 quintic Newton-Schulz steps, decay, step."""
    buf = momentum * buf + (1 - momentum) * grad
    update = (1 - momentum) * grad + momentum * buf
    x = update.T if update.shape[0] > update.shape[1] else update
    x = x / x.norm()
    for _ in range(5):
        gram = x @ x.T
        x = 3.4445 * x + (-4.7750 * gram + 2.0315 * gram @ gram) @ x
    x = x.T if update.shape[0] > update.shape[1] else x
    scale = 0.2 * math.sqrt(max(weight.shape))  # match_rms_adamw
    return weight * (1 - lr * weight_decay) - lr * scale * x, buf


def losses(params, x):
    w, v, bias = params
    return (torch.tanh(x @ w.T) @ v.T + bias).pow(2).mean()


@pytest.fixture
def parameters():
    torch.manual_seed(0)
    return [torch.randn(48, 16) / 4, torch.randn(8, 48) / 4, torch.randn(8)]


def test_one_muon_step_equals_the_reference_computation(parameters):
    w, v, bias = (torch.nn.Parameter(p.clone()) for p in parameters)
    opt = MuonAdamW(
        [{"params": [w, v], "algorithm": "muon"}, {"params": [bias]}],
        lr=0.01,
        weight_decay=0.1,
        ns_dtype="float32",
    )
    x = torch.randn(4, 16)
    expected_w, expected_v = w.detach().clone(), v.detach().clone()
    for step in range(2):
        losses((w, v, bias), x).backward()
        bufs = [opt.state[p].get("momentum_buffer", torch.zeros_like(p)).clone() for p in (w, v)]
        grads = [w.grad.clone(), v.grad.clone()]
        opt.step()
        opt.zero_grad()
        expected_w, _ = reference_muon_step(expected_w, grads[0], bufs[0], 0.01, 0.95, 0.1)
        expected_v, _ = reference_muon_step(expected_v, grads[1], bufs[1], 0.01, 0.95, 0.1)
        assert torch.allclose(w, expected_w, atol=1e-5) and torch.allclose(v, expected_v, atol=1e-5), step
        expected_w, expected_v = w.detach().clone(), v.detach().clone()


def test_groups_equal_torch_muon_and_adamw_exactly(parameters):
    ours = [torch.nn.Parameter(p.clone()) for p in parameters]
    theirs = [torch.nn.Parameter(p.clone()) for p in parameters]
    opt = MuonAdamW(
        [
            {"params": ours[:2], "algorithm": "muon", "lr": 0.02, "weight_decay": 0.05},
            {"params": ours[2:], "lr": 3e-3, "weight_decay": 0.1},
        ],
        adjust_lr="original",
    )
    muon = torch.optim.Muon(theirs[:2], lr=0.02, weight_decay=0.05, adjust_lr_fn="original")
    adamw = torch.optim.AdamW(theirs[2:], lr=3e-3, weight_decay=0.1, betas=(0.9, 0.95))
    for _ in range(3):
        x = torch.randn(4, 16)
        losses(ours, x).backward()
        losses(theirs, x).backward()
        for o in (opt, muon, adamw):
            o.step()
            o.zero_grad()
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert torch.equal(opt.state[ours[0]]["momentum_buffer"], muon.state[theirs[0]]["momentum_buffer"])
    assert torch.equal(opt.state[ours[2]]["exp_avg_sq"], adamw.state[theirs[2]]["exp_avg_sq"])


def test_state_dict_round_trip_continues_identically(parameters):
    def make(ps):
        return MuonAdamW([{"params": ps[:2], "algorithm": "muon"}, {"params": ps[2:]}], ns_dtype="float32")

    a = [torch.nn.Parameter(p.clone()) for p in parameters]
    opt_a = make(a)
    x = torch.randn(4, 16)
    losses(a, x).backward()
    opt_a.step()
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    opt_b = make(b)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as a checkpoint would: no shared tensors
    for params, opt in ((a, opt_a), (b, opt_b)):
        opt.zero_grad()
        losses(params, x).backward()
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_orthogonalize_flattens_the_singular_values_and_refuses_vectors():
    matrix = torch.randn(64, 24) * torch.logspace(0, 1, 24)  # condition number ~10 and more
    before = torch.linalg.svdvals(matrix)
    after = torch.linalg.svdvals(orthogonalize(matrix, dtype=torch.float32))
    assert before.max() / before.min() > 10
    assert after.min() > 0.5 and after.max() < 1.25  # Keller's iteration: near 1, not exactly 1
    with pytest.raises(ValueError, match="2-D"):
        MuonAdamW([{"params": [torch.nn.Parameter(torch.zeros(3))], "algorithm": "muon"}])
