"""`lit-llm plan`: memory per device and expected throughput of a run, before it is launched.

    lit-llm plan --config configs/experiments/llama_1b_fsdp.yaml
    lit-llm plan --config configs/experiments/llama_1b_fsdp.yaml --trainer.devices 8 --trainer.num_nodes 4

It reads the same config as `lit-llm fit` (nothing is instantiated: the model is built on the meta
device, so a 70B config plans in a second) and prints the parameters, the memory of one device
(weights, gradients, AdamW state, activations with and without activation checkpointing) and the
tokens/s expected on A100/H100/H200 at a stated MFU, and says whether the run fits.

Memory model (bytes; P parameters, per-device share after sharding; tokens = micro-batch x seq_len):
- weights, gradients: 4 P each (float32; FSDP2 reduces gradients in float32); AdamW: 8 P.
- FSDP2 also holds two gathered blocks (the one running and the prefetched one) in the compute dtype.
- activations saved for backward, per token: c * (L * (7 d + 3 d_kv + 4 f) + 3 d) + 8 V, with c the
  compute dtype's bytes (4 for 32-true, 2 for bf16), d the width, d_kv the key/value width, f the
  SwiGLU width, V the padded vocabulary (log-softmax kept in float32, and its gradient at the peak).
  With activation checkpointing a block keeps only its input (c * d per token) and one block's
  activations exist at a time during backward. Tensor parallelism divides the block terms (and, with
  its sequence parallelism, the checkpointed block inputs) by its size; the embedding, the LM head and
  the logits stay whole on every tensor-parallel rank.
  The formula is the measured one: `tests/test_plan.py` compares it with the tensors autograd saves.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from lit_llm.errors import UserError, one_line_parse_error
from lit_llm.model import GPT, ModelConfig

GIB = 2**30
# Dense bf16 peak FLOP/s and memory of one GPU (datasheets: A100 SXM 80 GB, H100 SXM, H200 SXM).
GPUS = {"A100-80GB": (312e12, 80 * GIB), "H100-80GB": (989e12, 80 * GIB), "H200-141GB": (989e12, 141 * GIB)}
USABLE = 0.9  # of a device's memory: CUDA context, allocator fragmentation and NCCL buffers take the rest


@dataclass
class Layout:
    """How a run is laid over devices."""

    world_size: int = 1
    tensor_parallel: int = 1
    fsdp: bool = False
    """Parameters, gradients and optimizer state sharded over the data-parallel ranks (FSDP2)."""

    @property
    def data_parallel(self) -> int:
        return self.world_size // self.tensor_parallel


@dataclass
class MemoryPlan:
    """Bytes per device."""

    weights: int
    gradients: int
    optimizer: int
    gathered: int
    activations: int
    activations_checkpointed: int

    def total(self, activation_checkpointing: bool) -> int:
        act = self.activations_checkpointed if activation_checkpointing else self.activations
        return self.weights + self.gradients + self.optimizer + self.gathered + act


def meta_gpt(config: ModelConfig) -> GPT:
    """The model on the meta device: its parameter shapes without memory."""
    with torch.device("meta"):
        return GPT(config)


def activation_bytes_per_token(config: ModelConfig, compute_bytes: int, tensor_parallel: int = 1) -> dict:
    """Bytes kept for backward per token, without and with activation checkpointing (see the module doc)."""
    d, f, layers = config.d_model, config.ffn_hidden, config.n_layer
    d_kv = config.n_kv_head * config.head_size
    block = compute_bytes * (7 * d + 3 * d_kv + 4 * f) / tensor_parallel
    outside = compute_bytes * 3 * d + 8 * config.padded_vocab_size
    return {
        "full": layers * block + outside,
        "checkpointed": layers * compute_bytes * d / tensor_parallel + block + outside,  # inputs split by SP
    }


def memory_plan(gpt: GPT, layout: Layout, micro_batch: int, seq_len: int, compute_bytes: int) -> MemoryPlan:
    """Bytes per device of weights, gradients, AdamW state, gathered blocks and activations of `gpt`
    (built on the meta device: `meta_gpt`)."""
    config = gpt.config
    total = gpt.num_params()
    block_params = sum(p.numel() for p in gpt.blocks[0].parameters())
    in_blocks = block_params * config.n_layer
    per_device = (total - in_blocks) + in_blocks / layout.tensor_parallel  # TP shards the blocks only
    if layout.fsdp:
        per_device /= layout.data_parallel
    gathered = 2 * block_params / layout.tensor_parallel * compute_bytes if layout.fsdp else 0
    act = activation_bytes_per_token(config, compute_bytes, layout.tensor_parallel)
    tokens = micro_batch * seq_len
    return MemoryPlan(
        weights=int(4 * per_device),
        gradients=int(4 * per_device),
        optimizer=int(8 * per_device),
        gathered=int(gathered),
        activations=int(act["full"] * tokens),
        activations_checkpointed=int(act["checkpointed"] * tokens),
    )


def format_plan(
    config: ModelConfig,
    layout: Layout,
    micro_batch: int,
    seq_len: int,
    compute_bytes: int,
    activation_checkpointing: bool,
    mfu: float,
) -> str:
    """The report `lit-llm plan` prints."""
    gpt = meta_gpt(config)
    plan = memory_plan(gpt, layout, micro_batch, seq_len, compute_bytes)
    flops_per_token = gpt.flops_per_token(seq_len)
    strategy = "FSDP2" if layout.fsdp else "replicated (DDP)"
    lines = [
        f"model      {gpt.num_params() / 1e9:.3f}B parameters ({gpt.num_params(non_embedding=True) / 1e9:.3f}B "
        f"non-embedding): {config.n_layer} x {config.d_model}, {config.n_head} heads / {config.n_kv_head} "
        f"KV heads, SwiGLU {config.ffn_hidden}, vocabulary {config.vocab_size}",
        f"layout     {layout.world_size} devices = {layout.data_parallel} data-parallel x "
        f"{layout.tensor_parallel} tensor-parallel, {strategy}; micro-batch {micro_batch} x {seq_len} tokens, "
        f"compute in {'bf16/fp16' if compute_bytes == 2 else 'float32'}",
        "memory per device",
        f"  weights (fp32)            {plan.weights / GIB:9.2f} GiB",
        f"  gradients (fp32)          {plan.gradients / GIB:9.2f} GiB",
        f"  AdamW state (2 x fp32)    {plan.optimizer / GIB:9.2f} GiB",
        f"  gathered blocks (FSDP2)   {plan.gathered / GIB:9.2f} GiB",
        f"  activations               {plan.activations / GIB:9.2f} GiB",
        f"  activations, checkpointed {plan.activations_checkpointed / GIB:9.2f} GiB",
        f"  total                     {plan.total(False) / GIB:9.2f} GiB without activation checkpointing, "
        f"{plan.total(True) / GIB:.2f} GiB with it"
        + (" (this config uses it)" if activation_checkpointing else " (this config does not use it)"),
        f"throughput at {mfu:.0%} MFU (dense bf16 peak; {USABLE:.0%} of memory usable)",
    ]
    need = plan.total(activation_checkpointing)
    for name, (peak, memory) in GPUS.items():
        rate = mfu * peak / flops_per_token  # tokens/s of one device
        fits = "fits" if need <= USABLE * memory else "does NOT fit"
        lines.append(
            f"  {name:<11} {rate:>12,.0f} tokens/s per device, {rate * layout.world_size:>14,.0f} in all; "
            f"{need / GIB:.1f} of {memory / GIB:.0f} GiB: {fits}"
        )
    return "\n".join(lines)


def compute_bytes_of(precision: str | None, fsdp_param_dtype: str | None) -> int:
    """Bytes of the dtype matmuls and saved activations use: FSDP2's parameter dtype when set, else the
    Lightning precision's (as TokenThroughput reads it)."""
    from lit_llm.callbacks.throughput import compute_dtype

    dtype = getattr(torch, fsdp_param_dtype) if fsdp_param_dtype else compute_dtype(precision or "32-true")
    return dtype.itemsize


def plan_main(args: list[str]) -> None:
    """`lit-llm plan ARGS`: parse a fit config (the model, data and trainer sections) and print its plan."""
    config = _parse(args)
    model, data, trainer = config.model, config.data, config.trainer
    if model.init_from:  # continued pre-training: the Hugging Face model's architecture and vocabulary
        from lit_llm.hf_import import config_from_folder, resolve_model

        arch = config_from_folder(resolve_model(model.init_from))
    else:
        fields = {k: v for k, v in vars(model.arch).items() if not k.startswith("__")} if model.arch else {}
        arch = ModelConfig(**fields)
        vocab = model.vocab_size or _manifest_vocab(data.path) or arch.vocab_size
        arch = dataclasses.replace(arch, vocab_size=vocab, ffn_hidden=arch.ffn_hidden)
    layout = _layout(trainer.strategy, _device_count(trainer.devices), trainer.num_nodes)
    compute = compute_bytes_of(trainer.precision, model.fsdp_param_dtype)
    print(
        format_plan(
            arch, layout, data.batch_size, data.seq_len, compute, model.activation_checkpointing, config.mfu
        )
    )


def _parse(args: list[str]):
    """The sections of a `lit-llm fit` config, parsed without instantiating anything."""
    from argparse import ArgumentError

    from jsonargparse import ActionConfigFile
    from lightning.pytorch import Trainer
    from lightning.pytorch.cli import LightningArgumentParser

    from lit_llm.data.datamodule import LitDataModule
    from lit_llm.lightning_cli import CheckpointConfig, trainer_defaults
    from lit_llm.module import LitLLM

    parser = LightningArgumentParser(
        prog="lit-llm plan", description=__doc__.split("\n")[0], exit_on_error=False, allow_abbrev=False
    )
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="A `lit-llm fit` config file.")
    parser.add_argument("--seed_everything", type=bool | int, default=True, help="Read and ignored.")
    parser.add_argument(
        "--mfu", type=float, default=0.4, help="Model FLOPs utilisation assumed for tokens/s."
    )
    parser.add_class_arguments(Trainer, "trainer", fail_untyped=False, sub_configs=True)
    parser.set_defaults({f"trainer.{k}": v for k, v in trainer_defaults().items()})
    parser.add_class_arguments(LitLLM, "model", sub_configs=True)
    parser.add_class_arguments(LitDataModule, "data", sub_configs=True)
    parser.add_class_arguments(CheckpointConfig, "checkpoint")
    try:
        return parser.parse_args(args)
    except ArgumentError as err:
        options = {f"--{key}" for key in parser.get_defaults().keys()}  # noqa: SIM118 (dotted keys)
        raise UserError(one_line_parse_error(err, options)) from None


def _device_count(devices) -> int:
    """Devices per node from `trainer.devices`: a count ("8" from the command line), a list of ids, or
    "auto" (taken as 1: say how many with --trainer.devices)."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str):
        return int(devices) if devices.isdigit() else 1
    return int(devices)


def _layout(strategy, devices: int, nodes: int) -> Layout:
    """FSDP2 and the tensor-parallel size from the trainer's strategy (a name or a class_path entry).

    ModelParallelStrategy's "auto" sizes are Lightning's: data parallel over the nodes, tensor parallel
    over the devices of a node (so FSDP2 alone needs `data_parallel_size` = all devices and
    `tensor_parallel_size` 1)."""
    world_size = devices * nodes
    if isinstance(strategy, str):
        return Layout(world_size, fsdp=strategy.startswith("fsdp"))
    name = str(getattr(strategy, "class_path", ""))
    init = vars(getattr(strategy, "init_args", None) or {})
    if not name.endswith(("ModelParallelStrategy", "ShardedStrategy")):
        return Layout(world_size, fsdp=name.endswith("FSDPStrategy"))
    dp, tp = init.get("data_parallel_size", "auto"), init.get("tensor_parallel_size", "auto")
    tp = tp if isinstance(tp, int) else devices
    dp = dp if isinstance(dp, int) else nodes
    if dp * tp != world_size:
        raise UserError(
            f"data_parallel_size {dp} x tensor_parallel_size {tp} != {world_size} devices "
            f"({nodes} nodes x {devices} devices)"
        )
    return Layout(world_size, tensor_parallel=tp, fsdp=True)


def _manifest_vocab(path: str | None) -> int | None:
    """The vocabulary of a prepared data folder, when it exists here."""
    import json
    from pathlib import Path

    manifest = Path(path or "") / "manifest.json"
    return json.loads(manifest.read_text())["vocab_size"] if path and manifest.is_file() else None
