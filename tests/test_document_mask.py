"""Document masking: a packed window with positions gives each document the logits it has alone (MHA, GQA,
MQA); without positions nothing changes; FlexAttention (eager, on CPU) equals the dense-mask fallback;
LitLLM trains and validates on batches that carry POSITION_IDS."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

import lit_llm.model
from lit_llm.batch import INPUT_IDS, LABELS, POSITION_IDS, document_positions
from lit_llm.document_mask import dense_mask, document_ids, document_mask
from lit_llm.model import GPT, KVCache, ModelConfig
from lit_llm.module import LitLLM

EOS, V = 0, 97


def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=V, n_layer=2, n_head=4, n_kv_head=2, d_model=32, max_seq_len=320)
    return ModelConfig(**{**base, **kw})


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def packed(lengths: list[int], generator=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A window (T,) of documents of these lengths, each ended by eos but the last (cut by the window)."""
    docs = [torch.randint(1, V, (n,), generator=generator) for n in lengths]
    for doc in docs[:-1]:
        doc[-1] = EOS
    return torch.cat(docs), docs


@pytest.mark.parametrize("kv", [4, 2, 1])
def test_packed_documents_get_the_logits_they_get_alone(kv):
    model = GPT(tiny(n_kv_head=kv)).eval()
    rows = [packed([7, 12, 1, 20]), packed([25, 15])]  # 40 tokens each, documents cut differently
    idx = torch.stack([window for window, _ in rows])  # (2, 40)
    positions = document_positions(idx, EOS)
    with torch.no_grad():
        logits = model(idx, positions=positions)
        for row, (_, docs) in enumerate(rows):
            start = 0
            for doc in docs:
                alone = model(doc[None])[0]
                torch.testing.assert_close(logits[row, start : start + len(doc)], alone, atol=2e-5, rtol=1e-4)
                start += len(doc)
        assert not torch.allclose(logits, model(idx), atol=1e-3)  # the plain causal window differs


def test_without_positions_nothing_changes():
    model = GPT(tiny()).eval()
    idx = torch.randint(0, V, (2, 30))
    with torch.no_grad():
        plain = model(idx)
        assert torch.equal(model(idx, positions=None), plain)
        one_document = torch.arange(30).expand(2, 30)  # a window that is one document: the causal path
        torch.testing.assert_close(model(idx, positions=one_document), plain, atol=2e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="not with a KV cache"):
        model(idx, cache=KVCache(model.config, 2), positions=one_document)


def test_rope_restarts_at_each_document():
    """Within a document RoPE only sees relative offsets, so the logits cannot show the restart: the angles can."""
    model = GPT(tiny()).eval()
    idx = packed([5, 9, 6])[0][None]  # (1, 20)
    positions = document_positions(idx, EOS)
    assert positions[0].tolist() == [*range(5), *range(9), *range(6)]
    seen = {}
    model.blocks[0].register_forward_pre_hook(lambda block, args: seen.update(cos=args[1], sin=args[2]))
    model(idx, positions=positions)
    assert seen["cos"].shape == (1, 1, 20, 8)
    assert torch.equal(seen["cos"][:, 0], model.rope_cos[positions])
    assert torch.equal(seen["sin"][:, 0], model.rope_sin[positions])


def test_mask_is_causal_within_each_document():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 0, 1, 2, 3, 4]])
    assert document_ids(positions).tolist() == [[1, 1, 1, 2, 2, 3], [1, 2, 2, 2, 2, 2]]
    mask = dense_mask(positions)  # (2, 1, 6, 6)
    assert mask.shape == (2, 1, 6, 6)
    assert mask[0, 0, 4].tolist() == [False, False, False, True, True, False]
    assert mask[1, 0, 5].tolist() == [False, True, True, True, True, True]
    assert isinstance(document_mask(positions), torch.Tensor)  # CPU: the dense fallback


def test_flex_attention_equals_the_dense_fallback(monkeypatch):
    """FlexAttention runs eager and forward-only on CPU: enough to check its mask against the dense one, over
    several 128-token blocks (some masked whole) and GQA."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    model = GPT(tiny()).eval()
    windows = [packed([100, 150, 50])[0], packed([10, 290])[0]]
    idx = torch.stack(windows)  # (2, 300)
    positions = document_positions(idx, EOS)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flex_attention called without torch.compile()"
        dense = model(idx, positions=positions)
        monkeypatch.setattr(
            lit_llm.model, "document_mask", lambda p, dropout: document_mask(p, dropout, flex=True)
        )
        flex = model(idx, positions=positions)
    torch.testing.assert_close(flex, dense, atol=2e-5, rtol=1e-4)


def test_gradients_stay_inside_documents():
    model = GPT(tiny())
    idx, docs = packed([9, 11, 20])
    idx = idx[None]  # (1, 40)
    logits = model(idx, positions=document_positions(idx, EOS))
    logits[0, 9:20].sum().backward()  # the second document's logits
    embedding_grad = model.embed.weight.grad
    assert embedding_grad[docs[1]].abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    others = set(torch.cat([docs[0], docs[2]]).tolist()) - set(docs[1].tolist())
    assert embedding_grad[sorted(others)].abs().sum() == 0  # tokens of the other documents do not reach it


def batches(n: int) -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        idx = torch.stack([packed([13, 20, 8], generator)[0], packed([30, 11], generator)[0]])  # (2, 41)
        out.append(
            {
                INPUT_IDS: idx[:, :-1],
                LABELS: idx[:, 1:],
                POSITION_IDS: document_positions(idx[:, :-1], EOS),
            }
        )
    return out


def loss_of(model: GPT, batch: dict, positions: bool) -> float:
    with torch.no_grad():
        logits = model(batch[INPUT_IDS], positions=batch[POSITION_IDS] if positions else None)
        return F.cross_entropy(logits.flatten(0, 1), batch[LABELS].flatten()).item()


def test_litllm_trains_and_validates_with_position_ids(tmp_path):
    module = LitLLM(arch=tiny(max_seq_len=64))
    module.configure_model()  # the weights now, so the step-0 loss can be computed by hand
    batch = batches(1)[0]
    step0 = loss_of(module.model, batch, positions=True)
    assert abs(step0 - loss_of(module.model, batch, positions=False)) > 1e-4
    trainer = Trainer(
        max_steps=1,
        limit_val_batches=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, DataLoader(batches(1), batch_size=None), DataLoader(batches(1), batch_size=None))
    assert trainer.callback_metrics["train/loss"].item() == pytest.approx(step0, abs=1e-5)
    module.model.eval()
    after = loss_of(module.model, batch, positions=True)
    assert after != pytest.approx(step0, abs=1e-6)  # the step changed the weights
    assert trainer.callback_metrics["val/loss"].item() == pytest.approx(after, abs=1e-5)
