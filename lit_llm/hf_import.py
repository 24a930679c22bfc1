"""Start from a Hugging Face model (continued pre-training): `lit-llm fit --model.init_from DIR_OR_HUB_ID`.

    from lit_llm.hf_import import resolve_model, config_from_folder, load_weights
    folder = resolve_model("HuggingFaceTB/SmolLM2-135M")  # a local folder, or a Hub id fetched once into the cache
    config = config_from_folder(folder)                   # a ModelConfig; what GPT lacks is refused in one line
    with torch.device("meta"):
        gpt = GPT(config)
    load_weights(gpt, folder, torch.device("cpu"))        # or, after fully_shard, each rank only its shards

A model folder holds config.json, model.safetensors (or shards listed in model.safetensors.index.json)
and the tokenizer (tokenizer.json, tokenizer_config.json), as `save_pretrained` writes them. Weights are
read tensor by tensor from the memory-mapped safetensors; a GPT sharded by FSDP2 (rows over data-parallel
ranks) reads only the rows of its shard, so no rank ever holds a full copy of the model. Where the
placement is not plain row/column blocks (FSDP2 over tensor parallelism: strided shards) a rank reads one
whole tensor at a time and keeps its part. PyTorch `.bin` checkpoints are pickles and are not read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from pathlib import Path

import torch

from lit_llm.checkpoint import clean_parameter_name
from lit_llm.errors import UserError
from lit_llm.hf import model_config_from_hf, name_map
from lit_llm.model import GPT, ModelConfig, rope_tables
from lit_llm.tokenizer import HF_TOKENIZER_FILES

HUB_FILES = ("config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_VOCAB_ROWS = ("embed.weight", "lm_head.weight")


def resolve_model(name: str, files: tuple[str, ...] = (*HUB_FILES, *HF_TOKENIZER_FILES)) -> Path:
    """The local folder `name` names, or the Hub repo `name` (owner/name) downloaded into the Hugging Face
    cache (only `files`; a cached copy is used offline). One line when neither works."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{name}: a file, not a Hugging Face model folder or Hub id")
        return path
    if not _HUB_ID.match(name):
        raise UserError(f"{name}: no such folder, and not a Hugging Face Hub id (owner/name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, allow_patterns=list(files)))
    except Exception as err:  # offline, not found, gated, network: many types, each one line here
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise UserError(
            f"{name}: cannot fetch it from the Hugging Face Hub ({type(err).__name__}: {first}); download it "
            f"once online (`hf download {name}`, `hf auth login` for gated models) or pass a local folder"
        ) from None


def config_from_folder(folder: Path) -> ModelConfig:
    """The ModelConfig of the model in `folder` (its config.json); one line for what GPT does not have."""
    from transformers import AutoConfig

    if not (folder / "config.json").is_file():
        raise UserError(f"{folder}: no config.json (not a Hugging Face model folder)")
    try:
        hf = AutoConfig.from_pretrained(folder)
    except Exception as err:  # unknown model types, malformed files
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise UserError(f"{folder}/config.json: cannot read it ({type(err).__name__}: {first})") from None
    try:
        return model_config_from_hf(hf)
    except ValueError as err:
        raise UserError(f"{folder}: {' '.join(str(err).split())}") from None


def init_config(init_from: str, arch: ModelConfig | None, vocab_size: int | None) -> tuple[ModelConfig, Path]:
    """(architecture, folder) for `LitLLM(init_from=...)`: `arch` must be unset (or the same), and the data's
    vocabulary (`vocab_size`, linked from the manifest) must be the model's."""
    folder = resolve_model(init_from)
    config = config_from_folder(folder)
    if arch is not None and arch != config:
        fields = [
            f.name for f in dataclasses.fields(config) if getattr(arch, f.name) != getattr(config, f.name)
        ]
        raise UserError(
            f"model.arch differs from {init_from}'s config.json ({', '.join(fields)}): with model.init_from the "
            "architecture is the model's; drop model.arch (--model.arch null)"
        )
    if vocab_size is not None and vocab_size != config.vocab_size:
        raise UserError(
            f"the data's tokenizer has {vocab_size} ids, {init_from} has {config.vocab_size} embedding rows: "
            f"prepare the data with the model's tokenizer (lit-llm data prepare --tokenizer {init_from})"
        )
    return config, folder


def tokenizer_sha256(folder: Path) -> str | None:
    """sha256 of the model's tokenizer.json as `lit_llm.tokenizer` hashes it (None: the folder has none)."""
    file = folder / "tokenizer.json"
    return (
        hashlib.sha256(file.read_text(encoding="utf-8").encode("utf-8")).hexdigest()
        if file.is_file()
        else None
    )


def check_data_tokenizer(folder: Path, datamodule, allowed: bool) -> None:
    """Refuse, in one line, data tokenized by another tokenizer than the model's (unless `allowed`)."""
    data_sha, model_sha = getattr(datamodule, "tokenizer_sha256", None), tokenizer_sha256(folder)
    if data_sha and model_sha and data_sha != model_sha and not allowed:
        raise UserError(
            f"{getattr(datamodule, 'path', 'the data')}: tokenized with another tokenizer (sha256 {data_sha[:12]}) "
            f"than {folder}'s ({model_sha[:12]}); prepare it with --tokenizer {folder}, or pass "
            "--model.allow_tokenizer_change true to train on it deliberately"
        )


class SafetensorsReader:
    """The tensors of a folder's safetensors files (one file or an index of shards), memory-mapped."""

    def __init__(self, folder: Path) -> None:
        from safetensors import safe_open

        index = folder / "model.safetensors.index.json"
        if index.is_file():
            self.where = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        else:
            files = sorted(p.name for p in folder.glob("*.safetensors"))
            if not files:
                raise UserError(
                    f"{folder}: no model.safetensors (only safetensors weights are read; a pytorch_model.bin is "
                    "a pickle: convert it with transformers' save_pretrained(safe_serialization=True))"
                )
            self.where = {}
            for name in files:
                with safe_open(folder / name, framework="pt") as handle:
                    self.where.update(dict.fromkeys(handle.keys(), name))
        self.folder = folder
        self.handles = {
            name: safe_open(folder / name, framework="pt") for name in sorted(set(self.where.values()))
        }

    def slice(self, name: str):
        if name not in self.where:
            raise UserError(f"{self.folder}: {name} is missing from the safetensors files")
        return self.handles[self.where[name]].get_slice(name)


def local_box(param: torch.Tensor) -> list[tuple[int, int]] | None:
    """Per dimension, the [start, stop) of the global tensor this rank holds of `param` (a DTensor with plain
    Shard/Replicate placements: torch.chunk's split, mesh dimensions in order); None for other placements."""
    box = [(0, n) for n in param.shape]
    mesh = getattr(param, "device_mesh", None)
    if mesh is None:
        return box
    from torch.distributed.tensor import Shard

    for mesh_dim, placement in enumerate(param.placements):
        if placement.is_replicate():
            continue
        if type(placement) is not Shard:  # _StridedShard (FSDP2 over tensor parallel), Partial
            return None
        start, stop = box[placement.dim]
        chunk = math.ceil((stop - start) / mesh.size(mesh_dim))
        low = min(start + mesh.get_local_rank(mesh_dim) * chunk, stop)
        box[placement.dim] = (low, min(low + chunk, stop))
    return box


def _fill(param: torch.Tensor, reader: SafetensorsReader, hf_name: str, rows: int) -> int:
    """Copy this rank's part of `hf_name` (`rows` rows in the file; the parameter's further rows are zero
    padding) into `param`; return the number of elements read."""
    part = reader.slice(hf_name)
    expected = [rows, *param.shape[1:]]
    if list(part.get_shape()) != expected:
        raise UserError(
            f"{reader.folder}: {hf_name} has shape {part.get_shape()}, config.json implies {expected}"
        )
    local = param.to_local() if hasattr(param, "to_local") else param
    box = local_box(param)
    if box is None or [b - a for a, b in box] != list(local.shape):
        from torch.distributed.tensor import distribute_tensor

        full = torch.zeros(param.shape, dtype=local.dtype)
        full[:rows] = part[:]
        local.copy_(
            distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None).to_local()
        )
        return full.numel()
    (start, stop), *rest = box
    local.zero_()
    read = min(stop, rows) - min(start, rows)
    if read > 0:
        data = part[(slice(start, start + read), *(slice(a, b) for a, b in rest))]
        local[:read].copy_(data)
        return data.numel()
    return 0


def load_weights(model: GPT, folder: Path, device: torch.device) -> int:
    """Allocate a GPT built on the meta device (sharded or not) on `device` and fill it with the weights of
    the Hugging Face model in `folder` (vocabulary rows past vocab_size zero); return the elements this
    process read."""
    config = model.config
    names = name_map(config.n_layer)
    model.to_empty(device=device)
    model.tie_weights()  # to_empty unties them; a tied model's file may hold no lm_head.weight
    reader, read = SafetensorsReader(folder), 0
    with torch.no_grad():
        for name, param in model.named_parameters():
            name = clean_parameter_name(name)
            rows = config.vocab_size if name in _VOCAB_ROWS else param.shape[0]
            read += _fill(param, reader, names[name], rows)
        cos, sin = rope_tables(config.head_size, config.max_seq_len, config.rope_theta, config.rope_scaling)
        model.rope_cos, model.rope_sin = cos.to(device), sin.to(device)
    return read
