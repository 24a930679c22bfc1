"""LitLLM builds its GPT on the meta device; `configure_model` materializes it with the eager values."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Trainer

from lit_llm.model import GPT, ModelConfig
from lit_llm.module import LitLLM

TINY = ModelConfig(vocab_size=1000, n_layer=2, n_head=4, n_kv_head=2, d_model=64, max_seq_len=64)
ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "configs" / "model"


def resident_bytes() -> int:
    """This process's resident memory (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


def test_materialized_weights_equal_an_eager_gpt_of_the_same_seed():
    torch.manual_seed(7)
    eager = GPT(TINY)
    torch.manual_seed(7)
    module = LitLLM(arch=TINY)
    assert all(p.is_meta for p in module.model.parameters())
    torch.rand(100)  # randomness drawn between construction and configure_model changes nothing
    module.configure_model()
    for (name, mine), (_, theirs) in zip(module.model.state_dict().items(), eager.state_dict().items()):
        assert torch.equal(mine, theirs), name
    assert torch.equal(module.model.rope_cos, eager.rope_cos)


def test_tied_embeddings_stay_tied_after_materializing():
    module = LitLLM(arch=ModelConfig(**{**vars(TINY), "tie_embeddings": True}))
    module.configure_model()
    assert module.model.lm_head.weight is module.model.embed.weight
    assert not module.model.embed.weight.is_meta


def test_constructing_an_8b_model_allocates_no_weights():
    arch = ModelConfig(vocab_size=128256, **yaml.safe_load((PRESETS / "llama-8b.yaml").read_text()))
    before = resident_bytes()
    module = LitLLM(arch=arch)
    grown = resident_bytes() - before
    params = sum(p.numel() for p in module.model.parameters())
    assert params > 8e9 and grown < 2**30, f"{grown / 2**30:.2f} GiB for {params / 1e9:.1f}B parameters"


def test_load_from_checkpoint_fills_the_weights(tmp_path):
    module = LitLLM(arch=TINY)
    module.configure_model()
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=0)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "m.ckpt", weights_only=False)
    loaded = LitLLM.load_from_checkpoint(tmp_path / "m.ckpt", arch=TINY, weights_only=False)
    for (name, a), (_, b) in zip(loaded.model.state_dict().items(), module.model.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_two_fsdp2_ranks_of_llama_1b_hold_well_under_one_fp32_copy_each_until_training(tmp_path):
    """A real two-rank FSDP2 fit of the llama-1b preset (context 64): the peak resident memory of each
    rank up to train start (construction on the meta device, sharding, materializing its shard) stays
    under 0.75 of one fp32 copy of the model (3.87 GiB); bench/bench_init_memory.py measures 0.61 and
    the later peaks."""
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_init_memory import build_data, run

    records = run(build_data(tmp_path / "data"), tmp_path / "run", ranks=2, until_train_start=True)
    one_copy = records[0]["params"] * 4 / 2**30
    assert [r["rank"] for r in records] == [0, 1] and one_copy > 3.8
    for r in records:
        assert r["peak_at_start_gib"] < 0.75 * one_copy, (r, one_copy)
