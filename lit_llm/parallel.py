"""How a GPT built on the meta device is laid over devices and given its weights.

model = GPT(config) under torch.device("meta")   # LitLLM.__init__: no weights allocated
apply_tensor_parallel(model, device_mesh)         # configure_model, under ModelParallelStrategy: heads
shard_with_fsdp2(model, device_mesh)              #   and MLP over "tensor_parallel", FSDP2 over "data_parallel"
materialize(model, init_rng, device, sharded=True)  # each rank allocates and draws only its shards
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from lit_llm.errors import UserError
from lit_llm.model import GPT, Block, ModelConfig
from lit_llm.quiet import silence_sharding_noise

DATA_PARALLEL, TENSOR_PARALLEL = "data_parallel", "tensor_parallel"  # ModelParallelStrategy's mesh dims


def tensor_parallel_size(device_mesh) -> int:
    names = device_mesh.mesh_dim_names or ()
    return device_mesh[TENSOR_PARALLEL].size() if TENSOR_PARALLEL in names else 1


def check_tensor_parallel(config: ModelConfig, size: int) -> None:
    """One line when heads or the MLP width cannot be split over `size` tensor-parallel ranks."""
    for name in ("n_head", "n_kv_head", "ffn_hidden"):
        if getattr(config, name) % size:
            raise UserError(
                f"model.arch.{name}={getattr(config, name)} does not divide by tensor_parallel_size={size} "
                "(each tensor-parallel rank holds an equal share of the heads and of the MLP)"
            )


def apply_tensor_parallel(model: GPT, device_mesh) -> bool:
    """Megatron-style tensor parallelism over the mesh's "tensor_parallel" dimension; False when it has size 1.

    Per block: q/k/v and gate/up are split column-wise (by heads, by MLP width), o and down row-wise,
    so each rank computes its own heads and MLP slice and one reduction joins them. Sequence
    parallelism: between blocks, and inside the two RMSNorms, the residual stream is split along the
    sequence (all-gathered before attention and MLP, reduce-scattered after), so norms and residual
    adds are not repeated on every rank. The embedding and the LM head stay whole on the tensor
    dimension (FSDP2 shards them over data parallel); every rank of a tensor-parallel group gets the
    same batch and computes the same logits.
    """
    size = tensor_parallel_size(device_mesh)
    if size == 1:
        return False
    check_tensor_parallel(model.config, size)
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        PrepareModuleInput,
        PrepareModuleOutput,
        RowwiseParallel,
        SequenceParallel,
        parallelize_module,
    )

    tp_mesh = device_mesh[TENSOR_PARALLEL]
    gather_sequence = PrepareModuleInput(
        input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),), use_local_output=False
    )
    block_plan = {
        "attn_norm": SequenceParallel(),
        "attn": PrepareModuleInput(  # x; cos, sin, cache and the document mask pass as they are (whole sequence)
            input_layouts=(Shard(1), None, None, None, None),
            desired_input_layouts=(Replicate(), None, None, None, None),
        ),
        "attn.q_proj": ColwiseParallel(),
        "attn.k_proj": ColwiseParallel(),
        "attn.v_proj": ColwiseParallel(),
        "attn.o_proj": RowwiseParallel(output_layouts=Shard(1)),
        "mlp_norm": SequenceParallel(),
        "mlp": gather_sequence,
        "mlp.gate_proj": ColwiseParallel(),
        "mlp.up_proj": ColwiseParallel(),
        "mlp.down_proj": RowwiseParallel(output_layouts=Shard(1)),
    }
    for block in model.blocks:
        parallelize_module(block, tp_mesh, block_plan)
    edges = {
        "embed": PrepareModuleOutput(  # each rank keeps its part of the sequence: no communication
            output_layouts=Replicate(), desired_output_layouts=Shard(1), use_local_output=True
        ),
        "norm": PrepareModuleInput(  # the whole sequence again for the final norm and the LM head
            input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),), use_local_output=True
        ),
    }
    parallelize_module(model, tp_mesh, edges)
    return True


def apply_activation_checkpointing(model: GPT) -> None:
    """Recompute each block's activations in backward."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        apply_activation_checkpointing as wrap,
    )

    wrap(model, check_fn=lambda m: isinstance(m, Block))


def shard_with_fsdp2(model: GPT, device_mesh, param_dtype: str | None = None):
    """fully_shard each block, then the root (embedding, final norm, LM head), over the data-parallel
    dimension of ModelParallelStrategy's mesh (after `apply_tensor_parallel`, whose weights are then
    sharded on both dimensions); returns that mesh.

    `param_dtype` (e.g. "bfloat16"): gather and compute in it, reduce gradients in float32.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    silence_sharding_noise()
    names = device_mesh.mesh_dim_names or ()
    mesh = device_mesh[DATA_PARALLEL] if DATA_PARALLEL in names else device_mesh
    policy = MixedPrecisionPolicy()
    if param_dtype is not None:
        policy = MixedPrecisionPolicy(param_dtype=getattr(torch, param_dtype), reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return mesh


def is_on_meta(model: nn.Module) -> bool:
    return any(t.is_meta for t in [*model.parameters(), *model.buffers()])


def materialize(model: GPT, init_rng: torch.Tensor, device: torch.device, sharded: bool = False) -> None:
    """Allocate and initialize a GPT built on the meta device, leaving the global random state alone.

    Unsharded: with the CPU random state `init_rng` of construction, drawing what an eagerly built GPT
    drew then (each layer's own init in construction order, then `reset_parameters`).
    Sharded (FSDP2, tensor parallel): each rank allocates and draws only its shards, each weight from
    its own random stream keyed by the shard's coordinates, so replicas of a shard (the embedding on
    every rank of a tensor-parallel group) draw the same values.
    """
    model.to_empty(device=device)
    model.tie_weights()  # to_empty unties them
    with torch.random.fork_rng(devices=[]), torch.no_grad(), warnings.catch_warnings():
        # each shard is seeded here (`shard_seeder`): DTensor's own RNG tracking is not needed on a CPU mesh
        warnings.filterwarnings("ignore", "DTensor random operators may not have complete support")
        torch.set_rng_state(init_rng)
        if sharded:
            model.reset_parameters(before_each=shard_seeder(int(torch.randint(2**62, ()))))
            return
        for layer in model.modules():
            if isinstance(layer, (nn.Linear, nn.Embedding)):
                layer.reset_parameters()
        model.reset_parameters()


def shard_seeder(base: int):
    """A function that seeds the CPU generator before each weight's init from (base, the weight's
    position in the init order, the coordinates of this rank's shard on the mesh dims it is split on)."""
    counter = iter(range(1 << 62))

    def seed(weight: torch.Tensor) -> None:
        shard = 0
        if hasattr(weight, "device_mesh"):  # a DTensor
            mesh = weight.device_mesh
            for dim, placement in enumerate(weight.placements):
                if placement.is_shard():
                    shard = shard * mesh.size(dim) + mesh.get_local_rank(dim)
        torch.manual_seed(((base * 1_000_003 + next(counter)) * 65_537 + shard) % (1 << 63))

    return seed
