"""`lit-llm export` on a real tiny run (data prepare with filters, dedup and decontamination, fit, evaluate):
the Hugging Face folder in transformers (generate, left-padded batches, truncation), file modes, the model
card, GGUF files read back with gguf's reader, and the one-line errors (no gguf package, push offline).

    .venv/bin/python -m pytest tests/test_export.py -q
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import gguf  # the dev extra installs it (the export extra's package)
import numpy as np
import pytest
import torch

from lit_llm.checkpoint import load_gpt
from lit_llm.cli import main
from lit_llm.gguf_export import permute_qk, write_gguf
from lit_llm.hf import to_hf
from lit_llm.model import GPT, ModelConfig, apply_rope, rope_tables
from lit_llm.tokenizer import load_tokenizer
from tests.helpers import TINY

_rng = np.random.default_rng(5)
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
WORDS = sorted({"".join(_rng.choice(_SYLLABLES, size=int(_rng.integers(2, 4)))) for _ in range(2000)})
STOP = ["the", "and", "of", "to", "that", "with", "have", "be"]
LEAKED = (
    "the quick benchmark question asks how many marbles remain after seven children take three marbles each"
)


def prose(rng: np.random.Generator, sentences: int = 9) -> str:
    """A document the default prose filters keep: sentences with stop words, no repetition."""
    lines = []
    for _ in range(sentences):
        words = [*rng.choice(WORDS, size=int(rng.integers(10, 16))), *rng.choice(STOP, 2, replace=False)]
        rng.shuffle(words)
        lines.append(" ".join(words).capitalize() + ".")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """RUN/: tokenizer, data (a junk document filtered, an exact duplicate, a leaked benchmark item),
    a 4-step fit with validation, and `lit-llm evaluate` perplexity results."""
    from lit_llm.data.decontaminate import DecontaminateConfig
    from lit_llm.data.prepare import prepare_dataset
    from lit_llm.data.tokenizer_training import train_tokenizer

    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    docs = [prose(rng) for _ in range(40)]
    docs += [docs[3], "Buy now!", f"{prose(rng, 6)}\n{LEAKED.capitalize()}.\n{prose(rng, 3)}"]
    corpus = root / "web.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    (root / "house_eval.jsonl").write_text(json.dumps({"text": LEAKED}) + "\n")
    (root / "benchmarks").mkdir()
    train_tokenizer([str(corpus)], root / "tokenizer", vocab_size=320, progress=False)
    prepare_dataset(
        sources=[{"paths": [str(corpus)], "name": "web"}],
        tokenizer=str(root / "tokenizer"),
        output=str(root / "data"),
        num_workers=0,
        progress=False,
        decontaminate=DecontaminateConfig(
            data_dir=str(root / "benchmarks"), extra_files=[str(root / "house_eval.jsonl")]
        ),
    )
    out = root / "run"
    fit = ["--trainer.max_steps", "4", "--trainer.val_check_interval", "2"]
    main(["fit", *TINY, "--data.path", str(root / "data"), *fit, "--trainer.default_root_dir", str(out)])
    (root / "held_out.txt").write_text("\n\n".join(prose(rng) for _ in range(3)))
    evaluate = ["--tasks", "perplexity", "--text_file", str(root / "held_out.txt"), "--limit", "2"]
    main(["evaluate", "--ckpt_path", str(out), *evaluate, "--bootstrap_iters", "0", "--progress", "false"])
    return out


@pytest.fixture(scope="module")
def hf_dir(run, tmp_path_factory) -> Path:
    old = os.umask(0o022)
    try:
        out = tmp_path_factory.mktemp("hf") / "tiny-web"
        main(["export", "--ckpt_path", str(run), "--out", str(out)])
    finally:
        os.umask(old)
    return out


def test_export_files_are_world_readable(hf_dir):
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in hf_dir.iterdir()}
    assert "model.safetensors" in modes and "README.md" in modes and "generation_config.json" in modes
    assert set(modes.values()) == {0o644}, modes


def test_tokenizer_config_serves_generate_batches_and_truncation(hf_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((hf_dir / "tokenizer_config.json").read_text())
    assert config["model_input_names"] == ["input_ids", "attention_mask"] and config["padding_side"] == "left"
    assert config["model_max_length"] == 64  # TINY's context
    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    generation = json.loads((hf_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == tok.eos_token_id and generation["pad_token_id"] == tok.pad_token_id
    single = tok("Ba the", return_tensors="pt")
    assert set(single) == {"input_ids", "attention_mask"}  # no token_type_ids for generate to reject
    prompts = ["Ba the", "Zo and ki of the mu to pe"]
    batch = tok(prompts, return_tensors="pt", padding=True)
    assert batch["input_ids"][0, 0] == tok.pad_token_id  # padded on the left
    new = dict(max_new_tokens=10, min_new_tokens=10, do_sample=False)
    rows = model.generate(**batch, **new)[:, batch["input_ids"].shape[1] :]
    for prompt, row in zip(prompts, rows):
        one = tok(prompt, return_tensors="pt")
        assert row.tolist() == model.generate(**one, **new)[0, one["input_ids"].shape[1] :].tolist()
    assert len(tok("mu " * 500, truncation=True)["input_ids"]) == 64


def test_model_card_tells_data_training_and_scores(run, hf_dir):
    card = (hf_dir / "README.md").read_text()
    manifest = json.loads((run.parent / "data" / "manifest.json").read_text())
    _, info = load_gpt(run)
    assert card.startswith("---\nlibrary_name: transformers") and "# tiny-web" in card
    assert (
        f"| tokens seen | {info.tokens_seen:,} |" in card
        and f"| optimizer steps | {info.global_step} |" in card
    )
    source = manifest["sources"][0]
    assert (
        f"| web | {source['kind']} | 1 | {source['documents_read']:,} | {source['documents_after_filters']:,} |"
        in card
    )
    for name, counts in manifest["filters"]["per_filter"].items():
        assert f"| {name} | {counts['documents_in']:,} | {counts['documents_removed']:,} |" in card
    assert sum(c["documents_removed"] for c in manifest["filters"]["per_filter"].values()) >= 1  # "Buy now!"
    assert manifest["dedup"]["exact_duplicates_removed"] == 1
    assert "Deduplication removed 1 exact and 0 near duplicates" in card
    assert manifest["decontamination"]["documents_removed"] == 1
    assert "| house_eval | 1 |" in card and "Decontamination removed 1 of" in card
    val = json.loads((run / "eval" / "last.json").read_text())["results"]["perplexity"]
    assert f"| perplexity | bits_per_byte | {val['bits_per_byte,none']:.4f} |" in card
    assert "final validation loss | " in card and "final validation bits per byte | " in card
    assert "| context length | 64 |" in card and "| layers | 2 |" in card
    assert "## Intended use and limits" in card and "not instruction-tuned" in card


def test_model_card_without_decontamination_or_manifest(run):
    from lit_llm.model_card import gather_facts, render_card

    gpt, info = load_gpt(run)
    facts = gather_facts(gpt, info)
    del facts.manifest["decontamination"]  # a manifest made before decontamination existed
    assert "Decontamination: not recorded in the manifest" in render_card(facts, "x")
    facts.manifest = None
    assert "no data manifest was found" in render_card(facts, "x")


def read_gguf(path: Path) -> tuple[dict, dict]:
    reader = gguf.GGUFReader(path)
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    return fields, {t.name: t for t in reader.tensors}


@pytest.mark.parametrize("file_type", ["f32", "f16", "q8_0"])
def test_gguf_export_reads_back(run, tmp_path, file_type):
    main(
        ["export", "--ckpt_path", str(run), "--out", str(tmp_path / "g"), "--format", "gguf"]
        + ["--gguf_type", file_type]
    )
    path = tmp_path / "g" / f"model-{file_type}.gguf"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
    assert (
        "FROM ./model-" in (tmp_path / "g" / "Modelfile").read_text()
        and (tmp_path / "g" / "README.md").exists()
    )
    fields, tensors = read_gguf(path)
    gpt, info = load_gpt(run)
    c, tok = gpt.config, load_tokenizer(info.tokenizer_path)
    expected = expected_metadata(c, tok)
    assert {k: fields[k] for k in expected} == expected
    assert fields["llama.rope.freq_base"] == c.rope_theta
    assert fields["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(c.norm_eps)
    assert fields["tokenizer.ggml.tokens"] == [tok.id_to_token(i) for i in range(tok.vocab_size)]
    merges = json.loads((info.tokenizer_path / "tokenizer.json").read_text())["model"]["merges"]
    assert fields["tokenizer.ggml.merges"] == [" ".join(m) for m in merges]
    names = {f"blk.{i}.{n}.weight" for i in range(c.n_layer) for n in LAYER_TENSORS}
    assert set(tensors) == names | {"token_embd.weight", "output_norm.weight", "output.weight"}
    hf = to_hf(gpt).state_dict()
    q = tensors["blk.1.attn_q.weight"]
    assert list(q.shape) == [c.d_model, c.d_model] and list(tensors["blk.1.attn_k.weight"].shape) == [
        c.d_model,
        c.n_kv_head * c.head_size,
    ]
    assert list(tensors["token_embd.weight"].shape) == [c.d_model, c.vocab_size]  # unpadded, ggml order
    want = permute_qk(hf["model.layers.1.self_attn.q_proj.weight"], c.n_head).numpy()
    assert np.allclose(
        dequantize(q), want, atol={"f32": 0, "f16": 1e-3, "q8_0": 2e-2}[file_type] * np.abs(want).max()
    )
    assert (
        q.tensor_type.name == file_type.upper()
        and tensors["blk.1.attn_norm.weight"].tensor_type.name == "F32"
    )


def expected_metadata(c: ModelConfig, tok) -> dict:
    """The GGUF keys llama.cpp reads for a llama model and a gpt2 vocabulary, and their values."""
    return {
        "general.architecture": "llama",
        "llama.context_length": c.max_seq_len,
        "llama.embedding_length": c.d_model,
        "llama.block_count": c.n_layer,
        "llama.feed_forward_length": c.ffn_hidden,
        "llama.attention.head_count": c.n_head,
        "llama.attention.head_count_kv": c.n_kv_head,
        "llama.vocab_size": c.vocab_size,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.eos_token_id": tok.eos_id,
        "tokenizer.ggml.padding_token_id": tok.pad_id,
        "tokenizer.ggml.add_bos_token": False,
    }


LAYER_TENSORS = (
    "attn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_norm",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
)


def dequantize(tensor) -> np.ndarray:
    data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    return data.reshape(list(reversed(tensor.shape.tolist())))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_gguf_tied_embeddings_have_no_output_tensor(run, tmp_path):
    tok = load_tokenizer(load_gpt(run)[1].tokenizer_path)
    gpt = GPT(
        ModelConfig(
            vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_kv_head=1, d_model=32, tie_embeddings=True
        )
    )
    _, tensors = read_gguf(write_gguf(gpt, tmp_path / "tied.gguf", tok.path, "f32"))
    assert "output.weight" not in tensors and "token_embd.weight" in tensors


def test_qk_permutation_turns_rotate_half_into_llama_cpp_pairs():
    """Attention scores q_i . k_j are the same with HF's rotary layout (rotate halves) on the original
    rows and llama.cpp's (rotate adjacent pairs) on the permuted ones: why the GGUF weights run right."""
    torch.manual_seed(0)
    n_head, hs, t = 3, 8, 5
    x = torch.randn(t, 24)
    wq, wk = torch.randn(n_head * hs, 24), torch.randn(n_head * hs, 24)
    cos, sin = rope_tables(hs, t, 10000.0)

    def hf(w):
        return apply_rope((x @ w.T).view(1, t, n_head, hs).transpose(1, 2), cos, sin)[0]  # (nh, T, hs)

    def llama_cpp(w):
        v = (x @ permute_qk(w, n_head).T).view(t, n_head, hs // 2, 2)  # adjacent pairs (v0, v1)
        angle = torch.outer(torch.arange(t).float(), 10000.0 ** (-torch.arange(0, hs, 2).float() / hs))
        c, s = angle.cos()[:, None], angle.sin()[:, None]  # (T, 1, hs/2)
        pairs = torch.stack([v[..., 0] * c - v[..., 1] * s, v[..., 0] * s + v[..., 1] * c], dim=-1)
        return pairs.reshape(t, n_head, hs).transpose(0, 1)  # (nh, T, hs)

    scores = hf(wq) @ hf(wk).transpose(-1, -2)
    assert torch.allclose(scores, llama_cpp(wq) @ llama_cpp(wk).transpose(-1, -2), atol=1e-4)


def test_gguf_without_the_package_is_one_line(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf raises ImportError
    with pytest.raises(SystemExit) as exit:
        main(["export", "--ckpt_path", str(run), "--out", str(tmp_path / "g"), "--format", "gguf"])
    err = capsys.readouterr().err
    assert exit.value.code == 1 and err.count("\n") == 1 and "pip install 'lit-llm[export]'" in err


def test_push_to_hub_offline_is_one_line(run, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SystemExit) as exit:
        main(["export", "--ckpt_path", str(run), "--out", str(tmp_path / "hf"), "--push_to_hub", "me/tiny"])
    err = capsys.readouterr().err.splitlines()
    assert exit.value.code == 1 and err == [
        "lit-llm: error: cannot push to me/tiny: HF_HUB_OFFLINE is set (unset it to upload)"
    ]
    assert not (tmp_path / "hf").exists()  # refused before any export work


def test_push_to_hub_without_network_is_one_line(run, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: connection refused
    out = tmp_path / "m.gguf"
    with pytest.raises(SystemExit) as exit:
        main(
            [
                "export",
                "--ckpt_path",
                str(run),
                "--out",
                str(out),
                "--format",
                "gguf",
                "--push_to_hub",
                "me/t",
            ]
        )
    err = capsys.readouterr().err.splitlines()
    assert (
        exit.value.code == 1 and len(err) == 1 and err[0].startswith("lit-llm: error: cannot push to me/t: ")
    )
    assert out.exists()  # the export itself is done
