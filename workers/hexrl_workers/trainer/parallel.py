"""Execute a planned trainer layout: device mesh, tensor parallelism, FSDP2, gradient clipping, state dicts.

The layout (`hexrl.api.trainerlayout.TrainerLayout`) gives the mesh (replicas R) × (shards S) × (TP T) over
the W = R·S·T processes of the gang. This module applies it to a Hugging Face Llama/Qwen2-family model:

- Tensor parallelism (T > 1), Megatron-style through DTensor (`parallelize_module`): in every decoder
  layer q/k/v and the MLP's gate/up projections are split by output columns, o_proj and down_proj by
  input rows, so each layer costs two all-reduces forward and two backward. Each TP rank then holds
  heads/T query heads and kv_heads/T key/value heads (HF attention reshapes with -1 heads, so the local
  head count follows the local weight). Embeddings, norms and the LM head stay replicated in the group.
- Data parallelism with FSDP2 (`fully_shard`) on the (R, S) sub-mesh, one unit per decoder layer plus
  the root: S > 1 shards parameters, gradients and optimizer states (ZeRO-3); S = 1, R > 1 keeps full
  replicas and all-reduces gradients (DDP semantics through the same API, HSDP with one shard). On a
  GPU the layers compute in bf16 (or the model's dtype) from fp32 master weights, and gradients are
  reduced in fp32 (`MixedPrecisionPolicy`).
- Activation checkpointing per decoder layer (recompute in backward), as the cost model assumes.

Every data-parallel rank trains on its own rows; the ranks of one TP group see the same rows. FSDP2
averages gradients over the R·S data-parallel ranks, so a loss scaled by R·S sums them.

The gradient norm over parameters that live on different meshes (TP-split 2-D, replicated 1-D) is
summed as Σ‖g_i‖² with each ‖g_i‖ made global by its own DTensor reduction, then one scale for all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import torch

from hexrl.api.trainerlayout import MESH_DIMS, TrainerLayout


@dataclass(frozen=True)
class Ranks:
    """This process's place in the gang."""

    rank: int
    """Global rank (torch.distributed RANK)."""
    local_rank: int
    """Rank inside the pod (LOCAL_RANK): selects the GPU."""
    world_size: int
    """All processes of the gang (WORLD_SIZE)."""


class ParallelModel:
    """A model laid out over the gang's device mesh; `module` is what the trainer calls."""

    def __init__(self, model: Any, layout: TrainerLayout, ranks: Ranks, device: torch.device,
                 activation_checkpointing: bool) -> None:
        from torch.distributed.device_mesh import init_device_mesh

        self.layout = layout
        self.ranks = ranks
        self.device = device
        self.mesh = init_device_mesh(device.type, layout.mesh_shape, mesh_dim_names=MESH_DIMS)
        compute_dtype = next(model.parameters()).dtype
        model = model.to(device=device, dtype=torch.float32)  # fp32 master weights
        if layout.tensor_parallel > 1:
            apply_tensor_parallel(model, self.mesh["tp"])
        if activation_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        apply_fsdp(model, self.mesh["dp_replicate", "dp_shard"], compute_dtype if device.type == "cuda" else None)
        self.module = model

    @property
    def data_parallel_rank(self) -> int:
        """Index of this process's data-parallel group (rows are split by it)."""
        return self.ranks.rank // self.layout.tensor_parallel

    @property
    def data_parallel_size(self) -> int:
        return self.ranks.world_size // self.layout.tensor_parallel

    def clip_grad_norm(self, max_norm: float) -> float:
        return clip_grad_norm(self.module.parameters(), max_norm)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The whole model's weights on the CPU: a collective (every rank calls it); rank 0 gets them, the
        other ranks an empty dict."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(self.module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        # typed as any state value; a module's full state dict holds only tensors
        return cast(dict[str, torch.Tensor], state)


def tensor_parallel_plan() -> dict[str, Any]:
    """Per decoder layer: column-split inputs of attention and MLP, row-split outputs."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    return {
        "self_attn.q_proj": ColwiseParallel(),
        "self_attn.k_proj": ColwiseParallel(),
        "self_attn.v_proj": ColwiseParallel(),
        "self_attn.o_proj": RowwiseParallel(),
        "mlp.gate_proj": ColwiseParallel(),
        "mlp.up_proj": ColwiseParallel(),
        "mlp.down_proj": RowwiseParallel(),
    }


def decoder_layers(model: Any) -> list[Any]:
    """The decoder layers of a HF causal LM of the Llama/Qwen2 family."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ValueError(
            f"{type(model).__name__} is not a Llama/Qwen2-style model (no model.layers): the trainer's tensor "
            "parallelism and FSDP units know only that family"
        )
    return list(layers)


def apply_tensor_parallel(model: Any, tp_mesh: Any) -> None:
    from torch.distributed.tensor.parallel import parallelize_module

    plan = tensor_parallel_plan()
    for layer in decoder_layers(model):
        parallelize_module(layer, tp_mesh, plan)


def apply_fsdp(model: Any, dp_mesh: Any, compute_dtype: torch.dtype | None) -> None:
    """FSDP2 units: each decoder layer, then the root (embeddings, final norm, LM head)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32) if compute_dtype else None
    kwargs: dict[str, Any] = {"mesh": dp_mesh}
    if mp is not None:
        kwargs["mp_policy"] = mp
    for layer in decoder_layers(model):
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)


def clip_grad_norm(parameters: Any, max_norm: float) -> float:
    """Scale all gradients so that their global 2-norm is at most `max_norm`; returns the norm before."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    squares = []
    for g in grads:
        n = torch.linalg.vector_norm(g, dtype=torch.float32)
        if isinstance(n, DTensor):
            n = n.full_tensor()
        squares.append(n.float() ** 2)
    total = float(torch.stack([s.to(squares[0].device) for s in squares]).sum().sqrt())
    if math.isfinite(total) and total > max_norm:
        coef = max_norm / (total + 1e-6)
        for g in grads:
            g.mul_(coef)
    return total
