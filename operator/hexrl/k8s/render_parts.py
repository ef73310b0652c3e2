"""The parts every rendered child is built from: the job reference (`JobRef`, passed around as `ref`), names,
labels, owner references, the content hash, and the pieces every pod is built from (worker env, volumes,
container, probes, security contexts, spot tolerations).

Pure. `render_static` (non-pod children) and `render_pods` (trainer gang, rollout replicas) build on it;
`render` re-exports the public names (the table of children is in its docstring).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from hexrl.api import workerconfig as wc
from hexrl.api.dataspec import DATA_MOUNT_DIR, DatasetSpec
from hexrl.api.models import API_VERSION, DEFAULT_IMAGE, KIND, RLJobSpec
from hexrl.api.rewardspec import REWARD_MOUNT_DIR
from hexrl.k8s.settings import SPOT_TOLERATION_KEYS, OperatorSettings
from hexrl.k8s.snapshot import ANNOTATION_HASH, LABEL_EPOCH, LABEL_JOB, LABEL_POOL, LABEL_ROLE

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


def labels(ref: JobRef, role: str, pool: str | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "hexrl",
        "app.kubernetes.io/instance": ref.name,
        "app.kubernetes.io/component": role,
        "app.kubernetes.io/part-of": "hexrl",
        "app.kubernetes.io/managed-by": "hexrl-operator",
        LABEL_JOB: ref.name,
        LABEL_ROLE: role,
    }
    if pool:
        out[LABEL_POOL] = slug(pool, 63)
    return out


def selector(ref: JobRef, role: str) -> dict[str, str]:
    return {LABEL_JOB: ref.name, LABEL_ROLE: role}


def owner_ref(ref: JobRef) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": ref.name,
        "uid": ref.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def meta(ref: JobRef, name: str, role: str, pool: str | None = None, extra: dict[str, str] | None = None) -> dict:
    return {
        "name": name,
        "namespace": ref.namespace,
        "labels": {**labels(ref, role, pool), **(extra or {})},
        "ownerReferences": [owner_ref(ref)],
    }


def names(ref: JobRef) -> dict[str, str]:
    n = ref.name
    return {
        "secret": f"{n}-token",
        "config": f"{n}-config",
        "coordinator": f"{n}-coordinator",
        "trainer": f"{n}-trainer",
        "weights": f"{n}-weights",
        "serviceaccount": f"{n}-workers",
        "networkpolicy": n,
    }


def coordinator_url(ref: JobRef) -> str:
    return f"http://{names(ref)['coordinator']}.{ref.namespace}.svc:{wc.COORDINATOR_PORT}"


def weights_url(ref: JobRef) -> str:
    return f"http://{names(ref)['weights']}.{ref.namespace}.svc:{wc.WEIGHTS_PORT}"


def master_addr(ref: JobRef) -> str:
    return f"trainer-0.{names(ref)['trainer']}.{ref.namespace}.svc"


def priority_class_name(settings: OperatorSettings, kind: str) -> str:
    return f"{settings.workloads.priority_class_prefix}-{kind}"


# ----------------------------------------------------------------------------------------- pod parts


def worker_env(ref: JobRef, role: str, settings: OperatorSettings) -> list[dict[str, Any]]:
    """The environment every worker container gets: job, role, config path, the token of its own role only
    (none for the coordinator, which calls no one), the role tokens' digests (to check its callers), service
    URLs."""
    secret = names(ref)["secret"]
    token_role = wc.TOKEN_ROLE_OF_POD.get(role)
    own_token = ([{"name": wc.ENV_TOKEN, "valueFrom": {"secretKeyRef": {"name": secret, "key": token_role}}}]
                 if token_role else [])
    return [
        {"name": wc.ENV_JOB, "value": ref.name},
        {"name": wc.ENV_ROLE, "value": role},
        {"name": wc.ENV_CONFIG, "value": wc.DEFAULT_CONFIG_PATH},
        *own_token,
        {"name": wc.ENV_TOKEN_DIGESTS,
         "valueFrom": {"secretKeyRef": {"name": secret, "key": wc.SECRET_DIGESTS_KEY}}},
        {"name": wc.ENV_COORDINATOR_URL, "value": coordinator_url(ref)},
        {"name": wc.ENV_WEIGHTS_URL, "value": weights_url(ref)},
    ]


def pod_volumes(ref: JobRef, spec: RLJobSpec, role: str) -> tuple[list[dict], list[dict]]:
    """(volumes, mounts): the worker config, the writable scratch directories (`SCRATCH_DIRS`: the root
    filesystem is read-only), the model PVC if any, checkpoints for the trainer, the dataset's PVC or ConfigMap
    for the coordinator (at `DATA_MOUNT_DIR`), the reward ConfigMap (reward.configMap) read-only for rollout
    workers, and for the trainer and
    rollout a memory-backed /dev/shm (a container's default is 64 MiB: too small for NCCL, for vLLM's
    tensor-parallel workers and for handing a weight version to them; it counts against the pod's
    memory limit)."""
    vols: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": names(ref)["config"]}}]
    mounts: list[dict[str, Any]] = [{"name": "config", "mountPath": wc.CONFIG_MOUNT_DIR, "readOnly": True}]
    for name, path in SCRATCH_DIRS.items():
        vols.append({"name": name, "emptyDir": {}})
        mounts.append({"name": name, "mountPath": path})
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
    if role == "rollout" and spec.reward.config_map:  # the user's reward file(s); only rollout workers score
        vols.append({"name": "reward", "configMap": {"name": spec.reward.config_map}})
        mounts.append({"name": "reward", "mountPath": REWARD_MOUNT_DIR, "readOnly": True})
    if role == "coordinator" and spec.dataset.mounted:
        vols.append(dataset_volume(spec.dataset))
        mounts.append({"name": "dataset", "mountPath": DATA_MOUNT_DIR, "readOnly": True})
    if role in ("trainer", "rollout"):
        vols.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return vols, mounts


def dataset_volume(dataset: DatasetSpec) -> dict[str, Any]:
    """The volume of spec.dataset's files (a PVC read-only, or a ConfigMap): only the coordinator reads them.

    The ConfigMap is optional: a missing one leaves the mount empty, so the coordinator starts and reports the
    missing file (Ready=False, DatasetUnavailable) instead of the pod hanging in ContainerCreating; it loads
    the files once the ConfigMap exists."""
    if dataset.pvc:
        return {"name": "dataset", "persistentVolumeClaim": {"claimName": dataset.pvc, "readOnly": True}}
    return {"name": "dataset", "configMap": {"name": dataset.config_map, "optional": True}}


STATUS_PORTS = {"coordinator": wc.COORDINATOR_PORT, "rollout": wc.RELAY_PORT, "trainer": wc.TRAINER_METRICS_PORT}
"""The port on which each role answers /healthz, /readyz and /metrics (the probes and the PodMonitor)."""
LIVENESS_ROLES = ("coordinator", "rollout")
"""Roles whose hung process the kubelet restarts. Not the trainer: its pods never restart alone (a dead
rank restarts the gang from the checkpoint), and a rank blocked in a collective waits for its peers."""
WORKER_USER = 10001
"""The workers' user in the worker image (workers/Dockerfile, devcluster/images.py)."""
WORKER_GROUP = 10001
"""The workers' group in the worker image: mounted volumes are made writable for it through the pod's
fsGroup."""
HOME_DIR = "/home/hexrl"
"""The workers' home directory in the image; an emptyDir over it (the root filesystem is read-only)."""
SCRATCH_DIRS = {"tmp": "/tmp", "home": HOME_DIR}
"""Volume name → mount path of the writable emptyDirs of every job pod: the root filesystem is read-only,
and these are where Python, torch and the other libraries write (temporary files, the torch launcher's
logs, compile and download caches). On the node's disk, not in memory: /dev/shm is the memory one."""
SCRATCH_ENV = (
    ("HOME", HOME_DIR),
    ("TMPDIR", "/tmp"),
    ("XDG_CACHE_HOME", f"{HOME_DIR}/.cache"),
    ("XDG_CONFIG_HOME", f"{HOME_DIR}/.config"),
    ("TORCH_HOME", f"{HOME_DIR}/.cache/torch"),
    ("TORCHINDUCTOR_CACHE_DIR", f"{HOME_DIR}/.cache/torchinductor"),
    ("TRITON_CACHE_DIR", f"{HOME_DIR}/.cache/triton"),
    ("HF_HOME", f"{HOME_DIR}/.cache/huggingface"),
    ("VLLM_CACHE_ROOT", f"{HOME_DIR}/.cache/vllm"),
    ("MPLCONFIGDIR", f"{HOME_DIR}/.config/matplotlib"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
)
"""The environment that points HOME, temporary files and every library cache into `SCRATCH_DIRS`
(PYTHONDONTWRITEBYTECODE: the venv is read-only, so Python would try and fail to write .pyc files)."""


def probes(role: str) -> dict[str, Any]:
    """Readiness on /readyz of the role's status port; for the coordinator and rollout also liveness on
    /healthz, held back by a startup probe until the process first answers (a model load may take minutes)."""
    port = STATUS_PORTS[role]
    out: dict[str, Any] = {"readinessProbe": {
        "httpGet": {"path": wc.READY_PATH, "port": port}, "periodSeconds": 10, "failureThreshold": 3,
        "timeoutSeconds": 5,
    }}
    if role in LIVENESS_ROLES:
        def health() -> dict[str, Any]:
            return {"path": wc.HEALTH_PATH, "port": port}

        out["startupProbe"] = {"httpGet": health(), "periodSeconds": 5, "failureThreshold": 120, "timeoutSeconds": 5}
        out["livenessProbe"] = {"httpGet": health(), "periodSeconds": 20, "failureThreshold": 3, "timeoutSeconds": 5}
    return out


def pod_security_context() -> dict[str, Any]:
    """The Pod Security Standard `restricted` at the pod level: the image's non-root user and group (named
    by number, so the kubelet can check runAsNonRoot without reading the image), the runtime's default
    seccomp profile; fsGroup makes the checkpoint and model volumes writable/readable by the workers' group,
    changed only when the volume's root does not match already."""
    return {
        "runAsNonRoot": True,
        "runAsUser": WORKER_USER,
        "runAsGroup": WORKER_GROUP,
        "fsGroup": WORKER_GROUP,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """`restricted` at the container level: no privilege, no escalation (setuid binaries stay powerless), no
    capabilities, a read-only root filesystem (the workers write only to `SCRATCH_DIRS`, /dev/shm and their
    volumes); the user and seccomp profile repeated, so a scanner reading containers alone sees them too."""
    return {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": WORKER_USER,
        "runAsGroup": WORKER_GROUP,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def identity(ref: JobRef) -> dict[str, Any]:
    """The pod spec fields naming who a job pod is to the API server: the job's own ServiceAccount (no RBAC
    bound to it), and no token mounted — the workers never call the API server."""
    return {"serviceAccountName": names(ref)["serviceaccount"], "automountServiceAccountToken": False}


def scratch_env() -> list[dict[str, Any]]:
    """HOME, TMPDIR and the cache directories of the libraries the workers load, pointed at `SCRATCH_DIRS`
    (each library would otherwise pick a path under a read-only directory or guess one)."""
    return [{"name": name, "value": value} for name, value in SCRATCH_ENV]


def image_and_policy(spec: RLJobSpec, image: str, settings: OperatorSettings) -> tuple[str, str]:
    """(image, imagePullPolicy): the operator's `worker_image` replaces the built-in default image, with its
    own pull policy when set (e.g. Never for an image loaded into the nodes); an RLJob's image always wins."""
    policy = str(getattr(spec.images.pull_policy, "value", spec.images.pull_policy))
    if settings.workloads.worker_image and image == DEFAULT_IMAGE:
        return settings.workloads.worker_image, settings.workloads.worker_image_pull_policy or policy
    return image, policy


def container_resources(spec: RLJobSpec, role: str, gpus: int) -> dict[str, Any]:
    """CPU and memory from `spec.resources.<role>` (defaults filled in), GPUs from the plan."""
    resources: dict[str, Any] = getattr(spec.resources, role).container_resources()
    if gpus:
        resources["requests"]["nvidia.com/gpu"] = str(gpus)
        resources["limits"] = {**resources.get("limits", {}), "nvidia.com/gpu": str(gpus)}
    return resources


def container(
    ref: JobRef, spec: RLJobSpec, role: str, image: str, gpus: int, env_extra: list[dict], ports: list[int],
    mounts: list[dict], settings: OperatorSettings,
) -> dict[str, Any]:
    """A worker container: image and pull policy, command, env, ports, resources (spec + GPUs of the plan),
    the restricted security context, mounts, probes on the role's status port; the last log lines become the termination message, so a
    crash shows in the pod's status (and in the RLJob's Ready condition) without `kubectl logs`."""
    image, policy = image_and_policy(spec, image, settings)
    return {
        "name": role,
        "image": image,
        "imagePullPolicy": policy,
        "command": ["python", "-m", "hexrl_workers", role],
        "env": worker_env(ref, role, settings) + scratch_env() + env_extra,
        "ports": [{"containerPort": p, "name": f"p{p}"} for p in ports],
        "resources": container_resources(spec, role, gpus),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        **probes(role),
    }


def spot_tolerations() -> list[dict[str, Any]]:
    """Tolerations of the taints spot node pools carry (settings.SPOT_TOLERATION_KEYS)."""
    return [
        {"key": k, "operator": "Equal", "value": v, "effect": "NoSchedule"} for k, v in SPOT_TOLERATION_KEYS
    ]


def extra_node_selector(spec: RLJobSpec) -> list[dict[str, Any]]:
    """The spec's placement.nodeSelector as node-affinity match expressions."""
    return [
        {"key": k, "operator": "In", "values": [v]} for k, v in sorted((spec.placement.node_selector or {}).items())
    ]
