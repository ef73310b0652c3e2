"""Render: (job, plan, snapshot) → the job's child objects as plain manifests. Pure, one function per kind.

Children of an RLJob `J` in namespace `N` (all owned by the RLJob, so deleting it lets the garbage
collector remove them and nothing else):

| object                          | name                          | why                                       |
|---------------------------------|-------------------------------|-------------------------------------------|
| Secret                          | `J-token`                     | per-job bearer token (coordinator, weights)|
| ConfigMap                       | `J-config`                    | worker config + live η + the plan          |
| Deployment + Service            | `J-coordinator`               | trajectory buffer, staleness gate          |
| headless Service                | `J-trainer`                   | torch.distributed rendezvous (DNS per rank)|
| Service                         | `J-weights`                   | pull-based weight sync from trainer rank 0 |
| Pods (one per trainer node)     | `J-trainer-<epoch>-<rank>`    | the gang: all ranks or none                |
| PodDisruptionBudget             | `J-trainer`                   | no voluntary eviction of a trainer rank    |
| Pods (one per rollout replica)  | `J-rollout-<slot>-<n>`        | slot = pool + ordinal, n = incarnation     |

Trainer ranks are pods rather than a StatefulSet because each rank is pinned to the node the planner
chose (the planner places the training group in the best-connected domain), and because a gang
restart must replace all ranks at once; the `epoch` in the name makes a restarted gang new objects.
Rollout replicas are pods with a required affinity to their pool and a preferred affinity to the node
the plan chose: a replica survives a re-plan that only moves its preferred node, and the operator — not
a ReplicaSet — decides which replica to replace when a spot node disappears.

Every manifest carries the annotation `hexrl.dev/spec-hash` (hash of the rendered manifest), so the
applier can skip objects whose desired state did not change: re-applying an unchanged plan writes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from hexrl.api import workerconfig as wc
from hexrl.api.models import API_VERSION, DEFAULT_IMAGE, KIND, RLJobSpec
from hexrl.k8s.settings import SPOT_TOLERATION_KEYS, OperatorSettings
from hexrl.k8s.snapshot import (
    ANNOTATION_HASH,
    LABEL_EPOCH,
    LABEL_JOB,
    LABEL_POOL,
    LABEL_ROLE,
    LABEL_SLOT,
    Snapshot,
)
from hexrl.sched.types import Plan, RolloutReplica

HASH_ANNOTATION = ANNOTATION_HASH
RANK_LABEL = "hexrl.dev/rank"
EPOCH_LABEL = LABEL_EPOCH
RENDEZVOUS_PORT = 29500
PLAN_KEY = "plan.json"
STATE_KEY = "state.json"
HOSTNAME_LABEL = "kubernetes.io/hostname"

PRIORITY_VALUES = {"trainer": 100_000, "rollout": 10_000, "rollout-spot": 1_000}
"""PriorityClass values: under pressure the scheduler evicts spot rollout first, then on-demand rollout,
and never a trainer rank for a rollout replica."""


@dataclass(frozen=True)
class JobRef:
    """What rendering needs from the RLJob object besides its spec."""

    name: str
    namespace: str
    uid: str
    generation: int = 1


# ------------------------------------------------------------------------------------------ helpers


def spec_hash(obj: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON (without the hash annotation itself), 16 hex digits."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def with_hash(obj: dict[str, Any]) -> dict[str, Any]:
    digest = spec_hash(obj)
    obj["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = digest
    return obj


def slug(text: str, limit: int = 30) -> str:
    """A DNS-label-safe fragment of `text`."""
    s = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return (s[:limit].rstrip("-")) or "x"


def labels(job: JobRef, role: str, pool: str | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "hexrl",
        "app.kubernetes.io/instance": job.name,
        "app.kubernetes.io/component": role,
        "app.kubernetes.io/part-of": "hexrl",
        "app.kubernetes.io/managed-by": "hexrl-operator",
        LABEL_JOB: job.name,
        LABEL_ROLE: role,
    }
    if pool:
        out[LABEL_POOL] = slug(pool, 63)
    return out


def selector(job: JobRef, role: str) -> dict[str, str]:
    return {LABEL_JOB: job.name, LABEL_ROLE: role}


def owner_ref(job: JobRef) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": job.name,
        "uid": job.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def meta(job: JobRef, name: str, role: str, pool: str | None = None, extra: dict[str, str] | None = None) -> dict:
    return {
        "name": name,
        "namespace": job.namespace,
        "labels": {**labels(job, role, pool), **(extra or {})},
        "ownerReferences": [owner_ref(job)],
    }


def names(job: JobRef) -> dict[str, str]:
    n = job.name
    return {
        "secret": f"{n}-token",
        "config": f"{n}-config",
        "coordinator": f"{n}-coordinator",
        "trainer": f"{n}-trainer",
        "weights": f"{n}-weights",
    }


def coordinator_url(job: JobRef) -> str:
    return f"http://{names(job)['coordinator']}.{job.namespace}.svc:{wc.COORDINATOR_PORT}"


def weights_url(job: JobRef) -> str:
    return f"http://{names(job)['weights']}.{job.namespace}.svc:{wc.WEIGHTS_PORT}"


def master_addr(job: JobRef) -> str:
    return f"trainer-0.{names(job)['trainer']}.{job.namespace}.svc"


def priority_class_name(settings: OperatorSettings, kind: str) -> str:
    return f"{settings.priority_class_prefix}-{kind}"


# ------------------------------------------------------------------------------- cluster-scoped kinds


def render_priority_classes(settings: OperatorSettings) -> list[dict[str, Any]]:
    """Cluster-wide PriorityClasses (no owner: shared by all jobs; created once at operator start)."""
    out = []
    for kind, value in PRIORITY_VALUES.items():
        pc: dict[str, Any] = {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {
                "name": priority_class_name(settings, kind),
                "labels": {"app.kubernetes.io/part-of": "hexrl", "app.kubernetes.io/managed-by": "hexrl-operator"},
            },
            "value": value,
            "globalDefault": False,
            "description": f"hexrl {kind} pods",
        }
        if kind == "rollout-spot":
            pc["preemptionPolicy"] = "Never"  # opportunistic capacity never evicts anyone
        out.append(with_hash(pc))
    return out


# ------------------------------------------------------------------------------- secret and config


def render_secret(job: JobRef, token: str) -> dict[str, Any]:
    return with_hash(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta(job, names(job)["secret"], "coordinator"),
            "type": "Opaque",
            "data": {wc.SECRET_TOKEN_KEY: base64.b64encode(token.encode()).decode()},
        }
    )


def render_configmap(
    job: JobRef,
    spec: RLJobSpec,
    plan: Plan,
    plan_summary: Any,
    live_eta: int,
    state: dict[str, Any],
) -> dict[str, Any]:
    """Worker config (with the live η) + the plan + the operator's per-job state (trainer epoch, scaling)."""
    from hexrl.k8s import plancodec

    config = wc.WorkerConfig(
        job=job.name,
        namespace=job.namespace,
        spec=spec,
        coordinator_url=coordinator_url(job),
        weights_url=weights_url(job),
        max_policy_lag=live_eta,
        plan=plan_summary,
        checkpoint_dir=spec.checkpoint.path,
    )
    data = {
        **wc.configmap_data(config),
        PLAN_KEY: plancodec.dumps(plan),
        STATE_KEY: json.dumps(state, sort_keys=True),
    }
    return with_hash(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(job, names(job)["config"], "coordinator"), "data": data}
    )


# ----------------------------------------------------------------------------------------- pod parts


def _env(job: JobRef, role: str, settings: OperatorSettings) -> list[dict[str, Any]]:
    return [
        {"name": wc.ENV_JOB, "value": job.name},
        {"name": wc.ENV_ROLE, "value": role},
        {"name": wc.ENV_CONFIG, "value": wc.DEFAULT_CONFIG_PATH},
        {
            "name": wc.ENV_TOKEN,
            "valueFrom": {"secretKeyRef": {"name": names(job)["secret"], "key": wc.SECRET_TOKEN_KEY}},
        },
        {"name": wc.ENV_COORDINATOR_URL, "value": coordinator_url(job)},
        {"name": wc.ENV_WEIGHTS_URL, "value": weights_url(job)},
    ]


def _volumes(job: JobRef, spec: RLJobSpec, role: str) -> tuple[list[dict], list[dict]]:
    vols: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": names(job)["config"]}}]
    mounts: list[dict[str, Any]] = [{"name": "config", "mountPath": wc.CONFIG_MOUNT_DIR, "readOnly": True}]
    src = spec.model.source
    if src.pvc:
        vols.append({"name": "model", "persistentVolumeClaim": {"claimName": src.pvc, "readOnly": True}})
        mounts.append({"name": "model", "mountPath": "/models", "readOnly": True})
    if role == "trainer":
        ck = spec.checkpoint
        vols.append(
            {"name": "checkpoints", "persistentVolumeClaim": {"claimName": ck.pvc}}
            if ck.pvc
            else {"name": "checkpoints", "emptyDir": {}}
        )
        mounts.append({"name": "checkpoints", "mountPath": ck.path})
    return vols, mounts


def _probe(port: int) -> dict[str, Any]:
    return {"httpGet": {"path": wc.HEALTH_PATH, "port": port}, "periodSeconds": 10, "failureThreshold": 6}


def _container(
    job: JobRef, spec: RLJobSpec, role: str, image: str, gpus: int, env_extra: list[dict], ports: list[int],
    mounts: list[dict], settings: OperatorSettings,
) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": "1", "memory": "2Gi"}}
    if gpus:
        resources["requests"]["nvidia.com/gpu"] = str(gpus)
        resources["limits"] = {"nvidia.com/gpu": str(gpus)}
    return {
        "name": role,
        "image": settings.worker_image if settings.worker_image and image == DEFAULT_IMAGE else image,
        "imagePullPolicy": str(getattr(spec.images.pull_policy, "value", spec.images.pull_policy)),
        "command": ["python", "-m", "hexrl_workers", role],
        "env": _env(job, role, settings) + env_extra,
        "ports": [{"containerPort": p, "name": f"p{p}"} for p in ports],
        "resources": resources,
        "volumeMounts": mounts,
        "readinessProbe": _probe(ports[0]),
    }


def _spot_tolerations() -> list[dict[str, Any]]:
    return [
        {"key": k, "operator": "Equal", "value": v, "effect": "NoSchedule"} for k, v in SPOT_TOLERATION_KEYS
    ]


def _extra_node_selector(spec: RLJobSpec) -> list[dict[str, Any]]:
    return [
        {"key": k, "operator": "In", "values": [v]} for k, v in sorted((spec.placement.node_selector or {}).items())
    ]


# ---------------------------------------------------------------------------------------- coordinator


def render_coordinator(job: JobRef, spec: RLJobSpec, settings: OperatorSettings) -> list[dict[str, Any]]:
    """Deployment (1 replica, CPU only: it serves prompts and buffers trajectories) + its Service."""
    n = names(job)["coordinator"]
    vols, mounts = _volumes(job, spec, "coordinator")
    container = _container(
        job, spec, "coordinator", spec.images.coordinator, 0, [], [wc.COORDINATOR_PORT], mounts, settings
    )
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": vols,
        "priorityClassName": priority_class_name(settings, "trainer"),
        "terminationGracePeriodSeconds": 30,
    }
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(job, n, "coordinator"),
        "spec": {
            "replicas": 0 if spec.suspend else 1,
            "strategy": {"type": "Recreate"},  # never two coordinators (two buffers) at once
            "selector": {"matchLabels": selector(job, "coordinator")},
            "template": {"metadata": {"labels": labels(job, "coordinator")}, "spec": pod_spec},
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(job, n, "coordinator"),
        "spec": {
            "selector": selector(job, "coordinator"),
            "ports": [{"name": "http", "port": wc.COORDINATOR_PORT, "targetPort": wc.COORDINATOR_PORT}],
        },
    }
    return [with_hash(dep), with_hash(svc)]


# -------------------------------------------------------------------------------------------- trainer


def trainer_epoch_tag(plan: Plan, epoch: int) -> str:
    """Short id of one trainer incarnation: its assignment + the restart epoch."""
    t = plan.trainer
    key = json.dumps([t.gpu, t.pool, t.data_parallel, t.tensor_parallel, t.pipeline_parallel, t.fsdp,
                      list(t.nodes), list(t.gpus_per_node), epoch])
    return hashlib.sha256(key.encode()).hexdigest()[:6]


def render_trainer_services(job: JobRef) -> list[dict[str, Any]]:
    """Headless rendezvous Service (DNS name per rank) + the weight-sync Service on rank 0."""
    nm = names(job)
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(job, nm["trainer"], "trainer"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,  # ranks must resolve each other before they are ready
            "selector": selector(job, "trainer"),
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT}],
        },
    }
    weights = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(job, nm["weights"], "trainer"),
        "spec": {
            "selector": {**selector(job, "trainer"), RANK_LABEL: "0"},
            "ports": [{"name": "weights", "port": wc.WEIGHTS_PORT, "targetPort": wc.WEIGHTS_PORT}],
        },
    }
    return [with_hash(headless), with_hash(weights)]


def render_trainer_pdb(job: JobRef, plan: Plan) -> dict[str, Any]:
    return with_hash(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta(job, names(job)["trainer"], "trainer"),
            "spec": {"minAvailable": len(plan.trainer.nodes), "selector": {"matchLabels": selector(job, "trainer")}},
        }
    )


def render_trainer_pods(
    job: JobRef, spec: RLJobSpec, plan: Plan, snap: Snapshot, epoch: int, settings: OperatorSettings
) -> list[dict[str, Any]]:
    """One pod per trainer node (rank = node index), pinned to the planned node; the gang is all of them."""
    t = plan.trainer
    tag = trainer_epoch_tag(plan, epoch)
    world = len(t.nodes)
    out = []
    for rank, (node, gpus) in enumerate(zip(t.nodes, t.gpus_per_node, strict=True)):
        env = [
            {"name": wc.ENV_RANK, "value": str(rank)},
            {"name": wc.ENV_WORLD_SIZE, "value": str(world)},
            {"name": wc.ENV_MASTER_ADDR, "value": master_addr(job)},
            {"name": wc.ENV_MASTER_PORT, "value": str(RENDEZVOUS_PORT)},
            {"name": "LOCAL_WORLD_SIZE", "value": str(gpus)},
            {"name": "HEXRL_DATA_PARALLEL", "value": str(t.data_parallel)},
            {"name": "HEXRL_TENSOR_PARALLEL", "value": str(t.tensor_parallel)},
            {"name": "HEXRL_PIPELINE_PARALLEL", "value": str(t.pipeline_parallel)},
            {"name": "HEXRL_FSDP", "value": "true" if t.fsdp else "false"},
        ]
        vols, mounts = _volumes(job, spec, "trainer")
        ports = [wc.TRAINER_METRICS_PORT, RENDEZVOUS_PORT] + ([wc.WEIGHTS_PORT] if rank == 0 else [])
        container = _container(job, spec, "trainer", spec.images.trainer, gpus, env, ports, mounts, settings)
        terms = [{"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}, *_extra_node_selector(spec)]
        pod_spec: dict[str, Any] = {
            "hostname": f"trainer-{rank}",
            "subdomain": names(job)["trainer"],
            "restartPolicy": "Never",  # a dead rank restarts the whole gang from the checkpoint, not alone
            "containers": [container],
            "volumes": vols,
            "priorityClassName": priority_class_name(settings, "trainer"),
            "terminationGracePeriodSeconds": 60,
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": terms}]}}},
        }
        if t.pool and _pool_is_spot(plan, snap, t.pool):
            pod_spec["tolerations"] = _spot_tolerations()
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta(
                job, f"{job.name}-trainer-{tag}-{rank}", "trainer", t.pool,
                {RANK_LABEL: str(rank), EPOCH_LABEL: tag},
            ),
            "spec": pod_spec,
        }
        out.append(with_hash(pod))
    return out


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


def rollout_pod_name(job: JobRef, slot: str, incarnation: int) -> str:
    return f"{job.name}-rollout-{slot}-{incarnation}"


def render_rollout_pod(
    job: JobRef, spec: RLJobSpec, slot: RolloutSlot, incarnation: int, snap: Snapshot, settings: OperatorSettings
) -> dict[str, Any]:
    """A rollout replica: required affinity to its pool, preferred to its planned node, spot tolerations."""
    r = slot.replica
    key, value = snap.pool_selectors.get(r.pool, (LABEL_POOL, r.pool))
    terms = [{"key": key, "operator": "In", "values": [value]}, *_extra_node_selector(spec)]
    env = [
        {"name": wc.ENV_POD_IP, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "HEXRL_TENSOR_PARALLEL", "value": str(r.tensor_parallel)},
        {"name": "HEXRL_PIPELINE_PARALLEL", "value": str(r.pipeline_parallel)},
        {"name": "HEXRL_PIPELINE_STAGE", "value": str(slot.stage)},
    ]
    vols, mounts = _volumes(job, spec, "rollout")
    container = _container(job, spec, "rollout", spec.images.rollout, slot.gpus, env, [wc.RELAY_PORT], mounts, settings)
    affinity: dict[str, Any] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": terms}]}
        }
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "OnFailure",
        "containers": [container],
        "volumes": vols,
        "affinity": affinity,
        "priorityClassName": priority_class_name(settings, "rollout-spot" if r.spot else "rollout"),
        # time to hand in-flight partial responses to the coordinator on preemption
        "terminationGracePeriodSeconds": 30,
    }
    if r.spot:
        pod_spec["tolerations"] = _spot_tolerations()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(
            job, rollout_pod_name(job, slot.slot, incarnation), "rollout", r.pool,
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


# ------------------------------------------------------------------------------------------ all static


def render_static(
    job: JobRef, spec: RLJobSpec, plan: Plan, plan_summary: Any, live_eta: int, state: dict[str, Any],
    token: str, settings: OperatorSettings,
) -> list[dict[str, Any]]:
    """Children whose identity does not depend on which pods exist: applied as-is every pass."""
    return [
        render_secret(job, token),
        render_configmap(job, spec, plan, plan_summary, live_eta, state),
        *render_coordinator(job, spec, settings),
        *render_trainer_services(job),
        render_trainer_pdb(job, plan),
    ]
