"""Optimizer construction (lit_llm/optim.py): AdamW groups, Muon for the blocks' matrices, refusals."""

import subprocess
import sys

import pytest
import torch

from lit_llm.model import GPT, ModelConfig
from lit_llm.muon import MuonAdamW
from lit_llm.optim import OptimizerConfig, build_optimizer


@pytest.fixture
def model():
    return GPT(ModelConfig(vocab_size=100, n_layer=2, n_head=2, d_model=32, max_seq_len=16))


def test_adamw_decays_matrices_but_not_embeddings_or_norms(model):
    opt = build_optimizer(model, OptimizerConfig(weight_decay=0.1))
    assert isinstance(opt, torch.optim.AdamW)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert any(p is model.lm_head.weight for p in decay["params"])
    assert any(p is model.embed.weight for p in no_decay["params"])


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest(model):
    cfg = OptimizerConfig(kind="muon", lr=3e-3, muon_lr=0.05, muon_weight_decay=0.01)
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, MuonAdamW)
    muon, decay, no_decay = opt.param_groups
    block_matrices = [p for b in model.blocks for p in b.parameters() if p.dim() == 2]
    assert muon["algorithm"] == "muon" and len(muon["params"]) == len(block_matrices) == 14
    assert {id(p) for p in muon["params"]} == {id(p) for p in block_matrices}
    assert (muon["lr"], muon["weight_decay"], muon["ns_dtype"]) == (0.05, 0.01, "float32")  # CPU: float32
    assert decay["algorithm"] == no_decay["algorithm"] == "adamw" and decay["lr"] == 3e-3
    assert [p is model.lm_head.weight for p in decay["params"]] == [True]
    norms = [p for n, p in model.named_parameters() if "norm" in n]
    assert len(no_decay["params"]) == len(norms) + 1  # the embedding and every norm


@pytest.mark.parametrize("kind", ["adamw", "muon"])
def test_embedding_lr_gives_the_embedding_its_own_group_and_the_schedule_scales_it(model, kind):
    opt = build_optimizer(model, OptimizerConfig(kind=kind, lr=3e-3, embedding_lr=0.2))
    embedding = [g for g in opt.param_groups if any(p is model.embed.weight for p in g["params"])]
    assert len(embedding) == 1 and embedding[0]["params"] == [model.embed.weight]
    assert (embedding[0]["lr"], embedding[0]["weight_decay"]) == (0.2, 0.0)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    assert embedding[0]["lr"] == 0.1 and scheduler.get_last_lr()
    tied = GPT(
        ModelConfig(vocab_size=100, n_layer=1, n_head=2, d_model=32, max_seq_len=16, tie_embeddings=True)
    )
    groups = build_optimizer(tied, OptimizerConfig(kind=kind, lr=3e-3, embedding_lr=0.2)).param_groups
    assert all(g["lr"] != 0.2 for g in groups)  # a tied embedding is the LM head: it keeps lr


def test_muon_refuses_sharded_weights_in_one_line():
    # A real DTensor on a one-process gloo group, in a child process (the suite keeps no process group).
    code = """
import os, torch, torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import distribute_tensor, Shard
from lit_llm.model import GPT, ModelConfig
from lit_llm.optim import OptimizerConfig, build_optimizer
from lit_llm.errors import UserError
import tempfile
dist.init_process_group("gloo", init_method="file://" + tempfile.mktemp(), rank=0, world_size=1)
model = GPT(ModelConfig(vocab_size=100, n_layer=1, n_head=2, d_model=32, max_seq_len=16))
mesh = init_device_mesh("cpu", (1,))
w = model.blocks[0].attn.q_proj
w.weight = torch.nn.Parameter(distribute_tensor(w.weight.detach(), mesh, [Shard(0)]))
try:
    build_optimizer(model, OptimizerConfig(kind="muon"))
except UserError as err:
    print("REFUSED:", err)
build_optimizer(model, OptimizerConfig(kind="adamw"))
dist.destroy_process_group()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "REFUSED: model.optimizer.kind=muon needs whole weight matrices" in out.stdout


def test_a_muon_run_checkpoints_its_state_and_resumes_bit_exact(data, tmp_path):
    from tests.helpers import fit_tiny, train_losses

    muon = [
        "--model.optimizer.kind",
        "muon",
        "--model.arch.dropout",
        "0.1",
        "--checkpoint.every_n_steps",
        "3",
    ]
    fit_tiny(data, tmp_path / "full", *muon, "--trainer.max_steps", "6")
    step3 = tmp_path / "full" / "checkpoints" / "step-000003.ckpt"
    state = torch.load(step3, weights_only=False)["optimizer_states"][0]
    groups = state["param_groups"]
    assert [g["algorithm"] for g in groups] == ["muon", "adamw", "adamw"]
    assert "model.blocks.0.attn.q_proj.weight" in groups[0]["params"]  # named, not positional
    assert set(state["state"]["model.blocks.0.attn.q_proj.weight"]) == {"momentum_buffer"}
    assert set(state["state"]["model.embed.weight"]) == {"step", "exp_avg", "exp_avg_sq"}
    fit_tiny(data, tmp_path / "resumed", *muon, "--trainer.max_steps", "6", "--ckpt_path", str(step3))
    full, resumed = train_losses(tmp_path / "full"), train_losses(tmp_path / "resumed")
    assert [resumed[s] for s in (3, 4, 5)] == [full[s] for s in (3, 4, 5)]  # bit for bit, as text
