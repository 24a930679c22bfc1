"""Continued pre-training from a Hugging Face model (`lit-llm fit --model.init_from`), on small random Llamas made
here with `transformers` (no Hub): config and weights imported with equal logits, refusals in one line, a stock
tokenizer (no <|endoftext|>, no <|pad|>) through `data prepare`, a fit that lowers the validation loss, export
reloaded in transformers, a Hub id offline, each FSDP2 rank reading only its shards, and a two-process FSDP2 fit
starting from the source weights.

    .venv/bin/python -m pytest tests/test_init_from.py -q
"""

from __future__ import annotations

import copy
import datetime
import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from lit_llm.cli import main
from lit_llm.errors import UserError
from lit_llm.hf_import import config_from_folder, load_weights, resolve_model
from lit_llm.model import GPT
from lit_llm.plot import read_metrics
from lit_llm.tokenizer import load_tokenizer
from tests.eval.fixtures import WORDS as FIXTURE_WORDS
from tests.helpers import make_shard_folder, run_ranks

WORDS = [*FIXTURE_WORDS, "café", "naïve", "river", "stone"]  # accents: bytes of two per character
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
}


def texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))) for _ in range(n)]


def save_stock_tokenizer(folder: Path) -> int:
    """A SentencePiece-style BPE (Metaspace, byte fallback) with only <unk>, <s>, </s>, saved by transformers'
    `save_pretrained` as Llama 2 / Mistral ship theirs; returns its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    tok.train_from_iterator(texts(200, 0), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(folder)
    return len(fast)


def save_llama(folder: Path, vocab_size: int, kind: str = "llama", seed: int = 0, **overrides) -> Path:
    """A random 2-layer, width-32 Llama (or Mistral) saved with `save_pretrained` (config.json, safetensors)."""
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    shape = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    shape.update(num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5)
    overrides = copy.deepcopy(overrides)  # transformers adds rope_theta into a rope_scaling dict it is given
    shape.update(bos_token_id=1, eos_token_id=2, vocab_size=vocab_size, **overrides)
    config_class, model_class = (
        (MistralConfig, MistralForCausalLM) if kind == "mistral" else (LlamaConfig, LlamaForCausalLM)
    )
    torch.manual_seed(seed)
    model = model_class(config_class(**shape))
    with torch.no_grad():  # norms away from 1, so a norm read wrongly shows in the logits
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(folder)
    return folder


def imported(folder: Path) -> GPT:
    with torch.device("meta"):
        gpt = GPT(config_from_folder(folder))
    load_weights(gpt, folder, torch.device("cpu"))
    return gpt.eval()


def max_logit_difference(gpt, folder: Path, vocab_size: int) -> float:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    x = torch.randint(0, vocab_size, (2, 100), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float((gpt(x) - hf(x).logits).abs().max())


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tied, grouped-query Llama 3-style model (rope_theta 5e5, llama3 RoPE scaling) with a stock tokenizer."""
    folder = tmp_path_factory.mktemp("hf") / "tiny-llama"
    vocab = save_stock_tokenizer(folder)
    return save_llama(folder, vocab, rope_theta=500000.0, rope_scaling=LLAMA3_ROPE, tie_word_embeddings=True)


CASES = {
    "gqa-untied": dict(),
    "tied-llama3-rope": dict(rope_theta=500000.0, rope_scaling=LLAMA3_ROPE, tie_word_embeddings=True),
    "mha-linear-rope": dict(num_key_value_heads=4, rope_scaling={"rope_type": "linear", "factor": 4.0}),
    "mqa-theta": dict(num_key_value_heads=1, rope_theta=1e6, rms_norm_eps=1e-6),
}


@pytest.mark.parametrize("case", CASES)
def test_imported_logits_equal_the_source_model(case, tmp_path):
    folder = save_llama(tmp_path, 77, **CASES[case])
    gpt = imported(folder)
    source = json.loads((folder / "config.json").read_text())
    assert gpt.config.tie_embeddings == source["tie_word_embeddings"]
    assert gpt.config.norm_eps == source["rms_norm_eps"]
    assert gpt.config.n_kv_head == source["num_key_value_heads"]
    assert max_logit_difference(gpt, folder, 77) <= 1e-5


def test_a_transformers_4_config_layout_is_read_the_same(model, tmp_path):
    """Llama 3.1's config.json as transformers 4.x writes it: rope_theta beside rope_scaling ("type" in older
    files), no rope_parameters."""
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(model / name, tmp_path / name)
    config = json.loads((model / "config.json").read_text())
    rope = config.pop("rope_parameters")
    config["rope_theta"] = rope.pop("rope_theta")
    config["rope_scaling"] = {**rope, "type": rope.pop("rope_type")}
    (tmp_path / "config.json").write_text(json.dumps(config))
    gpt = imported(tmp_path)
    assert gpt.config.rope_scaling == LLAMA3_ROPE and gpt.config.rope_theta == 500000.0
    assert max_logit_difference(gpt, tmp_path, gpt.config.vocab_size) <= 1e-5


def test_mistral_without_sliding_window_is_imported(tmp_path):
    folder = save_llama(tmp_path, 77, kind="mistral", sliding_window=None)
    assert max_logit_difference(imported(folder), folder, 77) <= 1e-5


@pytest.mark.parametrize(
    "change, named",
    [
        (dict(kind="qwen2"), "model_type 'qwen2'"),
        (dict(kind="mistral", sliding_window=64), "sliding_window=64"),
        (dict(attention_bias=True), "attention_bias"),
        (dict(mlp_bias=True), "mlp_bias"),
        (dict(hidden_act="gelu"), "hidden_act='gelu'"),
        (dict(rope_scaling={"rope_type": "yarn", "factor": 4.0}), "'yarn'"),
        (dict(head_dim=16), "head_dim=16"),
    ],
)
def test_other_architectures_are_refused_in_one_line(change, named, tmp_path):
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    kind = change.pop("kind", "llama")
    config_class = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[kind]
    shape = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    config_class(vocab_size=77, max_position_embeddings=128, **shape, **change).save_pretrained(tmp_path)
    with pytest.raises(UserError) as err:
        config_from_folder(tmp_path)
    assert named in str(err.value) and "\n" not in str(err.value)


def test_missing_or_pickled_weights_are_refused(model, tmp_path):
    shutil.copy(model / "config.json", tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"a pickle")
    with pytest.raises(UserError, match="only safetensors"):
        imported(tmp_path)
    from safetensors.torch import save_file

    save_file({"model.embed_tokens.weight": torch.zeros(2, 2)}, tmp_path / "model.safetensors")
    with pytest.raises(UserError, match="shape"):
        imported(tmp_path)


def test_module_configured_with_init_from_has_the_source_logits(model):
    from lit_llm.module import LitLLM

    vocab = load_tokenizer(model).vocab_size
    module = LitLLM(init_from=str(model), vocab_size=vocab)
    assert module.model_config.rope_scaling == LLAMA3_ROPE and module.model_config.rope_theta == 500000.0
    module.configure_model()
    assert max_logit_difference(module.model.eval(), model, vocab) <= 1e-5


# ---------------------------------------------------------------- stock tokenizers


def with_config(model: Path, folder: Path, **fields) -> Path:
    folder.mkdir()
    shutil.copy(model / "tokenizer.json", folder / "tokenizer.json")
    config = {**json.loads((model / "tokenizer_config.json").read_text()), **fields}
    (folder / "tokenizer_config.json").write_text(
        json.dumps({k: v for k, v in config.items() if v is not None})
    )
    return folder


def test_stock_tokenizer_separates_with_its_eos_and_has_no_pad(model, tmp_path):
    tok = load_tokenizer(model)
    assert (tok.eos_token, tok.eos_id, tok.pad_id, tok.bos_id) == ("</s>", 2, None, 1)
    # a pad equal to the separator (TinyLlama) would hide every document end from the loss: dropped
    assert load_tokenizer(with_config(model, tmp_path / "a", pad_token="</s>")).pad_id is None
    assert load_tokenizer(with_config(model, tmp_path / "b", pad_token="<unk>")).pad_id == 0
    # no eos_token: <|endoftext|> when the vocabulary has it, else the bos_token
    assert load_tokenizer(with_config(model, tmp_path / "c", eos_token=None)).eos_id == 1
    with pytest.raises(UserError, match="no token to end documents"):
        load_tokenizer(with_config(model, tmp_path / "d", eos_token=None, bos_token=None))
    # bits per byte: "▁" is one byte (a space), "é" two
    lengths = tok.token_byte_lengths()
    for token, i in tok._plain.get_vocab().items():
        if token not in ("<unk>", "<s>", "</s>"):
            assert lengths[i] == len(token.replace("\u2581", " ").encode()), token
    assert lengths[0] == lengths[1] == lengths[2] == 0


@pytest.fixture(scope="module")
def data(model, tmp_path_factory) -> Path:
    """`lit-llm data prepare --tokenizer MODEL_FOLDER` on local text (a train and a validation source)."""
    root = tmp_path_factory.mktemp("text")
    docs = texts(140, 1)
    for name, part in (("train", docs[:120]), ("val", docs[120:])):
        (root / f"{name}.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in part))
    sources = [
        {"paths": [str(root / "train.jsonl")], "name": "text", "filters": "none"},
        {"paths": [str(root / "val.jsonl")], "name": "val", "split": "val", "filters": "none"},
    ]
    out = root / "data"
    main(
        ["data", "prepare", "--sources", json.dumps(sources), "--tokenizer", str(model), "--output", str(out)]
        + ["--progress", "false", "--num_workers", "0", "--decontaminate.enabled", "false"]
        + ["--dedup.minhash.enabled", "false"]
    )
    return out


def test_prepare_records_the_separator_and_no_pad_and_copies_only_the_tokenizer(data, model):
    from lit_llm.data.shards import Shard

    manifest = json.loads((data / "manifest.json").read_text())
    info = manifest["tokenizer"]
    assert (info["eos_id"], info["pad_id"], info["bos_id"], info["eos_token"]) == (2, None, 1, "</s>")
    assert sorted(p.name for p in (data / "tokenizer").iterdir()) == [
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    tok = load_tokenizer(data / "tokenizer")
    shard = Shard(data / next(s["file"] for s in manifest["shards"] if s["split"] == "val"))
    docs = [shard.document(i) for i in range(shard.num_documents)]
    assert all(d[-1] == 2 and 2 not in d[:-1] for d in docs)  # every document ends in </s>, once
    assert sorted(tok.decode(d[:-1].tolist()) for d in docs) == sorted(texts(140, 1)[120:])


# ---------------------------------------------------------------- fit, export, reload


def source_val_loss(model: Path, data: Path) -> float:
    """The source model's (transformers) loss on the validation windows `lit-llm fit` validates on."""
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from lit_llm.data.datamodule import LitDataModule

    dm = LitDataModule(str(data), seq_len=32, batch_size=4)
    dm.setup("validate")
    hf = AutoModelForCausalLM.from_pretrained(model).eval()
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for batch in dm.val_dataloader():
            logits = hf(batch["input_ids"]).logits
            nll += float(F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), reduction="sum"))
            tokens += batch["labels"].numel()
    return nll / tokens


EXPORTED_KEYS = ("rope_parameters", "tie_word_embeddings", "rms_norm_eps", "bos_token_id", "eos_token_id")
EXPORTED_KEYS += ("num_key_value_heads", "max_position_embeddings", "head_dim", "vocab_size", "model_type")


def test_continued_pretraining_lowers_validation_loss_exports_and_resumes(model, data, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lit_llm.checkpoint import load_gpt
    from lit_llm.export import export_checkpoint

    run = tmp_path / "run"
    fit = ["fit", "--model.init_from", str(model), "--data.path", str(data), "--data.seq_len", "32"]
    fit += [
        "--data.batch_size",
        "4",
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
    ]
    fit += [
        "--trainer.enable_model_summary",
        "false",
        "--seed_everything",
        "7",
        "--trainer.default_root_dir",
        str(run),
    ]
    fit += [
        "--trainer.val_check_interval",
        "12",
        "--model.optimizer.lr",
        "0.01",
        "--model.schedule.warmup_steps",
        "3",
    ]
    main([*fit, "--trainer.max_steps", "12"])
    before = source_val_loss(model, data)
    after = [float(r["val/loss"]) for r in read_metrics(run) if r.get("val/loss")][-1]
    assert after < before - 0.5, (before, after)

    out = export_checkpoint(run, tmp_path / "hf")
    source, exported = (json.loads((f / "config.json").read_text()) for f in (model, out))
    assert {k: exported[k] for k in EXPORTED_KEYS} == {k: source[k] for k in EXPORTED_KEYS}
    assert (out / "tokenizer.json").read_bytes() == (model / "tokenizer.json").read_bytes()
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    gpt, info = load_gpt(run)
    assert info.global_step == 12
    x = torch.randint(0, gpt.config.vocab_size, (2, 60), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert float((gpt(x) - reloaded(x).logits).abs().max()) <= 1e-5
    assert AutoTokenizer.from_pretrained(out).eos_token == "</s>"

    def not_again(*args):
        raise AssertionError("a resume read init_from's weights")

    monkeypatch.setattr("lit_llm.hf_import.load_weights", not_again)  # the checkpoint replaces them
    main([*fit, "--trainer.max_steps", "14", "--ckpt_path", "last", "--trainer.limit_val_batches", "1"])
    assert load_gpt(run)[1].global_step == 14


def run_fit(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--trainer.accelerator", "cpu", *args])
    assert exit.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_data_of_another_vocabulary_or_an_arch_with_init_from_is_refused_in_one_line(model, tmp_path, capsys):
    other = make_shard_folder(tmp_path / "other", vocab_size=96)
    line = run_fit(["--model.init_from", str(model), "--data.path", str(other)], capsys)
    assert "96 ids" in line and "--tokenizer" in line
    same = make_shard_folder(tmp_path / "same", vocab_size=load_tokenizer(model).vocab_size)
    line = run_fit(
        ["--model.init_from", str(model), "--data.path", str(same), "--model.arch.n_layer", "3"], capsys
    )
    assert "model.arch differs" in line and "n_layer" in line


def test_a_hub_id_offline_is_one_line(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(
        UserError, match="lit-llm-tests/no-such-model: cannot fetch it from the Hugging Face Hub"
    ):
        resolve_model("lit-llm-tests/no-such-model")
    data = make_shard_folder(tmp_path / "data")
    line = run_fit(["--model.init_from", "lit-llm-tests/no-such-model", "--data.path", str(data)], capsys)
    assert "hf download lit-llm-tests/no-such-model" in line
    (tmp_path / "a.txt").write_text("some text")
    with pytest.raises(SystemExit):
        main(
            ["data", "prepare", "--input", str(tmp_path / "a.txt"), "--output", str(tmp_path / "out")]
            + ["--tokenizer", "lit-llm-tests/no-such-model"]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot fetch it from the Hugging Face Hub" in err[0], err


# ---------------------------------------------------------------- sharded loading


def _load_sharded(rank: int, init: str, folder: str, out: str) -> None:
    """One of two gloo processes: FSDP2 over 2 ranks (plain row shards: each rank reads its rows), then
    tensor parallel 2 under FSDP2 (strided shards: whole tensors read, parts kept); writes what it found."""
    from torch.distributed.device_mesh import init_device_mesh

    from lit_llm.parallel import apply_tensor_parallel, shard_with_fsdp2

    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=init, rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60)
    )
    try:
        found = {}
        for layout, shape in (("fsdp", (2,)), ("tp", (1, 2))):
            names = ("data_parallel", "tensor_parallel")[: len(shape)]
            mesh = init_device_mesh("cpu", shape, mesh_dim_names=names)
            with torch.device("meta"):
                gpt = GPT(config_from_folder(Path(folder)))
            if layout == "tp":
                apply_tensor_parallel(gpt, mesh)
            shard_with_fsdp2(gpt, mesh)
            read = load_weights(gpt, Path(folder), torch.device("cpu"))
            full = {name: p.full_tensor() for name, p in gpt.named_parameters()}
            found[layout] = {"read": read, "held": sum(p.to_local().numel() for p in gpt.parameters())}
            if rank == 0:
                torch.save(full, Path(out) / f"{layout}.pt")
        Path(out, f"rank{rank}.json").write_text(json.dumps(found))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_fsdp2_ranks_read_only_their_shards_and_assemble_the_model(model, tmp_path):
    """Two gloo ranks forked from the test process (no re-imports)."""
    run_ranks(_load_sharded, (f"file://{tmp_path}/process-group", str(model), str(tmp_path)))
    gpt = imported(model)
    expected, config = dict(gpt.named_parameters()), gpt.config
    padding = (config.padded_vocab_size - config.vocab_size) * config.d_model  # zero rows, in no file
    total = sum(p.numel() for p in expected.values()) - padding
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert sum(r["fsdp"]["read"] for r in ranks) == total  # each weight read once, by the rank that holds it
    assert all(r["fsdp"]["read"] <= r["fsdp"]["held"] for r in ranks)
    for layout in ("fsdp", "tp"):
        for name, tensor in torch.load(tmp_path / f"{layout}.pt").items():
            assert torch.equal(tensor, expected[name].detach()), (layout, name)


@pytest.mark.slow
def test_two_process_fsdp2_fit_starts_from_the_source_weights_and_trains(model, data, tmp_path):
    """`lit-llm fit --model.init_from` on two gloo processes under FSDP2: as training starts the gathered
    weights are the source's, each rank holding half of them, and the validation loss falls."""
    from tests.helpers import TINY
    from tests.test_distributed import lit_llm
    from tests.test_strategy import FSDP2

    callback = {"class_path": "tests.helpers.StartWeights", "init_args": {"out": str(tmp_path)}}
    (tmp_path / "callbacks.json").write_text(json.dumps({"trainer": {"callbacks": [callback]}}))
    trainer = TINY[TINY.index("--trainer.accelerator") :]  # no arch flags: the architecture is the source's
    run = tmp_path / "run"
    lit_llm(
        ["fit", "--model.init_from", str(model), "--data.path", str(data), "--data.seq_len", "32"]
        + ["--data.batch_size", "2", *trainer, *FSDP2, "--trainer.max_steps", "12"]
        + ["--trainer.val_check_interval", "12", "--trainer.default_root_dir", str(run)]
        + ["--config", str(tmp_path / "callbacks.json")]
    )
    expected = dict(imported(model).named_parameters())
    start = torch.load(tmp_path / "start.pt")
    assert start.keys() == expected.keys()
    for name, tensor in start.items():
        assert torch.equal(tensor, expected[name].detach()), name
    assert [json.loads((tmp_path / f"held-rank{r}.json").read_text()) for r in range(2)] == [0.5, 0.5]
    after = [float(r["val/loss"]) for r in read_metrics(run) if r.get("val/loss")][-1]
    assert after < source_val_loss(model, data) - 0.5


def test_plan_reads_the_architecture_of_init_from(model, data, capsys):
    main(["plan", "--model.init_from", str(model), "--data.path", str(data), "--data.seq_len", "32"])
    out = capsys.readouterr().out
    assert (
        "2 x 32, 4 heads / 2 KV heads" in out and f"vocabulary {load_tokenizer(model).vocab_size}" in out
    ), out
