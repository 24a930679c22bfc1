"""Small fixtures built inside the tests: shard folders with known content."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from lightning.pytorch import Callback

from lit_llm.data.shards import Manifest, token_dtype, write_shard
from lit_llm.plot import read_metrics


def make_shard_folder(
    folder: Path,
    vocab_size: int = 96,
    sources: dict[str, float] | None = None,
    docs_per_source: int = 40,
    doc_len: int = 120,
    val_docs: int = 8,
    seed: int = 0,
    tokenizer: dict | None = None,
) -> Path:
    """A dataset folder with one train shard per source and one val shard; tokens follow a learnable pattern."""
    rng = np.random.default_rng(seed)
    sources = sources or {"main": 1.0}
    dtype = token_dtype(vocab_size)
    shards = []

    def documents(n: int) -> list[np.ndarray]:
        # Each document counts up from a random start (mod vocab): easy to learn, so loss falls fast.
        starts = rng.integers(0, vocab_size - 1, size=n)
        return [((s + np.arange(doc_len)) % (vocab_size - 1)).astype(dtype) for s in starts]

    for name in sources:
        entry = write_shard(folder / "train" / f"{name}-00000.bin", documents(docs_per_source), dtype)
        shards.append({"file": f"train/{name}-00000.bin", "split": "train", "source": name, **entry})
    entry = write_shard(folder / "val" / "val-00000.bin", documents(val_docs), dtype)
    shards.append({"file": "val/val-00000.bin", "split": "val", "source": "val", **entry})
    manifest = Manifest(
        folder,
        {
            "format_version": 1,
            "vocab_size": vocab_size,
            "dtype": dtype.name,
            "num_tokens": sum(s["num_tokens"] for s in shards),
            "num_documents": sum(s["num_documents"] for s in shards),
            "tokenizer": tokenizer or {"path": None, "eos_id": vocab_size - 1, "pad_id": None},
            "sources": [{"name": n, "weight": w} for n, w in sources.items()],
            "shards": shards,
            "filters": {},
            "dedup": {"exact_duplicates_removed": 0, "near_duplicates_removed": 0},
        },
    )
    manifest.save()
    return folder


SAMPLE_TEXT = (
    "The quick brown fox jumps over the lazy dog. A stitch in time saves nine. "
    "To be, or not to be, that is the question. All that glitters is not gold. "
    "def add(a, b):\n    return a + b\n\nfor i in range(10):\n    print(i)\n"
)


def make_text_folder(folder: Path, num_docs: int = 60, vocab_size: int = 320, seed: int = 0) -> Path:
    """A real byte-level BPE tokenizer (tokenizer/) and shards of text documents (data/) under folder."""
    import json

    from lit_llm.data.tokenizer_training import train_tokenizer

    rng = np.random.default_rng(seed)
    words = SAMPLE_TEXT.split(" ")
    docs = [" ".join(rng.choice(words, size=int(rng.integers(40, 120)))) for _ in range(num_docs)]
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    tok = train_tokenizer([str(corpus)], folder / "tokenizer", vocab_size=vocab_size, progress=False)
    eos, pad, vocab = tok.eos_id, tok.pad_id, tok.vocab_size
    dtype = token_dtype(vocab)
    encoded = [np.array(ids + [eos], dtype=dtype) for ids in tok.encode_batch(docs)]
    data = folder / "data"
    n_val = max(2, num_docs // 10)
    shards = []
    for split, part in (("train", encoded[n_val:]), ("val", encoded[:n_val])):
        entry = write_shard(data / split / "text-00000.bin", part, dtype)
        num_bytes = sum(len(d.encode()) for d in (docs[n_val:] if split == "train" else docs[:n_val]))
        shards.append(
            {
                "file": f"{split}/text-00000.bin",
                "split": split,
                "source": "text",
                "num_bytes": num_bytes,
                **entry,
            }
        )
    Manifest(
        data,
        {
            "format_version": 1,
            "vocab_size": vocab,
            "dtype": dtype.name,
            "num_tokens": sum(s["num_tokens"] for s in shards),
            "num_documents": num_docs,
            "tokenizer": {
                "path": str((folder / "tokenizer").resolve()),
                "sha256": tok.sha256,
                "eos_id": eos,
                "pad_id": pad,
            },
            "sources": [{"name": "text", "weight": 1.0}],
            "shards": shards,
            "filters": {},
            "dedup": {"exact_duplicates_removed": 0, "near_duplicates_removed": 0},
        },
    ).save()
    return data


# The tiny `lit-llm fit` arguments the tests share (2 x 32 Llama, context 32, batch 4).
TINY = [
    "--model.arch.n_layer",
    "2",
    "--model.arch.n_head",
    "2",
    "--model.arch.d_model",
    "32",
    "--model.arch.max_seq_len",
    "64",
    "--data.seq_len",
    "32",
    "--data.batch_size",
    "4",
    "--trainer.accelerator",
    "cpu",
    "--trainer.enable_model_summary",
    "false",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.log_every_n_steps",
    "1",
    "--model.schedule.warmup_steps",
    "3",
    "--model.optimizer.lr",
    "0.01",
    "--seed_everything",
    "7",
]


def train_losses(run: Path) -> dict[int, str]:
    return {int(r["step"]): r["train/loss"] for r in read_metrics(run) if r.get("train/loss")}


def fit_tiny(data: Path, run: Path, *args: str) -> None:
    """`lit-llm fit` of the tiny config on `data` into `run`, in this process."""
    from lit_llm.cli import main

    main(["fit", *TINY, "--data.path", str(data), "--trainer.default_root_dir", str(run), *args])


class ShardRows(Callback):
    """Writes, per rank, the share of the first block's q_proj rows the rank holds (1.0: a full copy)."""

    def __init__(self, out: str) -> None:
        self.out = out

    def on_train_start(self, trainer, pl_module) -> None:
        weight = pl_module.model.blocks[0].attn.q_proj.weight
        local = weight.to_local() if hasattr(weight, "to_local") else weight
        Path(self.out, f"rank{trainer.global_rank}.json").write_text(
            json.dumps(local.shape[0] / weight.shape[0])
        )


class ShardBytes(Callback):
    """Writes, per rank, the bytes of weights, gradients and AdamW moments the rank holds after its first
    optimizer step (local shards of DTensors), to OUT/bytes-rank{r}.json."""

    def __init__(self, out: str) -> None:
        self.out, self.written = out, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.written:
            return
        self.written = True

        def nbytes(tensors) -> int:
            local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]
            return sum(t.numel() * t.element_size() for t in local)

        params = list(pl_module.parameters())
        moments = [t for s in trainer.optimizers[0].state.values() for k, t in s.items() if k != "step"]
        record = {
            "weights": nbytes(params),
            "gradients": nbytes(p.grad for p in params),
            "optimizer": nbytes(moments),
        }
        Path(self.out, f"bytes-rank{trainer.global_rank}.json").write_text(json.dumps(record))


class StartWeights(Callback):
    """Writes the whole weights as training starts (gathered from the ranks' shards) to OUT/start.pt (rank 0),
    and the share of the model's values each rank holds to OUT/held-rank{r}.json."""

    def __init__(self, out: str) -> None:
        self.out = out

    def on_train_start(self, trainer, pl_module) -> None:
        import torch

        params = dict(pl_module.model.named_parameters())
        full = {n: p.full_tensor() if hasattr(p, "full_tensor") else p for n, p in params.items()}
        held = sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in params.values())
        share = held / sum(p.numel() for p in full.values())
        Path(self.out, f"held-rank{trainer.global_rank}.json").write_text(json.dumps(share))
        if trainer.global_rank == 0:
            torch.save({n: p.detach().cpu() for n, p in full.items()}, Path(self.out, "start.pt"))


def run_ranks(target, args: tuple, n: int = 2, timeout: float = 120) -> None:
    """Fork `n` processes running `target(rank, *args)` and assert they all exit 0 within `timeout` seconds.

    Stops waiting as soon as one fails, and ends those still running (a rank left blocked in a collective
    would otherwise keep pytest from exiting)."""
    import multiprocessing
    import time
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=target, args=(rank, *args)) for rank in range(n)]
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.start()
        running = list(procs)
        while running and time.monotonic() < deadline:
            wait([p.sentinel for p in running], timeout=deadline - time.monotonic())
            running = [p for p in procs if p.exitcode is None]
            if any(p.exitcode not in (None, 0) for p in procs):
                break
        codes = [p.exitcode for p in procs]
        assert codes == [0] * n, f"rank exit codes {codes} (None: still running, ended after the others)"
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
