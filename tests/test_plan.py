"""`lit-llm plan`: its memory model against what a real model, AdamW and autograd hold on CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lit_llm.cli import main
from lit_llm.model import GPT, Block, ModelConfig
from lit_llm.plan import Layout, activation_bytes_per_token, memory_plan, meta_gpt

CONFIGS = [
    ModelConfig(vocab_size=1000, n_layer=2, n_head=4, n_kv_head=2, d_model=128, max_seq_len=128),
    ModelConfig(vocab_size=500, n_layer=3, n_head=4, n_kv_head=4, d_model=192, max_seq_len=128),
]


def saved_for_backward(gpt: GPT, idx: torch.Tensor) -> int:
    """Bytes of the distinct tensors autograd keeps for backward (parameters and buffers excluded)."""
    weights = {t.untyped_storage().data_ptr() for t in [*gpt.parameters(), *gpt.buffers()]}
    kept: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        logits = gpt(idx)
        F.cross_entropy(logits.float().flatten(0, 1), idx.flatten())
    return sum(kept.values())


@pytest.mark.parametrize("checkpointing", [False, True], ids=["full", "checkpointed"])
@pytest.mark.parametrize("config", CONFIGS, ids=["gqa", "mha"])
def test_activation_formula_matches_what_autograd_saves(config, checkpointing):
    torch.manual_seed(0)
    gpt = GPT(config)
    if checkpointing:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

        apply_activation_checkpointing(gpt, check_fn=lambda m: isinstance(m, Block))
    batch, seq = 4, 96
    measured = saved_for_backward(gpt, torch.randint(0, config.vocab_size, (batch, seq)))
    planned = activation_bytes_per_token(config, compute_bytes=4)["checkpointed" if checkpointing else "full"]
    # Not saved in forward, but part of the backward peak the plan reports: the log-softmax gradient
    # (4 V bytes per token) and, with checkpointing, the one block being recomputed.
    d_kv = config.n_kv_head * config.head_size
    block = 4 * (7 * config.d_model + 3 * d_kv + 4 * config.ffn_hidden)
    transient = 4 * config.padded_vocab_size + (block if checkpointing else 0)
    assert (planned - transient) * batch * seq == pytest.approx(measured, rel=0.03)


def test_weights_gradients_and_adamw_state_are_exact_on_one_device():
    config = CONFIGS[0]
    gpt = GPT(config)
    optimizer = torch.optim.AdamW(gpt.parameters())
    gpt(torch.randint(0, config.vocab_size, (2, 16))).sum().backward()
    optimizer.step()
    weights = sum(p.numel() * p.element_size() for p in gpt.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in gpt.parameters())
    moments = sum(
        t.numel() * t.element_size()
        for state in optimizer.state.values()
        for name, t in state.items()
        if name != "step"
    )
    plan = memory_plan(meta_gpt(config), Layout(), micro_batch=2, seq_len=16, compute_bytes=4)
    assert (plan.weights, plan.gradients, plan.optimizer, plan.gathered) == (weights, grads, moments, 0)


def test_sharding_divides_what_it_shards():
    config = CONFIGS[0]
    alone = memory_plan(meta_gpt(config), Layout(), 2, 16, 2)
    fsdp = memory_plan(meta_gpt(config), Layout(world_size=4, fsdp=True), 2, 16, 2)
    tp = memory_plan(meta_gpt(config), Layout(world_size=2, tensor_parallel=2), 2, 16, 2)
    assert fsdp.weights == pytest.approx(alone.weights / 4, abs=1) and fsdp.gathered > 0
    assert alone.weights / 2 < tp.weights < alone.weights  # embedding and head stay whole
    assert tp.activations < alone.activations and fsdp.activations == alone.activations


def test_plan_command_reports_the_preset_and_whether_it_fits(capsys):
    main(["plan", "--config", "configs/experiments/llama_1b_fsdp.yaml"])
    out = capsys.readouterr().out
    assert "1.039B parameters" in out and "16 devices = 16 data-parallel x 1 tensor-parallel, FSDP2" in out
    assert out.count(": fits") == 3
    main(["plan", "--config", "configs/experiments/llama_1b_fsdp.yaml", "--data.batch_size", "64"])
    assert "H100-80GB" in (out := capsys.readouterr().out) and "does NOT fit" in out
    four = ["--trainer.devices", "4", "--trainer.strategy.init_args.data_parallel_size"]
    main(["plan", "--config", "configs/experiments/llama_1b_fsdp.yaml", *four, "8"])
    assert "8 devices = 8 data-parallel" in capsys.readouterr().out  # 4 per node x 2 nodes
    tp2 = ["--trainer.strategy.init_args.tensor_parallel_size", "2"]
    main(["plan", "--config", "configs/experiments/llama_1b_fsdp.yaml", *four, "4", *tp2])
    assert "8 devices = 4 data-parallel x 2 tensor-parallel" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # what `lit-llm fit` would refuse: 16 x 1 on 8 devices
        main(["plan", "--config", "configs/experiments/llama_1b_fsdp.yaml", "--trainer.devices", "4"])
    assert "data_parallel_size 16 x tensor_parallel_size 1 != 8 devices" in capsys.readouterr().err
