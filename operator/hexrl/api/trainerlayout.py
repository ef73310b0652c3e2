"""The trainer's process layout: what the operator renders into the trainer pods and the trainer executes.

A planned trainer assignment DP×TP×PP on nodes n_0..n_{k-1} with g_i GPUs each becomes k pods (a gang);
pod i runs g_i processes (one per GPU), so the world is W = Σ g_i processes. Ranks are contiguous per pod
(pod i holds ranks Σ_{j<i} g_j … Σ_{j≤i} g_j - 1, as torch's elastic launcher assigns them), and the
device mesh is laid out row-major as

    (data-parallel replicas R) × (data-parallel shards S) × (tensor-parallel T),   R·S·T = W

with S = DP and R = 1 when the plan shards the states (FSDP), R = DP and S = 1 when it replicates them.
Consecutive ranks form one tensor-parallel group, so a TP group stays inside one pod (one NVLink domain)
exactly when every pod's process count is a multiple of T.

Pipeline parallelism is not executed by the trainer, so a layout with PP > 1 is refused (and the planner
does not emit one). Tensor parallelism splits attention heads, key/value heads and the MLP width across
the group, so each must be a multiple of T.

Environment of a trainer pod (names below): `HEXRL_NNODES`, `HEXRL_NODE_RANK`, `LOCAL_WORLD_SIZE`,
`HEXRL_PROCS_PER_NODE` (the comma-separated process counts of all pods, for the check), `MASTER_ADDR`,
`MASTER_PORT`, `HEXRL_DATA_PARALLEL`, `HEXRL_TENSOR_PARALLEL`, `HEXRL_PIPELINE_PARALLEL`, `HEXRL_FSDP`. The
launcher then gives each process torch.distributed's `RANK`, `LOCAL_RANK` and `WORLD_SIZE`.

Pure: no I/O; the operator renders with it and the workers parse with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hexrl.api.models import ModelShape

ENV_NNODES = "HEXRL_NNODES"
ENV_NODE_RANK = "HEXRL_NODE_RANK"
ENV_LOCAL_WORLD_SIZE = "LOCAL_WORLD_SIZE"
ENV_PROCS_PER_NODE = "HEXRL_PROCS_PER_NODE"
ENV_DATA_PARALLEL = "HEXRL_DATA_PARALLEL"
ENV_TENSOR_PARALLEL = "HEXRL_TENSOR_PARALLEL"
ENV_PIPELINE_PARALLEL = "HEXRL_PIPELINE_PARALLEL"
ENV_FSDP = "HEXRL_FSDP"
MESH_DIMS = ("dp_replicate", "dp_shard", "tp")
"""Names of the device-mesh dimensions, outermost first."""


class LayoutError(ValueError):
    """A trainer layout the runtime cannot execute; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class TrainerLayout:
    """One trainer gang's layout (see the module docstring)."""

    procs_per_node: tuple[int, ...]
    """Processes (= GPUs) of each pod, by pod index."""
    data_parallel: int
    """DP degree: how many model replicas (or shards, with FSDP) train on different rows."""
    tensor_parallel: int = 1
    """TP degree: processes that split each layer's matrices."""
    pipeline_parallel: int = 1
    """PP degree (must be 1: the trainer executes no pipeline parallelism)."""
    fsdp: bool = True
    """Shard parameters, gradients and optimizer states over the DP ranks (else replicate them)."""

    @property
    def nodes(self) -> int:
        return len(self.procs_per_node)

    @property
    def world_size(self) -> int:
        return sum(self.procs_per_node)

    @property
    def mesh_shape(self) -> tuple[int, int, int]:
        """(replicas, shards, tensor-parallel) of the device mesh, named `MESH_DIMS`."""
        dp = self.data_parallel
        return (1, dp, self.tensor_parallel) if self.fsdp else (dp, 1, self.tensor_parallel)

    def problems(self, shape: ModelShape | None = None) -> list[str]:
        """Why the runtime cannot execute this layout (empty: it can)."""
        out: list[str] = []
        dp, tp, pp = self.data_parallel, self.tensor_parallel, self.pipeline_parallel
        if not self.procs_per_node or min(dp, tp, pp, *self.procs_per_node) < 1:
            return [f"degrees and process counts must be positive (DP{dp}×TP{tp}×PP{pp}, pods {self.procs_per_node})"]
        if pp != 1:
            out.append(f"pipeline parallelism (PP{pp}) is not executed by the trainer; re-plan the job "
                       "(the planner no longer emits PP) or use GPUs that hold the model on one node")
        if dp * tp * pp != self.world_size:
            out.append(f"DP{dp}×TP{tp}×PP{pp} = {dp * tp * pp} processes, but the pods run "
                       f"{'+'.join(map(str, self.procs_per_node))} = {self.world_size}")
        if any(n % tp for n in self.procs_per_node):
            out.append(f"TP{tp} must stay inside one pod, but the pods run {list(self.procs_per_node)} processes "
                       f"(each must be a multiple of {tp})")
        if shape is not None and tp > 1:
            out.extend(_tensor_parallel_problems(shape, tp))
        return out

    def check(self, shape: ModelShape | None = None) -> None:
        """Raise `LayoutError` naming every problem."""
        found = self.problems(shape)
        if found:
            raise LayoutError("trainer layout " + self.describe() + " cannot run: " + "; ".join(found))

    def describe(self) -> str:
        return (f"DP{self.data_parallel}×TP{self.tensor_parallel}×PP{self.pipeline_parallel}"
                f"{' FSDP' if self.fsdp else ''} on {self.nodes} pod(s) × {list(self.procs_per_node)} processes")

    def pod_env(self, node_rank: int) -> list[tuple[str, str]]:
        """The layout variables of pod `node_rank` (rendezvous address and port are added by the renderer)."""
        return [
            (ENV_NNODES, str(self.nodes)),
            (ENV_NODE_RANK, str(node_rank)),
            (ENV_LOCAL_WORLD_SIZE, str(self.procs_per_node[node_rank])),
            (ENV_PROCS_PER_NODE, ",".join(map(str, self.procs_per_node))),
            (ENV_DATA_PARALLEL, str(self.data_parallel)),
            (ENV_TENSOR_PARALLEL, str(self.tensor_parallel)),
            (ENV_PIPELINE_PARALLEL, str(self.pipeline_parallel)),
            (ENV_FSDP, "true" if self.fsdp else "false"),
        ]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> tuple[TrainerLayout, int]:
        """(layout, this pod's node rank) from a pod's environment; defaults describe one process."""
        local = _int(env, ENV_LOCAL_WORLD_SIZE, 1)
        nnodes = _int(env, ENV_NNODES, 1)
        node_rank = _int(env, ENV_NODE_RANK, 0)
        raw = env.get(ENV_PROCS_PER_NODE, "")
        try:
            procs = tuple(int(x) for x in raw.split(",")) if raw else (local,) * nnodes
        except ValueError:
            raise LayoutError(f"{ENV_PROCS_PER_NODE}={raw!r} is not a comma-separated list of integers") from None
        if len(procs) != nnodes or not 0 <= node_rank < nnodes or procs[node_rank] != local:
            raise LayoutError(
                f"inconsistent trainer pod environment: {ENV_NNODES}={nnodes}, {ENV_NODE_RANK}={node_rank}, "
                f"{ENV_LOCAL_WORLD_SIZE}={local}, {ENV_PROCS_PER_NODE}={raw!r}"
            )
        tp = _int(env, ENV_TENSOR_PARALLEL, 1)
        fsdp_raw = env.get(ENV_FSDP, "").lower()
        if fsdp_raw not in ("", "true", "false"):
            raise LayoutError(f"{ENV_FSDP}={env[ENV_FSDP]!r}: expected true or false")
        world = sum(procs)
        layout = cls(
            procs_per_node=procs,
            data_parallel=_int(env, ENV_DATA_PARALLEL, max(1, world // max(tp, 1))),
            tensor_parallel=tp,
            pipeline_parallel=_int(env, ENV_PIPELINE_PARALLEL, 1),
            fsdp=fsdp_raw != "false",
        )
        return layout, node_rank


def _tensor_parallel_problems(shape: ModelShape, tp: int) -> list[str]:
    heads = shape.attention_heads or max(1, shape.hidden_size // shape.head_dim)
    mlp = shape.intermediate_size or 4 * shape.hidden_size
    return [
        f"TP{tp} must divide the model's {what} ({n})"
        for what, n in (("attention heads", heads), ("key/value heads", shape.kv_heads), ("MLP width", mlp))
        if n % tp
    ]


def tensor_parallel_fits(shape: ModelShape, tp: int) -> bool:
    """True when a model of `shape` splits evenly over `tp` tensor-parallel trainer processes."""
    return not _tensor_parallel_problems(shape, tp)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise LayoutError(f"{name}={raw!r} is not an integer") from None
