"""Every Prometheus metric the operator exports, defined once, each with its help string.

This module is the single source of truth for the operator's metric names (a docs generator and the
dashboard checks import it); nothing else in `hexrl.k8s` creates metrics. Names carry the `hexrl_`
prefix and base units (`_seconds`, `_total`); per-job gauges are labelled `namespace`, `job`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from hexrl.sched.types import Cluster

RECONCILES = Counter(
    "hexrl_operator_reconciles_total",
    "Reconcile passes over RLJobs, by result (ok, infeasible, invalid, error).",
    ["result"],
)
RECONCILE_SECONDS = Histogram(
    "hexrl_operator_reconcile_duration_seconds",
    "Wall time of one reconcile pass of one RLJob (snapshot, plan, apply, status).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PLAN_SOLVE_SECONDS = Histogram(
    "hexrl_plan_solve_seconds",
    "Planner time per plan() or replan() call, as measured by the operator.",
    ["kind"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PLANNED_TOKENS = Gauge(
    "hexrl_job_planned_tokens_per_second",
    "Predicted end-to-end training-consumed tokens/s of the job's current plan.",
    ["namespace", "job"],
)
PLANNED_COST = Gauge(
    "hexrl_job_planned_cost_dollars_per_hour",
    "Dollars per hour of all GPUs in the job's current plan.",
    ["namespace", "job"],
)
PLANNED_GPUS = Gauge(
    "hexrl_job_planned_gpus",
    "GPUs in the job's current plan (trainer + rollout).",
    ["namespace", "job"],
)
OBSERVED_STALENESS = Gauge(
    "hexrl_job_observed_staleness",
    "Policy lag reported by the job's coordinator (trainer version minus behaviour version).",
    ["namespace", "job"],
)
EXTRA_ROLLOUT = Gauge(
    "hexrl_job_extra_rollout_replicas",
    "Rollout replicas added beyond the plan by live scaling (trainer starving).",
    ["namespace", "job"],
)
PREEMPTIONS = Counter(
    "hexrl_preemptions_handled_total",
    "Pods of RLJobs replaced because their node went away or they carried DisruptionTarget, by role.",
    ["role"],
)
CHILDREN_CREATED = Counter(
    "hexrl_children_created_total",
    "Child objects created or changed by server-side apply, by kind.",
    ["kind"],
)
CHILDREN_DELETED = Counter(
    "hexrl_children_deleted_total",
    "Child objects deleted by the operator, by kind.",
    ["kind"],
)
ERRORS = Counter(
    "hexrl_operator_errors_total",
    "Errors while reconciling, by reason (ApiError reason, planner reason or exception class).",
    ["reason"],
)
REPLANS = Counter(
    "hexrl_replans_total",
    "Calls to the planner, by trigger (spec, cluster, first).",
    ["trigger"],
)
SCALING = Counter(
    "hexrl_rollout_scaling_total",
    "Live rollout scaling decisions, by direction (grow, shrink).",
    ["direction"],
)
JOBS = Gauge(
    "hexrl_jobs",
    "RLJobs known to this operator, by phase.",
    ["phase"],
)
API_REQUESTS = Counter(
    "hexrl_operator_api_requests_total",
    "Requests the reconciler sent to the Kubernetes API server (kopf's own watches excluded).",
)
EVENTS_DEBOUNCED = Counter(
    "hexrl_operator_node_events_total",
    "Node events seen, by whether they changed what the planner sees (relevant, ignored).",
    ["kind"],
)
CLUSTER_GPUS = Gauge(
    "hexrl_cluster_gpus",
    "Allocatable GPUs the operator sees in its cluster snapshot, by GPU type, pool and capacity type "
    "(spot, on-demand).",
    ["gpu", "pool", "capacity_type"],
)
CLUSTER_GPUS_GOING_AWAY = Gauge(
    "hexrl_cluster_gpus_going_away",
    "Allocatable GPUs on nodes that are going away (deleting, cordoned, tainted for reclaim, NotReady), "
    "by GPU type, pool and capacity type.",
    ["gpu", "pool", "capacity_type"],
)

CALIBRATION_FACTOR = Gauge(
    "hexrl_calibration_factor",
    "Factor in force multiplying the catalog's predicted rate of a phase on a GPU type (the GPUCalibration: "
    "pinned, else fitted from running jobs; 1 = the catalog), by GPU type, phase and source (pinned, fitted).",
    ["gpu", "phase", "source"],
)
CALIBRATION_CONFIDENCE = Gauge(
    "hexrl_calibration_confidence",
    "Share of the fitted factor's precision that comes from observations rather than the catalog prior "
    "(0–1), by GPU type and phase.",
    ["gpu", "phase"],
)
CALIBRATION_OBSERVED_SECONDS = Gauge(
    "hexrl_calibration_observed_seconds",
    "Busy GPU-seconds of observed work behind a fitted factor (the fit's current window), by GPU type and phase.",
    ["gpu", "phase"],
)

ALL = (
    RECONCILES, RECONCILE_SECONDS, PLAN_SOLVE_SECONDS, PLANNED_TOKENS, PLANNED_COST, PLANNED_GPUS,
    OBSERVED_STALENESS, EXTRA_ROLLOUT, PREEMPTIONS, CHILDREN_CREATED, CHILDREN_DELETED, ERRORS, REPLANS,
    SCALING, JOBS, API_REQUESTS, EVENTS_DEBOUNCED, CLUSTER_GPUS, CLUSTER_GPUS_GOING_AWAY,
    CALIBRATION_FACTOR, CALIBRATION_CONFIDENCE, CALIBRATION_OBSERVED_SECONDS,
)
"""Every metric above, for the docs generator and dashboard checks."""

_cluster_lock = threading.Lock()
_cluster_labels: set[tuple[str, str, str]] = set()
"""Label sets of the cluster gauges set by the last `export_cluster`, so vanished pools can be removed."""


def capacity_type(spot: bool) -> str:
    return "spot" if spot else "on-demand"


def export_cluster(cluster: Cluster) -> None:
    """Set the cluster GPU gauges from a snapshot's nodes; drop label sets whose pool or GPU type vanished.

    `gpus[g, p, c] = Σ node.gpus` over the snapshot's nodes of GPU type g, pool p and capacity type c, and
    `going_away[g, p, c]` the same sum over nodes with `going_away`. Every label set present gets both
    series (going away is 0 when nothing leaves), so a dashboard sees a 0 rather than no data.
    """
    totals: dict[tuple[str, str, str], list[int]] = {}
    for node in cluster.nodes:
        acc = totals.setdefault((node.gpu, node.pool, capacity_type(node.spot)), [0, 0])
        acc[0] += node.gpus
        if node.going_away:
            acc[1] += node.gpus
    with _cluster_lock:
        for labels in _cluster_labels - set(totals):
            for gauge in (CLUSTER_GPUS, CLUSTER_GPUS_GOING_AWAY):
                with contextlib.suppress(KeyError):  # already gone (e.g. a test cleared the gauge)
                    gauge.remove(*labels)
        for labels, (gpus, going) in totals.items():
            CLUSTER_GPUS.labels(*labels).set(gpus)
            CLUSTER_GPUS_GOING_AWAY.labels(*labels).set(going)
        _cluster_labels.clear()
        _cluster_labels.update(totals)


_calibration_lock = threading.Lock()
_calibration_labels: set[tuple[str, str]] = set()
"""(GPU, phase) cells exported by the last `export_calibration`, so a cell that left the fit can be removed."""


def export_calibration(cells: Iterable[tuple[str, str, float, bool, float, float]]) -> None:
    """Set the calibration gauges from (gpu, phase, factor, pinned, confidence, observed seconds) per cell;
    drop the series of cells no longer present. One `source` label per cell, so a pin replaces the fit's
    series instead of adding a second one."""
    cells = list(cells)
    with _calibration_lock:
        now = {(gpu, phase) for gpu, phase, *_ in cells}
        for gpu, phase in _calibration_labels - now:
            _remove_cell(gpu, phase)
        for gpu, phase, factor, pinned, confidence, seconds in cells:
            stale_source = "fitted" if pinned else "pinned"
            with contextlib.suppress(KeyError):
                CALIBRATION_FACTOR.remove(gpu, phase, stale_source)
            CALIBRATION_FACTOR.labels(gpu, phase, "pinned" if pinned else "fitted").set(factor)
            CALIBRATION_CONFIDENCE.labels(gpu, phase).set(confidence)
            CALIBRATION_OBSERVED_SECONDS.labels(gpu, phase).set(seconds)
        _calibration_labels.clear()
        _calibration_labels.update(now)


def _remove_cell(gpu: str, phase: str) -> None:
    for source in ("pinned", "fitted"):
        with contextlib.suppress(KeyError):
            CALIBRATION_FACTOR.remove(gpu, phase, source)
    for gauge in (CALIBRATION_CONFIDENCE, CALIBRATION_OBSERVED_SECONDS):
        with contextlib.suppress(KeyError):
            gauge.remove(gpu, phase)
