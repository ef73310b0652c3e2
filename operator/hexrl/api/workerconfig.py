"""The contract between the operator and the worker pods: env variables, ports, and the config file.

The operator renders, per RLJob, one ConfigMap whose key `config.yaml` (`CONFIG_FILE_KEY`) holds a
`WorkerConfig` document, and mounts it at `/etc/hexrl/config.yaml` (`DEFAULT_CONFIG_PATH`) in every pod
of the job. The workers (`python -m hexrl_workers coordinator|rollout|trainer`) read the same model.
The document looks like this (camelCase on the wire)::

    job: qwen-math-grpo
    namespace: research
    spec: {...the RLJob spec, exactly as in the RLJob...}
    coordinatorUrl: http://qwen-math-grpo-coordinator.research.svc:8000
    weightsUrl: http://qwen-math-grpo-trainer.research.svc:8001
    maxPolicyLag: 4            # the LIVE η; the operator may rewrite it while the job runs
    plan: {...status.plan, informational...}
    checkpointDir: /checkpoints

Live updates: kubelet refreshes a mounted ConfigMap in place (an atomic symlink swap), so the
coordinator polls the file and applies a changed `maxPolicyLag` without a restart. `maxPolicyLag`
overrides `spec.staleness.maxPolicyLag`, which is only its initial value.

Environment of every pod (names are the `ENV_*` constants below): `HEXRL_JOB` (job name), `HEXRL_ROLE`
(coordinator|rollout|trainer), `HEXRL_CONFIG` (path of this file), `HEXRL_TOKEN` (the pod's own role's bearer token,
from the Secret key named after the role; none for the coordinator), `HEXRL_TOKEN_DIGESTS` (what the
services check callers' tokens against: Secret key `SECRET_DIGESTS_KEY`; see `hexrl.api.jobtokens`),
`HEXRL_COORDINATOR_URL` (overrides `coordinatorUrl`); for rollout and trainer pods `HEXRL_GPU_TYPE` (the
planned GPU type, which tags the work they report for calibration); for trainer
pods also the gang's layout and rendezvous (`hexrl.api.trainerlayout`: pods, processes per pod, parallel
degrees, `MASTER_ADDR`, `MASTER_PORT`; the pod's launcher gives each process `RANK`, `LOCAL_RANK` and
`WORLD_SIZE`, torch.distributed's own names), and
optionally `HEXRL_WEIGHTS_URL`, `HEXRL_POD_IP` (a rollout worker's own address, advertised to peers for
weight relay; the operator sets it from the downward API `status.podIP`). The ports below can be moved by
`HEXRL_PORT` (coordinator), `HEXRL_WEIGHTS_PORT`, `HEXRL_RELAY_PORT` and `HEXRL_TRAINER_METRICS_PORT`
(several workers on one host; 0 = any free port); the operator never sets them.

Probes: every role's status port (`COORDINATOR_PORT`, `RELAY_PORT`, `TRAINER_METRICS_PORT`) answers
`HEALTH_PATH` (200 while the process serves: liveness) and `READY_PATH` (200 once the role can do its work,
else 503 with `{"ready": false, "reason": ...}`: readiness), and `METRICS_PATH`.

This module is pure (no file or network I/O): parsing and rendering work on strings.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import yaml
from pydantic import Field, ValidationError

from hexrl.api.models import PlanSummary, RLJobSpec, _Model

# ---------------------------------------------------------------------------------------- env names

ENV_JOB = "HEXRL_JOB"
ENV_ROLE = "HEXRL_ROLE"
ENV_CONFIG = "HEXRL_CONFIG"
ENV_TOKEN = "HEXRL_TOKEN"
ENV_TOKEN_DIGESTS = "HEXRL_TOKEN_DIGESTS"
ENV_COORDINATOR_URL = "HEXRL_COORDINATOR_URL"
ENV_WEIGHTS_URL = "HEXRL_WEIGHTS_URL"
ENV_POD_IP = "HEXRL_POD_IP"
ENV_GPU_TYPE = "HEXRL_GPU_TYPE"
"""Catalog name of the GPU type the plan put the pod on (rollout and trainer pods): the workers tag the work
they report with it, for the operator's online calibration."""
ENV_RANK = "RANK"
ENV_WORLD_SIZE = "WORLD_SIZE"
ENV_MASTER_ADDR = "MASTER_ADDR"
ENV_MASTER_PORT = "MASTER_PORT"
ENV_COORDINATOR_PORT = "HEXRL_PORT"
ENV_WEIGHTS_PORT = "HEXRL_WEIGHTS_PORT"
ENV_RELAY_PORT = "HEXRL_RELAY_PORT"
ENV_TRAINER_METRICS_PORT = "HEXRL_TRAINER_METRICS_PORT"

# ------------------------------------------------------------------------------ files, keys and ports

CONFIG_FILE_KEY = "config.yaml"
"""Key of the worker config inside the job's ConfigMap."""
CONFIG_MOUNT_DIR = "/etc/hexrl"
"""Where the ConfigMap is mounted (a directory mount, so kubelet can update it in place)."""
DEFAULT_CONFIG_PATH = f"{CONFIG_MOUNT_DIR}/{CONFIG_FILE_KEY}"
SECRET_DIGESTS_KEY = "digests"
"""Key of the role tokens' digests inside the job's Secret (each role's token is under the role's name,
`hexrl.api.jobtokens.TOKEN_ROLES`)."""
TOKEN_ROLE_OF_POD = {"trainer": "trainer", "rollout": "rollout"}
"""Pod role → the token role whose key becomes the pod's HEXRL_TOKEN (the coordinator calls no one)."""

COORDINATOR_PORT = 8000
"""Coordinator HTTP port: the protocol under /v1/, /metrics, /healthz, /readyz."""
WEIGHTS_PORT = 8001
"""Weight service port on trainer rank 0 (the `weightsUrl` Service targets it)."""
RELAY_PORT = 8002
"""Port on which a rollout worker serves the weight versions it holds to peers (when relaying), plus /metrics,
/healthz, /readyz (also without relaying)."""
TRAINER_METRICS_PORT = 8003
"""Every trainer rank's /metrics, /healthz and /readyz."""

HEALTH_PATH = "/healthz"
"""Liveness path on every port above (200 while the process serves)."""
READY_PATH = "/readyz"
"""Readiness path on every status port: 200 once the role can work, else 503 with the reason."""
METRICS_PATH = "/metrics"
PROGRESS_PATH = "/v1/progress"
"""Coordinator progress endpoint the operator polls (JSON, see `hexrl_workers.protocol.Progress`)."""
STALENESS_PATH = "/v1/staleness"
"""Coordinator endpoint to read (GET) or set (PUT {"maxPolicyLag": n}) the live η."""


class Role(StrEnum):
    """What a pod runs: `python -m hexrl_workers <role>`."""

    coordinator = "coordinator"
    rollout = "rollout"
    trainer = "trainer"


class WorkerConfig(_Model):
    """The document mounted at `HEXRL_CONFIG` in every pod of a job."""

    job: str = Field(..., min_length=1, description="RLJob name (also in HEXRL_JOB).")
    namespace: str | None = Field(None, description="Namespace of the RLJob.")
    spec: RLJobSpec = Field(..., description="The RLJob spec, as submitted.")
    coordinator_url: str = Field(
        ..., min_length=1, description="Base URL of the job's coordinator, e.g. http://job-coordinator:8000."
    )
    weights_url: str = Field(
        ..., min_length=1, description="Base URL of the weight service on trainer rank 0, e.g. http://job-trainer:8001."
    )
    max_policy_lag: int | None = Field(
        None,
        ge=0,
        le=64,
        description="Live η; overrides spec.staleness.maxPolicyLag. The operator may change it at run time.",
    )
    plan: PlanSummary | dict[str, Any] | None = Field(
        None, description="The plan the pods were rendered from (informational for the workers)."
    )
    checkpoint_dir: str | None = Field(
        None, description="Directory for trainer checkpoints (default: spec.checkpoint.path)."
    )

    def effective_max_policy_lag(self) -> int:
        """η in force: the live override when set, else the spec's value."""
        return self.max_policy_lag if self.max_policy_lag is not None else self.spec.staleness.max_policy_lag

    def effective_checkpoint_dir(self) -> str:
        return self.checkpoint_dir or self.spec.checkpoint.path


class WorkerConfigError(ValueError):
    """The config document is not valid YAML or does not match `WorkerConfig`; the message says where."""


def parse_worker_config(text: str, *, source: str = "worker config") -> WorkerConfig:
    """Parse a `config.yaml` document; raise `WorkerConfigError` with a readable message when bad."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WorkerConfigError(f"{source}: not valid YAML ({exc}); fix the ConfigMap key {CONFIG_FILE_KEY}") from exc
    if not isinstance(raw, dict):
        raise WorkerConfigError(f"{source}: expected a mapping with keys job, spec, coordinatorUrl, weightsUrl")
    try:
        return WorkerConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise WorkerConfigError(f"{source}: {problems}") from exc


def render_worker_config(config: WorkerConfig) -> str:
    """The YAML text for the ConfigMap key `CONFIG_FILE_KEY`."""
    return yaml.safe_dump(config.wire(), sort_keys=False)


def configmap_data(config: WorkerConfig) -> dict[str, str]:
    """`data` of the job's worker ConfigMap."""
    return {CONFIG_FILE_KEY: render_worker_config(config)}
