"""Render the pods of an RLJob: the trainer gang (one pod per planned node, rank = node index, all of one
epoch or none) and the rollout replicas (one pod per slot: pool + ordinal, and pipeline stage). Pure.

Pod names are deterministic (`<job>-trainer-<epoch tag>-<rank>`, `<job>-rollout-<slot>-<incarnation>`), so a
create repeated after an operator crash answers AlreadyExists instead of making a duplicate.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from hexrl.api import workerconfig as wc
from hexrl.api.models import RLJobSpec
from hexrl.api.trainerlayout import TrainerLayout
from hexrl.k8s.render_parts import (
    EPOCH_LABEL,
    HOSTNAME_LABEL,
    RANK_LABEL,
    RENDEZVOUS_PORT,
    JobRef,
    container,
    extra_node_selector,
    identity,
    master_addr,
    meta,
    names,
    pod_security_context,
    pod_volumes,
    priority_class_name,
    slug,
    spot_tolerations,
    with_hash,
)
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import LABEL_POOL, LABEL_SLOT, Snapshot
from hexrl.sched.types import Plan, RolloutReplica

# -------------------------------------------------------------------------------------------- trainer


def trainer_epoch_tag(plan: Plan, epoch: int) -> str:
    """Short id of one trainer incarnation: its assignment + the restart epoch."""
    t = plan.trainer
    key = json.dumps([t.gpu, t.pool, t.data_parallel, t.tensor_parallel, t.pipeline_parallel, t.fsdp,
                      list(t.nodes), list(t.gpus_per_node), epoch])
    return hashlib.sha256(key.encode()).hexdigest()[:6]


def render_trainer_pods(
    ref: JobRef, spec: RLJobSpec, plan: Plan, snap: Snapshot, epoch: int, settings: OperatorSettings
) -> list[dict[str, Any]]:
    """One pod per trainer node (rank = node index), pinned to the planned node; the gang is all of them."""
    t = plan.trainer
    tag = trainer_epoch_tag(plan, epoch)
    spot = bool(t.pool) and _pool_is_spot(plan, snap, t.pool)
    return [
        _trainer_pod(ref, spec, plan, tag, rank, node, gpus, spot, settings)
        for rank, (node, gpus) in enumerate(zip(t.nodes, t.gpus_per_node, strict=True))
    ]


def _trainer_pod(
    ref: JobRef, spec: RLJobSpec, plan: Plan, tag: str, rank: int, node: str, gpus: int, spot: bool,
    settings: OperatorSettings,
) -> dict[str, Any]:
    """Rank `rank` of the gang of epoch `tag`: required affinity to its node; rank 0 serves the weights."""
    t = plan.trainer
    vols, mounts = pod_volumes(ref, spec, "trainer")
    ports = [wc.TRAINER_METRICS_PORT, RENDEZVOUS_PORT] + ([wc.WEIGHTS_PORT] if rank == 0 else [])
    env = _trainer_env(ref, plan, rank, gpus)
    main = container(ref, spec, "trainer", spec.images.trainer, gpus, env, ports, mounts, settings)
    terms = [{"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}, *extra_node_selector(spec)]
    pod_spec: dict[str, Any] = {
        **identity(ref),
        "securityContext": pod_security_context(),
        "hostname": f"trainer-{rank}",
        "subdomain": names(ref)["trainer"],
        "restartPolicy": "Never",  # a dead rank restarts the whole gang from the checkpoint, not alone
        "containers": [main],
        "volumes": vols,
        "priorityClassName": priority_class_name(settings, "trainer"),
        "terminationGracePeriodSeconds": 60,
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": terms}]}}},
    }
    if spot:
        pod_spec["tolerations"] = spot_tolerations()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(
            ref, f"{ref.name}-trainer-{tag}-{rank}", "trainer", t.pool,
            {RANK_LABEL: str(rank), EPOCH_LABEL: tag},
        ),
        "spec": pod_spec,
    }
    return with_hash(pod)


def trainer_layout(plan: Plan) -> TrainerLayout:
    """The process layout of the planned trainer: one process per planned GPU, pods in node order."""
    t = plan.trainer
    return TrainerLayout(
        procs_per_node=tuple(t.gpus_per_node), data_parallel=t.data_parallel, tensor_parallel=t.tensor_parallel,
        pipeline_parallel=t.pipeline_parallel, fsdp=t.fsdp,
    )


def _trainer_env(ref: JobRef, plan: Plan, rank: int, gpus: int) -> list[dict[str, Any]]:
    """The gang's layout (pods, processes per pod, parallel degrees), the launcher's rendezvous, and the GPU
    type (which tags the work rank 0 reports for calibration)."""
    layout = trainer_layout(plan)
    assert layout.procs_per_node[rank] == gpus
    return [
        *({"name": name, "value": value} for name, value in layout.pod_env(rank)),
        {"name": wc.ENV_MASTER_ADDR, "value": master_addr(ref)},
        {"name": wc.ENV_MASTER_PORT, "value": str(RENDEZVOUS_PORT)},
        {"name": wc.ENV_GPU_TYPE, "value": plan.trainer.gpu},
    ]


def _pool_is_spot(plan: Plan, snap: Snapshot, pool: str) -> bool:
    return any(p.spot for p in snap.cluster.pools if p.name == pool)


# -------------------------------------------------------------------------------------------- rollout


@dataclass(frozen=True)
class RolloutSlot:
    """One rollout pod position: replica `ordinal` of `pool` (stage `stage` for pipeline-parallel replicas)."""

    slot: str
    replica: RolloutReplica
    node: str
    gpus: int
    stage: int


def rollout_slots(plan: Plan) -> list[RolloutSlot]:
    """Stable slot names: replicas are numbered per pool in plan order; PP stages add `-s<j>`."""
    counters: dict[str, int] = {}
    out = []
    for r in plan.replicas:
        k = counters.get(r.pool, 0)
        counters[r.pool] = k + 1
        base = f"{slug(r.pool, 40)}-{k}"
        if r.pipeline_parallel > 1 and len(r.nodes) > 1:
            for j, node in enumerate(r.nodes):
                out.append(RolloutSlot(f"{base}-s{j}", r, node, r.tensor_parallel, j))
        else:
            out.append(RolloutSlot(base, r, r.nodes[0] if r.nodes else "", r.gpus, 0))
    return out


def rollout_pod_name(ref: JobRef, slot: str, incarnation: int) -> str:
    return f"{ref.name}-rollout-{slot}-{incarnation}"


def render_rollout_pod(
    ref: JobRef, spec: RLJobSpec, slot: RolloutSlot, incarnation: int, snap: Snapshot, settings: OperatorSettings
) -> dict[str, Any]:
    """A rollout replica: required affinity to its pool, preferred to its planned node, spot tolerations."""
    r = slot.replica
    vols, mounts = pod_volumes(ref, spec, "rollout")
    main = container(ref, spec, "rollout", spec.images.rollout, slot.gpus, _rollout_env(slot), [wc.RELAY_PORT],
                     mounts, settings)
    affinity = _pool_affinity(spec, snap, r.pool)
    pod_spec: dict[str, Any] = {
        **identity(ref),
        "securityContext": pod_security_context(),
        "restartPolicy": "OnFailure",
        "containers": [main],
        "volumes": vols,
        "affinity": affinity,
        "priorityClassName": priority_class_name(settings, "rollout-spot" if r.spot else "rollout"),
        # time to hand in-flight partial responses to the coordinator on preemption
        "terminationGracePeriodSeconds": 30,
    }
    if r.spot:
        pod_spec["tolerations"] = spot_tolerations()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(
            ref, rollout_pod_name(ref, slot.slot, incarnation), "rollout", r.pool,
            {LABEL_SLOT: slot.slot, "hexrl.dev/spot": "true" if r.spot else "false"},
        ),
        "spec": pod_spec,
    }
    # The preferred node is a placement hint for the scheduler, not part of the replica's identity: it
    # stays out of the hash, so a re-plan that only renumbers replicas does not replace running pods.
    with_hash(pod)
    if slot.node:
        affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {"weight": 100, "preference": {"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [slot.node]}]}}
        ]
    return pod


def _rollout_env(slot: RolloutSlot) -> list[dict[str, Any]]:
    """The replica's address (the coordinator dials it), its parallelism and pipeline stage, and its GPU type
    (which tags the work the worker reports for calibration)."""
    r = slot.replica
    return [
        {"name": wc.ENV_POD_IP, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "HEXRL_TENSOR_PARALLEL", "value": str(r.tensor_parallel)},
        {"name": "HEXRL_PIPELINE_PARALLEL", "value": str(r.pipeline_parallel)},
        {"name": "HEXRL_PIPELINE_STAGE", "value": str(slot.stage)},
        {"name": wc.ENV_GPU_TYPE, "value": r.gpu},
    ]


def _pool_affinity(spec: RLJobSpec, snap: Snapshot, pool: str) -> dict[str, Any]:
    """Required node affinity to the pool (by the label the snapshot found for it) and the spec's selector."""
    key, value = snap.pool_selectors.get(pool, (LABEL_POOL, pool))
    terms = [{"key": key, "operator": "In", "values": [value]}, *extra_node_selector(spec)]
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": terms}]}
        }
    }
