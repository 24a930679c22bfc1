"""GPT: shapes, causality, KV cache, GQA/MQA equivalences, parameter count, config validation."""

import math

import pytest
import torch
import torch.nn.functional as F

from lit_llm.model import GPT, KVCache, ModelConfig, apply_rope, rope_tables


def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=97, n_layer=2, n_head=4, n_kv_head=2, d_model=32, max_seq_len=48)
    return ModelConfig(**{**base, **kw})


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def test_logits_have_true_vocab_and_padded_rows_are_zero():
    model = GPT(tiny())
    assert model.config.padded_vocab_size == 128
    assert model(torch.randint(0, 97, (3, 11))).shape == (3, 11, 97)
    assert model.embed.weight[97:].abs().sum() == 0 and model.lm_head.weight[97:].abs().sum() == 0


@pytest.mark.parametrize("kv", [4, 2, 1])
def test_causality(kv):
    model = GPT(tiny(n_kv_head=kv)).eval()
    x = torch.randint(0, 97, (2, 20))
    y = x.clone()
    y[:, 12:] = torch.randint(0, 97, (2, 8))
    assert torch.allclose(model(x)[:, :12], model(y)[:, :12], atol=1e-6)
    assert not torch.allclose(model(x)[:, 12:], model(y)[:, 12:])


def naive_attention(q, k, v):
    """Explicit softmax(QK^T / sqrt(d) + causal mask) V with KV heads repeated."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    T = q.shape[2]
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1) @ v


@pytest.mark.parametrize("kv", [4, 2, 1])
def test_attention_matches_naive(kv):
    model = GPT(tiny(n_kv_head=kv)).eval()
    attn, B, T = model.blocks[0].attn, 2, 9
    x = torch.randn(B, T, 32)
    cos, sin = model.rope_cos[:T], model.rope_sin[:T]
    q = apply_rope(attn.q_proj(x).view(B, T, 4, 8).transpose(1, 2), cos, sin)
    k = apply_rope(attn.k_proj(x).view(B, T, kv, 8).transpose(1, 2), cos, sin)
    v = attn.v_proj(x).view(B, T, kv, 8).transpose(1, 2)
    expected = attn.o_proj(naive_attention(q, k, v).transpose(1, 2).reshape(B, T, 32))
    assert torch.allclose(attn(x, cos, sin, None), expected, atol=1e-5)


def test_rope_is_a_rotation_that_preserves_norms():
    cos, sin = rope_tables(8, 16, 10000.0)
    x = torch.randn(1, 1, 16, 8)
    assert torch.allclose(apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    assert torch.allclose(apply_rope(x, cos, sin)[..., 0, :], x[..., 0, :])  # position 0 is unrotated


@pytest.mark.parametrize("kv", [4, 2, 1])
def test_kv_cache_decoding_equals_full_forward(kv):
    model = GPT(tiny(n_kv_head=kv)).eval()
    x = torch.randint(0, 97, (2, 30))
    full = model(x)
    cache = KVCache(model.config, batch_size=2)
    parts = [model(x[:, :10], cache=cache), model(x[:, 10:11], cache=cache), model(x[:, 11:20], cache=cache)]
    assert cache.keys[0].shape[1] == kv  # only the KV heads are cached
    parts += [model(x[:, t : t + 1], cache=cache) for t in range(20, 30)]
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)


@pytest.mark.parametrize(
    "sampling",
    [
        dict(temperature=0.0),
        dict(temperature=0.9, top_k=20, seed=3),
        dict(temperature=1.0, top_p=0.8, seed=7),
    ],
)
def test_generate_with_cache_equals_recomputation(sampling):
    model = GPT(tiny()).eval()
    prompt = torch.randint(0, 97, (2, 5))
    with_cache = model.generate(prompt, 25, use_cache=True, **sampling)
    without = model.generate(prompt, 25, use_cache=False, **sampling)
    assert with_cache.shape == (2, 30) and torch.equal(with_cache, without)
    assert torch.equal(with_cache[:, :5], prompt)


def test_generate_stops_on_stop_token_and_seed_is_reproducible():
    model = GPT(tiny()).eval()
    prompt = torch.randint(0, 97, (6,))
    a = model.generate(prompt, 20, temperature=1.0, seed=11)
    assert torch.equal(a, model.generate(prompt, 20, temperature=1.0, seed=11))
    stop = int(a[8])
    b = model.generate(prompt, 20, temperature=1.0, seed=11, stop_tokens=stop)
    assert int(b[-1]) == stop and len(b) <= len(a) and (b[6:-1] != stop).all()


def test_grouped_query_with_all_heads_equals_multi_head():
    mha, gqa = GPT(tiny(n_kv_head=None)), GPT(tiny(n_kv_head=4))
    gqa.load_state_dict(mha.state_dict())
    x = torch.randint(0, 97, (2, 10))
    assert mha.config.n_kv_head == 4 and torch.equal(mha(x), gqa(x))


def test_mqa_equals_mha_with_shared_key_value_heads():
    mqa, mha = GPT(tiny(n_kv_head=1)).eval(), GPT(tiny(n_kv_head=4)).eval()
    state = mqa.state_dict()
    for name, t in state.items():
        if name.endswith(("k_proj.weight", "v_proj.weight")):
            state[name] = t.repeat(4, 1)  # every query head gets the one shared KV head
    mha.load_state_dict(state)
    x = torch.randint(0, 97, (2, 10))
    assert torch.allclose(mqa(x), mha(x), atol=1e-5)


@pytest.mark.parametrize("tie", [False, True])
def test_param_count_matches_formula(tie):
    cfg = tiny(tie_embeddings=tie)
    model = GPT(cfg)
    d, hs, L, V = cfg.d_model, cfg.head_size, cfg.n_layer, cfg.padded_vocab_size
    per_block = 2 * d + d * cfg.n_head * hs * 2 + 2 * d * cfg.n_kv_head * hs + 3 * d * cfg.ffn_hidden
    expected = V * d * (1 if tie else 2) + L * per_block + d
    assert model.num_params() == expected == sum(p.numel() for p in set(model.parameters()))
    assert model.num_params(non_embedding=True) == L * per_block + d
    assert model.flops_per_token(48) == 6 * (L * per_block + d + V * d) + 12 * L * d * 48


def test_derived_ffn_size_is_llama_style():
    assert ModelConfig(d_model=4096, n_head=32, ffn_multiple_of=256).ffn_hidden == 11008  # Llama 2 7B


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(n_kv_head=3), "must divide"),
        (dict(d_model=30), "divisible"),
        (dict(n_layer=0), "n_layer"),
        (dict(dropout=1.5), "dropout"),
    ],
)
def test_invalid_config_raises_value_error(kw, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kw)


def test_sequence_longer_than_max_seq_len_is_refused():
    with pytest.raises(ValueError, match="max_seq_len"):
        GPT(tiny())(torch.zeros(1, 49, dtype=torch.long))


def test_training_step_reduces_loss():
    model = GPT(tiny())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randint(0, 97, (4, 17))
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.7
    assert model.embed.weight[97:].abs().sum() == 0  # padded rows never train
