"""kopf wiring: indexes over Nodes and Pods, RLJob handlers, node/pod event triggers, the progress timer.

All handlers are registered on a private `kopf.OperatorRegistry` built by `build_registry(op)`, so the
operator can be constructed several times in one process (tests) and nothing registers at import time.

What each trigger does (every one only *requests* a reconcile pass; `workqueue.WorkQueue` debounces):

| trigger                                          | affected jobs                           | delay          |
|--------------------------------------------------|-----------------------------------------|----------------|
| RLJob new to this process, or its generation     | that job                                | 0              |
| (spec) changed                                   |                                         |                |
| Node added, or its GPUs/labels/going-away changed | jobs whose plan or pods use the node;   | debounce (1 s, |
|                                                  | all jobs when capacity appeared         | cap 3 s)       |
| Node deleted                                     | jobs whose plan or pods use the node    | debounce       |
| A job's pod changed phase/readiness/disruption   | that job                                | 0.2 s          |
| Progress timer (coordinator /v1/progress)        | that job, when scaling or status changes| 0              |
|   … and online calibration moved a factor it uses | that job (re-plan check, Calibrated)    | 0              |
| A pass saw a pod running but not ready           | that job, when the grace period ends    | the rest of it |
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import kopf

from hexrl.api import workerconfig as wc
from hexrl.api.models import GROUP, PLURAL, VERSION
from hexrl.k8s import metrics, render, scaling
from hexrl.k8s.kubeapi import ApiError, KubeApi
from hexrl.k8s.planning import PlanFn, ReplanFn
from hexrl.k8s.reconcile import Reconciler
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import node_view, pod_view
from hexrl.k8s.store import JobKey, Store
from hexrl.k8s.workqueue import WorkQueue

log = logging.getLogger(__name__)

_POD_FIELDS = ("node", "phase", "ready", "disrupted", "deleting", "terminal", "problem")


@dataclass
class Operator:
    """Everything one operator process holds."""

    settings: OperatorSettings
    api: KubeApi
    store: Store = field(default_factory=Store)
    reconciler: Reconciler | None = None
    queue: WorkQueue | None = None
    jobs: dict[JobKey, str] = field(default_factory=dict)
    """(namespace, name) → uid of every RLJob seen."""
    phases: dict[JobKey, str] = field(default_factory=dict)
    generations: dict[JobKey, tuple[str, Any]] = field(default_factory=dict)
    """(namespace, name) → (uid, metadata.generation) of the spec this process last asked a pass for."""
    planner: PlanFn | None = None
    """A planner to use instead of `hexrl.sched.plan` (tests, the benchmark's fresh-solve reference)."""
    replanner: ReplanFn | None = None
    """A re-planner to use instead of `hexrl.sched.replan` (with `planner`)."""
    ready: bool = False
    loop: asyncio.AbstractEventLoop | None = None
    """kopf's event loop (set at start-up): passes on worker threads hand requests back through it."""
    _cluster_metrics_due: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.reconciler is None:
            self.reconciler = Reconciler(self.api, self.store, self.settings, self.planner, self.replanner)
        if self.queue is None:
            self.queue = WorkQueue(self._work, workers=self.settings.watching.worker_limit)

    def _work(self, key: JobKey) -> None:
        """One pass (on a worker thread); a pass that wants another look later asks for it."""
        assert self.reconciler is not None
        result = self.reconciler.reconcile(*key)
        if result is not None and result.recheck_seconds is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.request, key, result.recheck_seconds)

    def request(self, key: JobKey, delay: float = 0.0, cap: float | None = None) -> None:
        assert self.queue is not None
        self.queue.request(key, delay, cap)

    def request_node(self, node: str, gained: bool) -> None:
        """A node changed: re-plan the jobs that use it (and every job when capacity appeared)."""
        assert self.reconciler is not None
        affected = set(self.store.jobs_on_node(node))
        for key, nodes in self.reconciler.plan_nodes_of_jobs().items():
            if node in nodes:
                affected.add(key)
        if gained:
            affected |= set(self.jobs)
        for key in affected:
            if key in self.jobs:
                self.request(key, self.settings.watching.debounce_seconds, self.settings.watching.debounce_max_seconds)


    def refresh_cluster_metrics(self) -> None:
        """Export the cluster GPU gauges from the snapshot of every node (no job's view: pods do not matter)."""
        self._cluster_metrics_due = False
        assert self.reconciler is not None
        metrics.export_cluster(self.reconciler.cluster_base(*self.store.nodes_versioned()).cluster)

    def schedule_cluster_metrics(self) -> None:
        """Refresh the cluster gauges once, shortly after a burst of node events.

        At startup kopf indexes every Node one by one; rebuilding the snapshot per event would cost
        O(nodes²), so events within `CLUSTER_METRICS_DELAY` share one rebuild.
        """
        if self._cluster_metrics_due:
            return
        self._cluster_metrics_due = True
        asyncio.get_running_loop().call_later(CLUSTER_METRICS_DELAY, self.refresh_cluster_metrics)


CLUSTER_METRICS_DELAY = 0.5
"""Seconds node events are gathered before the cluster GPU gauges are recomputed."""


class JobsOnlyDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base, built for RLJobs only.

    kopf builds a "diff base" — a deep copy of the whole object, then trimmed — on every event of every
    resource that has a non-index handler, to detect changes for update handlers. Our Node and Pod
    handlers only watch (indexes, deletions) and never read a diff, yet copying every Node and Pod event
    (Node objects are large) costs a fifth of the operator's CPU while 20 jobs arrive. For them the
    essence is empty; RLJobs keep kopf's (its timers reset idling on essential changes)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        if body.get("kind") in ("Node", "Pod"):
            return kopf.BodyEssence()
        return super().build(body=body, extra_fields=extra_fields)


def build_registry(op: Operator) -> kopf.OperatorRegistry:
    """Register every handler of the operator on a fresh registry (one function per handler family)."""
    registry = kopf.OperatorRegistry()
    _register_lifecycle(registry, op)
    _register_indexes(registry, op)
    _register_deletions(registry, op)
    _register_jobs(registry, op)
    return registry


def _register_lifecycle(registry: kopf.OperatorRegistry, op: Operator) -> None:
    """Start-up (kopf settings, the PriorityClasses check, the work queue), clean-up and login."""
    s = op.settings

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="hexrl.dev")
        settings.persistence.diffbase_storage = JobsOnlyDiffBase(prefix="hexrl.dev", key="last-handled-configuration")
        settings.persistence.finalizer = "hexrl.dev/operator"
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = 30
        settings.execution.max_workers = max(4, s.watching.worker_limit)
        await asyncio.get_running_loop().run_in_executor(None, _check_priority_classes, op)
        assert op.queue is not None and op.reconciler is not None
        # what calibration learned before a restart, before the first pass plans with it
        await asyncio.get_running_loop().run_in_executor(None, op.reconciler.calibrator.load)
        loop = op.loop = asyncio.get_running_loop()
        # background work of the reconciler (baselines) asks for a pass from its own thread
        def wants_pass(namespace: str, name: str) -> None:
            loop.call_soon_threadsafe(op.request, (namespace, name), 0.0)

        op.reconciler.on_change = wants_pass
        op.queue.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        assert op.queue is not None and op.reconciler is not None
        op.reconciler.on_change = None
        await op.queue.stop()
        # what calibration learned since its last write, so a restarted operator starts from it
        await asyncio.get_running_loop().run_in_executor(None, op.reconciler.calibrator.flush, True)
        op.reconciler.close()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> Any:
        return kopf.login_with_kubeconfig(**kwargs) or kopf.login_with_service_account(**kwargs)


def _register_indexes(registry: kopf.OperatorRegistry, op: Operator) -> None:
    """Node and Pod indexes: keep the store current and request passes for the jobs a change affects."""
    s = op.settings

    @kopf.index("", "v1", "nodes", registry=registry)
    async def node_index(body: kopf.Body, name: str, **_: Any) -> None:
        view = node_view(body, s)
        old = op.store.put_node(view)
        if old == view:
            metrics.EVENTS_DEBOUNCED.labels("ignored").inc()
            return None
        metrics.EVENTS_DEBOUNCED.labels("relevant").inc()
        op.schedule_cluster_metrics()
        if op.ready:
            gained = old is None or (not view["goingAway"] and (bool(old["goingAway"]) or view["gpus"] > old["gpus"]))
            op.request_node(name, gained or (old is not None and old["labels"] != view["labels"]))
        return None

    @kopf.index("", "v1", "pods", registry=registry)
    async def pod_index(body: kopf.Body, **_: Any) -> None:
        view = pod_view(body)
        if not view["gpus"] and not view["job"]:
            return None
        old = op.store.put_pod(view)
        if view["job"] and op.ready and (old is None or any(old.get(k) != view[k] for k in _POD_FIELDS)):
            key = (view["namespace"], view["job"])
            if key in op.jobs:
                op.request(key, s.watching.pod_debounce_seconds, s.watching.pod_debounce_seconds * 5)
        return None


def _register_deletions(registry: kopf.OperatorRegistry, op: Operator) -> None:
    """Node and Pod deletions: drop them from the store and request passes for the affected jobs."""
    s = op.settings

    @kopf.on.event("", "v1", "nodes", registry=registry, when=lambda type, **_: type == "DELETED")
    async def node_deleted(name: str, **_: Any) -> None:
        if op.store.drop_node(name) is not None:
            metrics.EVENTS_DEBOUNCED.labels("relevant").inc()
            op.schedule_cluster_metrics()
            op.request_node(name, gained=False)

    @kopf.on.event("", "v1", "pods", registry=registry, when=lambda type, **_: type == "DELETED")
    async def pod_deleted(body: kopf.Body, **_: Any) -> None:
        view = pod_view(body)
        old = op.store.drop_pod(view["uid"])
        if old is not None and old["job"] and (old["namespace"], old["job"]) in op.jobs:
            op.request((old["namespace"], old["job"]), s.watching.pod_debounce_seconds, s.watching.pod_debounce_seconds * 5)


def _register_jobs(registry: kopf.OperatorRegistry, op: Operator) -> None:
    """RLJob handlers: spec changes request a pass, every event updates the phase gauges, a timer polls
    progress."""
    s = op.settings
    rljobs = (GROUP, VERSION, PLURAL)

    @kopf.on.event(*rljobs, registry=registry)
    async def job_event(type: str, namespace: str | None, name: str, uid: str, body: kopf.Body,
                        meta: kopf.Meta, **_: Any) -> None:
        """Every RLJob event: remember the job and its phase; request a pass when the job is new to this
        process (created, or listed at start-up) or its spec changed (a new metadata.generation).

        Spec changes are detected by generation rather than kopf's create/update/resume handlers: those
        make kopf keep a diff base and progress in annotations, so each job creation cost it three more
        PATCHes (each echoed back as an event) and a deep copy of the whole object on every event,
        including the status writes of every pass — ~14 % of the operator's CPU while 20 jobs arrive."""
        op.ready = True
        assert namespace is not None  # the RLJob CRD is namespaced (kopf types it for cluster resources too)
        key = (namespace, name)
        if type == "DELETED":
            _job_deleted(op, key, uid)
        else:
            op.jobs[key] = uid
            op.phases[key] = (body.get("status") or {}).get("phase", "Pending")
            seen = (uid, meta.get("generation"))
            if op.generations.get(key) != seen:
                op.generations[key] = seen
                op.request(key, 0.0)
        _export_phase_counts(op)

    @kopf.timer(*rljobs, interval=s.scaling.poll_seconds, initial_delay=s.scaling.poll_seconds,
                registry=registry)
    async def poll_progress(namespace: str | None, name: str, uid: str, **_: Any) -> None:
        assert namespace is not None  # the RLJob CRD is namespaced
        await _poll(op, namespace, name, uid)


def _job_deleted(op: Operator, key: JobKey, uid: str) -> None:
    """Forget a deleted job: its memory in the reconciler and its per-job gauges."""
    op.jobs.pop(key, None)
    op.phases.pop(key, None)
    op.generations.pop(key, None)
    assert op.reconciler is not None
    op.reconciler.forget(uid)
    for g in (metrics.PLANNED_TOKENS, metrics.PLANNED_COST, metrics.PLANNED_GPUS,
              metrics.OBSERVED_STALENESS, metrics.EXTRA_ROLLOUT):
        with contextlib.suppress(KeyError):
            g.remove(*key)


def _export_phase_counts(op: Operator) -> None:
    """hexrl_operator_jobs{phase}: how many known jobs are in each phase (zero for the absent ones)."""
    counts: dict[str, int] = {}
    for phase in op.phases.values():
        counts[phase] = counts.get(phase, 0) + 1
    for phase in ("Pending", "Planning", "Running", "Degraded", "Succeeded", "Failed"):
        metrics.JOBS.labels(phase).set(counts.get(phase, 0))


async def _poll(op: Operator, namespace: str, name: str, uid: str) -> None:
    """Read the coordinator's progress; fold it into the job's status and the live rollout scaling."""
    assert op.reconciler is not None
    s = op.settings
    mem = op.reconciler.memory(uid)
    token = mem.tokens.get("operator")
    if mem.plan is None or not token:
        return
    url = progress_url(op, namespace, name)
    if url is None:
        return
    progress = await _fetch_progress(url, token, namespace, name)
    if progress is None:
        return
    changed = progress != mem.progress
    op.reconciler.set_progress(uid, progress)
    if s.calibration.enabled:
        learned = await asyncio.get_running_loop().run_in_executor(None, op.reconciler.calibrate, uid, progress)
        changed = changed or learned
    if s.scaling.enabled:
        scaled = await _scale_from_progress(op, namespace, name, uid, progress)
        if scaled is None:
            return
        changed = changed or scaled
    if changed:
        op.request((namespace, name), 0.0)


def progress_url(op: Operator, namespace: str, name: str) -> str | None:
    """The coordinator's /v1/progress URL from `progress_url_template`; None while the template needs the
    coordinator pod's IP and no live coordinator pod has one yet."""
    template = op.settings.endpoints.progress_url_template
    ip = ""
    if "{pod_ip}" in template:
        live = [p for p in op.store.job_pods(namespace, name)
                if p["role"] == "coordinator" and p.get("ip") and not p["deleting"] and not p["terminal"]]
        if not live:
            return None
        ip = live[0]["ip"]
    return template.format(name=name, namespace=namespace, port=wc.COORDINATOR_PORT, pod_ip=ip)


async def _fetch_progress(url: str, token: str, namespace: str, name: str) -> dict[str, Any] | None:
    """GET the coordinator's /v1/progress with the job's operator-role token; None when it has no answer (yet)."""
    try:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
            url, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            if resp.status != 200:
                log.info("job %s/%s: progress endpoint answered %s", namespace, name, resp.status)
                return None
            progress = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.debug("job %s/%s: no progress yet (%s)", namespace, name, exc)
        return None
    return progress if isinstance(progress, dict) else None


async def _scale_from_progress(op: Operator, namespace: str, name: str, uid: str, progress: dict[str, Any]) -> bool | None:
    """Feed the progress to the scaling rule and apply its decision: True if the plan changed, None when
    the job has no valid spec (the status is then left alone too)."""
    assert op.reconciler is not None
    mem = op.reconciler.memory(uid)
    if mem.spec is None:
        return None
    direction, state = scaling.observe(progress, mem.spec.staleness.max_policy_lag, mem.scale_state(),
                                       op.settings.scaling, time.time())
    mem.scale = state
    if not direction:
        return False
    loop = asyncio.get_running_loop()
    return bool(await loop.run_in_executor(None, op.reconciler.scale, namespace, name, direction, state))


def _check_priority_classes(op: Operator) -> None:
    """Warn about missing PriorityClasses (the API server refuses pods naming one). They are installed with the
    CRD (the chart, or `hexrl operator --prepare` with an admin kubeconfig), never by the operator: creating them
    would let it mint a preempting class; a check that cannot read them (403) stays silent."""
    for pc in render.render_priority_classes(op.settings):
        name = pc["metadata"]["name"]
        try:
            have = op.api.get("scheduling.k8s.io/v1", "PriorityClass", name)
        except ApiError as exc:
            log.debug("cannot check PriorityClass %s (%s %s)", name, exc.status, exc.reason)
            continue
        if have is None:
            log.warning("PriorityClass %s does not exist, so the API server will refuse this operator's pods; "
                        "install the chart, or as a cluster admin run `hexrl crds print --priority-classes | "
                        "kubectl apply -f -`", name)
        elif have.get("value") != pc["value"]:
            log.warning("PriorityClass %s exists with value %s (want %s); leaving it", name, have.get("value"),
                        pc["value"])
