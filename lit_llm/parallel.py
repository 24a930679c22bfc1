"""How a GPT built on the meta device is laid over devices and given its weights.

model = GPT(config) under torch.device("meta")   # LitLLM.__init__: no weights allocated
mesh = shard_with_fsdp2(model, device_mesh)       # configure_model, under ModelParallelStrategy
materialize(model, init_rng, device, mesh)        # each rank allocates and draws only its shard
"""

from __future__ import annotations

import torch
from torch import nn

from lit_llm.model import GPT, Block


def apply_activation_checkpointing(model: GPT) -> None:
    """Recompute each block's activations in backward."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        apply_activation_checkpointing as wrap,
    )

    wrap(model, check_fn=lambda m: isinstance(m, Block))


def shard_with_fsdp2(model: GPT, device_mesh, param_dtype: str | None = None):
    """fully_shard each block, then the root (embedding, final norm, LM head); returns the mesh used.

    Over the data-parallel mesh when `tensor_parallel_size` is 1. The kit has no tensor-parallel plan
    yet, so a larger tensor-parallel dimension (ModelParallelStrategy's default on one node:
    data_parallel_size = nodes, tensor_parallel_size = devices) is used for sharding too: the whole
    (data, tensor) mesh as HSDP, replicated across its first dimension and sharded across its second.
    `param_dtype` (e.g. "bfloat16"): gather and compute in it, reduce gradients in float32.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh, names = device_mesh, device_mesh.mesh_dim_names or ()
    if "data_parallel" in names and ("tensor_parallel" not in names or mesh["tensor_parallel"].size() == 1):
        mesh = mesh["data_parallel"]
    policy = MixedPrecisionPolicy()
    if param_dtype is not None:
        policy = MixedPrecisionPolicy(param_dtype=getattr(torch, param_dtype), reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return mesh


def is_on_meta(model: nn.Module) -> bool:
    return any(t.is_meta for t in [*model.parameters(), *model.buffers()])


def materialize(model: GPT, init_rng: torch.Tensor, device: torch.device, shard_mesh=None) -> None:
    """Allocate and initialize a GPT built on the meta device, leaving the global random state alone.

    Unsharded (`shard_mesh` None): with the CPU random state `init_rng` of construction, drawing what an
    eagerly built GPT drew then (each layer's own init in construction order, then `reset_parameters`).
    Sharded by FSDP2: each rank allocates and draws only its shard, one random stream per shard
    (replicas of a shard under HSDP draw the same values).
    """
    model.to_empty(device=device)
    model.tie_weights()  # to_empty unties them
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.set_rng_state(init_rng)
        if shard_mesh is not None:
            shard = shard_mesh.get_local_rank(shard_mesh.ndim - 1)
            torch.manual_seed(int(torch.randint(2**62, ())) + shard)
        else:
            for layer in model.modules():
                if isinstance(layer, (nn.Linear, nn.Embedding)):
                    layer.reset_parameters()
        model.reset_parameters()
