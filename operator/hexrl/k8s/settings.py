"""Operator settings: one dataclass of groups (discovery, pricing, watching, planning, identity, workloads,
endpoints, scaling), read from flags and `HEXRL_OPERATOR_*` environment variables.

Every knob the operator has lives here with its unit, default and reason, so the Helm chart, the CLI and
the tests set the same names. A field's environment variable is named after the field alone, not its
group (`HEXRL_OPERATOR_WORKER_IMAGE` sets `workloads.worker_image`), so the chart's variables stay as they
are. `OperatorSettings.from_env()` reads the environment; the CLI sets fields from its flags with
`OperatorSettings.with_values`.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from hexrl.sched.catalog import DEFAULT_CATALOG, Catalog, CatalogError, GPUSpec

DEFAULT_POOL_LABEL_KEYS: tuple[str, ...] = (
    "karpenter.sh/nodepool",
    "cloud.google.com/gke-nodepool",
    "eks.amazonaws.com/nodegroup",
    "kubernetes.azure.com/agentpool",
    "hexrl.dev/pool",
)
"""Node labels naming the node pool, first present wins (DESIGN.md §4)."""

DEFAULT_SPOT_LABELS: tuple[tuple[str, str], ...] = (
    ("karpenter.sh/capacity-type", "spot"),
    ("cloud.google.com/gke-spot", "true"),
    ("cloud.google.com/gke-preemptible", "true"),
    ("eks.amazonaws.com/capacityType", "SPOT"),
    ("kubernetes.azure.com/scalesetpriority", "spot"),
    ("hexrl.dev/spot", "true"),
)
"""(label, value) pairs that mark a node as spot/preemptible capacity."""

DEFAULT_GOING_AWAY_TAINTS: tuple[str, ...] = (
    "node.kubernetes.io/unschedulable",
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "ToBeDeletedByClusterAutoscaler",
    "karpenter.sh/disrupted",
    "karpenter.sh/disruption",
    "cloud.google.com/impending-node-termination",
    "aws-node-termination-handler/spot-itn",
    "aws-node-termination-handler/scheduled-maintenance",
    "kubernetes.azure.com/scalesetpriority-evict",
    "hexrl.dev/reclaim",
)
"""Taint keys (NoSchedule/NoExecute) that mean the node is being reclaimed or terminated."""

SPOT_TOLERATION_KEYS: tuple[tuple[str, str], ...] = (
    ("karpenter.sh/capacity-type", "spot"),
    ("cloud.google.com/gke-spot", "true"),
    ("kubernetes.azure.com/scalesetpriority", "spot"),
    ("hexrl.dev/spot", "true"),
)
"""Taints (key=value:NoSchedule) that providers put on spot pools; rollout pods on spot tolerate them."""


@dataclass
class ScalingSettings:
    """Live rollout scaling from the coordinator's progress (grow onto spot, shrink near η)."""

    enabled: bool = True
    """Act on progress reports at all (default on). Off = rollout stays exactly as planned."""
    poll_seconds: float = 15.0
    """s between progress polls per job (default 15): slow enough to be cheap, fast enough for minutes-long steps."""
    starve_idle_fraction: float = 0.3
    """Trainer idle fraction above which the trainer counts as starved (default 0.3)."""
    grow_after_polls: int = 2
    """Consecutive starved polls before adding a replica (default 2; hysteresis against one slow step)."""
    shrink_staleness_fraction: float = 0.85
    """Observed staleness ≥ this × η counts as near the bound (default 0.85)."""
    shrink_after_polls: int = 2
    """Consecutive near-bound polls before removing an extra replica (default 2)."""
    max_extra_replicas: int = 16
    """Upper bound on replicas added beyond the plan (default 16), whatever the budget allows."""
    cooldown_seconds: float = 60.0
    """s after a scaling step during which no opposite step is taken (default 60)."""


@dataclass
class CalibrationSettings:
    """Online calibration of the cost model from what running jobs measure (the GPUCalibration object)."""

    enabled: bool = True
    """Learn from the workers' observed work and plan with the GPUCalibration's factors (default on). Off =
    the catalog's predictions only, and the object is neither read nor written."""
    min_observation_seconds: float = 2.0
    """GPU-seconds of work a (GPU type, phase) must have done between two progress polls to count as one
    observation (default 2: shorter windows are mostly timer noise)."""
    window: int = 32
    """Recent observations kept per (GPU type, phase) in the object's status, which the fit uses (default 32:
    about 8 minutes of one job at the default 15 s poll, bounded so the object stays small)."""
    event_change: float = 0.1
    """Relative move of a factor (|ln(new/old)| > ln(1 + this)) that is news for a job: an Event and a
    re-plan check (default 0.1, 10 %; smaller moves are noise to a plan)."""
    replan_margin: float = 0.1
    """Re-plan when, under the new factors, the best re-plan's predicted throughput beats the current plan's
    (or, with a throughput target, its cost undercuts it) by more than this share (default 0.1, 10 %:
    moving pods costs warm-up time that a smaller gain does not repay)."""


DEFAULT_SCRAPER_NAMESPACE_LABELS: tuple[tuple[str, str], ...] = (("kubernetes.io/metadata.name", "monitoring"),)
"""Where Prometheus runs by default (the API server labels every namespace with its name)."""

LABEL_PAIR_SETTINGS = ("spot_labels", "scraper_namespace_labels", "scraper_pod_labels")
"""Settings that are (label, value) pairs: in the environment `label=value,label=value`."""

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
"""Values of `WorkloadSettings.worker_image_pull_policy` (Kubernetes' imagePullPolicy)."""

PlanningMode = Literal["serial", "concurrent"]
PLANNING_MODES: tuple[PlanningMode, ...] = ("serial", "concurrent")
"""Values of `PlanningSettings.mode`."""


@dataclass
class DiscoverySettings:
    """How nodes become pools the planner can use: which labels name a pool or mark spot capacity, which
    taints mean a node is going away, which GPU types exist and how fast pools talk to each other."""

    pool_label_keys: tuple[str, ...] = DEFAULT_POOL_LABEL_KEYS
    """Node labels naming a pool, first present wins (env: comma-separated)."""
    spot_labels: tuple[tuple[str, str], ...] = DEFAULT_SPOT_LABELS
    """(label, value) pairs meaning spot capacity."""
    going_away_taints: tuple[str, ...] = DEFAULT_GOING_AWAY_TAINTS
    """Taint keys meaning reclaim/termination; tainted nodes get no new work and lose the job's pods."""
    gpu_catalog: dict[str, dict[str, Any]] = field(default_factory=dict)
    """GPU catalog overrides (default {} = the shipped catalog), the shape of an inventory's `catalog:` section:
    GPU name → camelCase fields (tflopsBf16, hbmGB, hbmTBps, intraNodeGBps, interNodeGBps, priceOnDemand,
    priceSpot, vendor, aliases). A known name or alias gets those fields replaced; a new name adds a GPU type
    (every numeric field required) whose aliases let GPU-feature-discovery product labels map to it, so its
    nodes become pools. Validated on construction (CatalogError naming GPU and field). Env: JSON object."""
    inter_pool_gbps: float = 1.5
    """GB/s between nodes of different pools (default 1.5, as in inventories)."""

    def __post_init__(self) -> None:
        self.catalog()  # fail at start-up (and in tests at construction), not at the first node event

    def catalog(self) -> Catalog:
        """The shipped GPU catalog with `gpu_catalog` applied (built once per distinct override set)."""
        return _overridden_catalog(_catalog_key(self.gpu_catalog))

    def gpu_overrides(self) -> tuple[GPUSpec, ...]:
        """The specs `gpu_catalog` replaces or adds, for `Cluster.gpu_overrides` (the planner applies them)."""
        return _override_specs(_catalog_key(self.gpu_catalog))


@dataclass
class PricingSettings:
    """What GPU hours cost, where the catalog's list prices are not what this cluster pays."""

    price_overrides: dict[str, float] = field(default_factory=dict)
    """$/GPU-hour per pool name or GPU type (pool wins); from the chart's values (env: JSON object)."""


@dataclass
class WatchingSettings:
    """What the operator watches and how it turns events into reconcile passes."""

    namespace: str | None = None
    """Watch only this namespace (None = all namespaces; needs the ClusterRole)."""
    debounce_seconds: float = 1.0
    """s of quiet after a node event before re-planning (default 1): a storm of events → one re-plan."""
    debounce_max_seconds: float = 3.0
    """s after the first pending event at which we re-plan even if events keep coming (default 3)."""
    pod_debounce_seconds: float = 0.2
    """s of quiet after a failed/disrupted pod of a job before replacing it (default 0.2)."""
    not_ready_grace_seconds: float = 300.0
    """s a job's pod may run without being Ready before the RLJob's Ready condition names it as the problem
    (default 300: a trainer loading a large model or waiting for its peers is not yet a problem)."""
    worker_limit: int = 8
    """Threads reconciling jobs concurrently (default 8; each holds one job's lock)."""


@dataclass
class PlanningSettings:
    """How passes of different jobs share the planner."""

    mode: PlanningMode = field(default="serial", metadata={"env": "HEXRL_OPERATOR_PLANNING"})
    """`serial` (default): one job plans at a time (each plan sees the GPUs the plans before it reserved),
    MILPs that differ from an earlier one only by less free capacity reuse its optimum (exact, see
    sched/solvecache.py), and the homogeneous baselines are computed after the children exist.
    `concurrent`: the same, but jobs plan at the same time against a ledger of the GPUs other jobs' plans
    hold and commit only if nothing they chose was taken meanwhile (else re-plan holding the ledger) —
    measured slower on 2 cores (bench/bench_operator.py: CPU-bound solves under the GIL only stretch each
    other), kept for machines with more cores. Env: HEXRL_OPERATOR_PLANNING."""
    homogeneous_baselines: bool = True
    """Add the best homogeneous plan per GPU type to each plan's explanation (default true; CPU only,
    computed in the background, so it never delays children)."""

    def __post_init__(self) -> None:
        if self.mode not in PLANNING_MODES:
            gone = " (legacy planning was removed: every MILP solved afresh is now a planner the benchmark injects)"
            raise ValueError(
                f"planning={self.mode!r} is not a planning mode{gone if self.mode == 'legacy' else ''}; use one of "
                f"{', '.join(PLANNING_MODES)} (env HEXRL_OPERATOR_PLANNING)"
            )


@dataclass
class IdentitySettings:
    """Who the operator is to the API server and to its other replicas."""

    field_manager: str = "hexrl-operator"
    """Server-side-apply field manager name (also the Events' reporting instance)."""
    key_secret: str = "hexrl-operator-key"
    """Secret (in `key_namespace`) holding the operator's key; each job's service token is
    HMAC-SHA256(key, job UID), so the operator never reads a job's Secret back (RBAC: `get` on this one
    Secret by name, in one namespace — no cluster-wide Secret read). Created with a random key if missing."""
    key_namespace: str = ""
    """Namespace of `key_secret` (default "": the pod's namespace from POD_NAMESPACE, else hexrl-system)."""
    peering: str | None = None
    """kopf peering object name (leader election); None with standalone=False = kopf's default peering."""
    standalone: bool = False
    """Run without peering (single replica, tests)."""
    priority: int = 0
    """kopf peering priority; 0 = random per process, so two replicas never tie (a tie pauses both)."""

    def operator_namespace(self) -> str:
        """Where the operator's own objects (the key Secret) live."""
        return self.key_namespace or os.environ.get("POD_NAMESPACE") or "hexrl-system"


@dataclass
class WorkloadSettings:
    """What the operator puts into every job's pods and NetworkPolicy, whatever the RLJob says."""

    worker_image: str | None = None
    """Image for job pods whose RLJob leaves an image at the built-in default (None = that default). Lets a
    platform team point every job at its own registry or mirror once, at install time, or a developer at an
    image loaded into the nodes (`hexrl.local/hexrl-workers:<tag>`); an image set in the RLJob always wins."""
    worker_image_pull_policy: str | None = None
    """imagePullPolicy of the pods that get `worker_image` (None = the RLJob's spec.images.pullPolicy):
    `Never` (or `IfNotPresent`) runs an image loaded into the nodes' runtime without contacting a registry."""
    priority_class_prefix: str = "hexrl"
    """PriorityClasses `<prefix>-trainer`, `<prefix>-rollout`, `<prefix>-rollout-spot`."""
    scraper_namespace_labels: tuple[tuple[str, str], ...] = DEFAULT_SCRAPER_NAMESPACE_LABELS
    """(label, value) pairs selecting the namespaces whose pods may scrape the job pods' status ports
    (/metrics, /healthz, /readyz) through each job's NetworkPolicy (default: the namespace named
    `monitoring`). Empty = no scraper is let in. Env: comma-separated label=value pairs."""
    scraper_pod_labels: tuple[tuple[str, str], ...] = ()
    """(label, value) pairs narrowing the scrapers to these pods of those namespaces (default: none = every
    pod there), e.g. `app.kubernetes.io/name=prometheus`. Env: comma-separated label=value pairs."""

    def __post_init__(self) -> None:
        if self.worker_image_pull_policy not in (None, *PULL_POLICIES):
            raise ValueError(
                f"worker_image_pull_policy={self.worker_image_pull_policy!r} is not an imagePullPolicy; use one of "
                f"{', '.join(PULL_POLICIES)} (flag --worker-image-pull-policy, env HEXRL_OPERATOR_WORKER_IMAGE_PULL_POLICY)"
            )


@dataclass
class EndpointSettings:
    """Where the operator listens and where it reaches each job's coordinator."""

    progress_url_template: str = "http://{pod_ip}:{port}/v1/progress"
    """Coordinator progress URL; {name}, {namespace}, {port} and {pod_ip} (the coordinator pod's IP)
    substituted. The default dials the pod directly: it works from an operator inside the cluster and from
    one on a host of the pod network (`hexrl operator --kubeconfig` next to a local cluster, where the
    cluster's `*.svc` names do not resolve), and it reaches a coordinator that is not Ready — the one that
    reports a missing dataset. `http://{name}-coordinator.{namespace}.svc:{port}/v1/progress` goes through
    the job's Service instead. Tests point it at 127.0.0.1."""
    metrics_port: int = 8080
    """Prometheus /metrics port (0 = off)."""
    health_port: int = 8081
    """Liveness/readiness port: /healthz and /readyz (0 = off)."""
    health_host: str = "0.0.0.0"
    """Address the metrics and health servers bind."""


GROUPS: dict[str, type[Any]] = {
    "discovery": DiscoverySettings, "pricing": PricingSettings, "watching": WatchingSettings,
    "planning": PlanningSettings, "identity": IdentitySettings, "workloads": WorkloadSettings,
    "endpoints": EndpointSettings, "scaling": ScalingSettings, "calibration": CalibrationSettings,
}
"""Group name → its settings class, as `OperatorSettings` holds them."""


@dataclass
class OperatorSettings:
    """Everything `hexrl operator` can be told, grouped as kopf groups its settings. Each field is read from
    the environment variable `HEXRL_OPERATOR_<FIELD_NAME_UPPER>` whatever its group (scaling's as
    `HEXRL_OPERATOR_SCALING_<FIELD>`, calibration's as `HEXRL_OPERATOR_CALIBRATION_<FIELD>`; `planning.mode` as
    `HEXRL_OPERATOR_PLANNING`)."""

    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    pricing: PricingSettings = field(default_factory=PricingSettings)
    watching: WatchingSettings = field(default_factory=WatchingSettings)
    planning: PlanningSettings = field(default_factory=PlanningSettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    workloads: WorkloadSettings = field(default_factory=WorkloadSettings)
    endpoints: EndpointSettings = field(default_factory=EndpointSettings)
    scaling: ScalingSettings = field(default_factory=ScalingSettings)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    log_level: str = "INFO"
    """Python log level name."""

    def operator_namespace(self) -> str:
        """Where the operator's own objects (the key Secret) live."""
        return self.identity.operator_namespace()

    def catalog(self) -> Catalog:
        """The GPU catalog with the overrides applied (`DiscoverySettings.catalog`)."""
        return self.discovery.catalog()

    def gpu_overrides(self) -> tuple[GPUSpec, ...]:
        """The specs the catalog overrides replace or add (`DiscoverySettings.gpu_overrides`)."""
        return self.discovery.gpu_overrides()

    def with_values(self, **values: Any) -> OperatorSettings:
        """A copy with fields set by the names of their environment variables, lower-cased and without the
        prefix (`worker_image=...`, `planning="concurrent"`), whatever group holds them: the CLI's flags and
        tests. An unknown name raises TypeError; a bad value the group's ValueError."""
        by_group: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        for name, value in values.items():
            if name == "log_level":
                top[name] = value
                continue
            if name not in _FIELD_OF:
                raise TypeError(f"OperatorSettings has no setting {name!r}")
            group, attr = _FIELD_OF[name]
            by_group.setdefault(group, {})[attr] = value
        groups = {g: replace(getattr(self, g), **changes) for g, changes in by_group.items()}
        return replace(self, **groups, **top)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorSettings:
        """Read `HEXRL_OPERATOR_*` variables; unknown or malformed values raise ValueError naming the variable."""
        env = dict(os.environ if env is None else env)
        out = cls()
        groups: dict[str, Any] = {g: _group_from_env(getattr(out, g), g, env) for g in GROUPS}
        top: dict[str, Any] = {"log_level": env["HEXRL_OPERATOR_LOG_LEVEL"]} if "HEXRL_OPERATOR_LOG_LEVEL" in env else {}
        return replace(out, **groups, **top)


def env_name(group: str, f: Any) -> str:
    """The environment variable of one field (unchanged by the grouping: the chart sets these names)."""
    if "env" in f.metadata:
        return str(f.metadata["env"])
    prefix = {"scaling": "HEXRL_OPERATOR_SCALING_", "calibration": "HEXRL_OPERATOR_CALIBRATION_"}.get(
        group, "HEXRL_OPERATOR_")
    return f"{prefix}{f.name.upper()}"


_FIELD_OF: dict[str, tuple[str, str]] = {
    env_name(g, f).removeprefix("HEXRL_OPERATOR_").lower(): (g, f.name)
    for g, group in GROUPS.items() if g != "scaling" for f in fields(group)
}
"""Flat setting name (its environment variable's) → (group, field): `planning` → ("planning", "mode")."""


def _group_from_env(current: Any, group: str, env: dict[str, str]) -> Any:
    """One group with the fields its environment variables set (ValueError naming a malformed variable)."""
    updates: dict[str, Any] = {}
    for f in fields(current):
        key = env_name(group, f)
        if key in env:
            updates[f.name] = _parse(key, env[key], getattr(current, f.name), f.name)
    return replace(current, **updates) if updates else current


def _catalog_key(overrides: dict[str, dict[str, Any]]) -> str:
    """A hashable, order-independent key for an override set (the cache key of the catalogs below)."""
    return json.dumps(overrides, sort_keys=True, default=str)


@functools.lru_cache(maxsize=16)
def _overridden_catalog(key: str) -> Catalog:
    try:
        return DEFAULT_CATALOG.with_overrides(json.loads(key), where="gpu_catalog")
    except CatalogError as exc:
        raise CatalogError(
            f"invalid GPU catalog override (chart value gpuCatalog, env HEXRL_OPERATOR_GPU_CATALOG): {exc}"
        ) from None


@functools.lru_cache(maxsize=16)
def _override_specs(key: str) -> tuple[GPUSpec, ...]:
    catalog = _overridden_catalog(key)
    specs = (catalog.lookup(str(name)) for name in json.loads(key))
    return tuple(s for s in specs if s is not None)


def _parse(key: str, raw: str, default: Any, name: str) -> Any:
    try:
        if name == "gpu_catalog":
            value = json.loads(raw) if raw.strip() else {}
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object mapping GPU names to catalog fields")
            _overridden_catalog(_catalog_key(value))  # validate here so the message names the variable
            return value
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, dict):
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return {str(k): float(v) for k, v in value.items()}
        if name in LABEL_PAIR_SETTINGS:
            pairs = [p.split("=", 1) for p in raw.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("expected label=value pairs separated by commas")
            return tuple((k.strip(), v.strip()) for k, v in pairs)
        if isinstance(default, tuple):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        return raw or None if default is None else raw
    except RecursionError:  # JSON nested thousands deep (json.loads recurses): a sentence, not a traceback
        raise ValueError(f"{key} is not valid: its JSON is nested too deeply; give a JSON object") from None
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{key}={raw!r} is not valid: {exc}") from exc
