"""GPT <-> transformers LlamaForCausalLM parity: logits, round trip, save_pretrained/from_pretrained."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from lit_llm.hf import from_hf, save_hf, to_hf
from lit_llm.model import GPT, ModelConfig

CONFIGS = {
    "mha": dict(vocab_size=203, n_layer=3, n_head=6, n_kv_head=6, d_model=36, ffn_hidden=70),
    "gqa": dict(vocab_size=203, n_layer=3, n_head=6, n_kv_head=3, d_model=60, rope_theta=500000.0),
    "mqa": dict(vocab_size=77, n_layer=2, n_head=4, n_kv_head=1, d_model=24, tie_embeddings=True),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_match_llama_and_round_trip_is_exact(name):
    torch.manual_seed(0)
    gpt = GPT(ModelConfig(max_seq_len=64, **CONFIGS[name])).eval()
    llama = to_hf(gpt).eval()
    x = torch.randint(0, gpt.config.vocab_size, (2, 37))
    with torch.no_grad():
        assert (gpt(x) - llama(x).logits).abs().max() <= 1e-4
        back = from_hf(llama)
        assert back.config == gpt.config
        for (k, a), (_, b) in zip(gpt.state_dict().items(), back.state_dict().items()):
            assert torch.equal(a, b), k


def test_saved_folder_loads_with_auto_model(tmp_path):
    torch.manual_seed(0)
    gpt = GPT(ModelConfig(max_seq_len=64, **CONFIGS["gqa"])).eval()
    save_hf(gpt, tmp_path / "hf", eos_id=1, pad_id=2)
    assert (tmp_path / "hf" / "model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    x = torch.randint(0, 203, (1, 20))
    with torch.no_grad():
        assert (loaded(x).logits - gpt(x)).abs().max() <= 1e-4
    assert loaded.config.eos_token_id == 1 and loaded.config.pad_token_id == 2
    assert from_hf(loaded).config == gpt.config


def test_hf_greedy_generation_matches():
    torch.manual_seed(0)
    gpt = GPT(ModelConfig(max_seq_len=64, **CONFIGS["gqa"])).eval()
    llama = to_hf(gpt).eval()
    prompt = torch.randint(0, 203, (1, 6))
    ours = gpt.generate(prompt, 12, temperature=0.0)
    theirs = llama.generate(prompt, max_new_tokens=12, do_sample=False, min_new_tokens=12, pad_token_id=0)
    assert torch.equal(ours, theirs)
