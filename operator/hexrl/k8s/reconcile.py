"""The reconcile pass of one RLJob: validate → plan → apply → announce → report (one status write).

`Reconciler` composes the parts of a pass, each with its own state and a narrow interface:

- `planning.Planning` — snapshot → planner → a plan committed to the reservation ledger; owns the ledger,
  the locks, the MILP solution cache, the cluster base and the background baselines;
- `applier.Applier` — render → server-side apply, pod creates and deletes, gang restart;
- `statuswriter.StatusWriter` — health, conditions, Events, the one status write, per-job gauges;

sharing `podview.PodView` (the job's pods as this process knows them) and `announcer.Announcer` (Events,
plan summaries). `jobmemory` holds what they hand each other and what the reconciler remembers per job.

Runs in a worker thread (the kopf event loop stays free), one pass per job at a time (a lock per job).

A pass is idempotent and level-triggered: it reads the job, the node/pod store and what it stored in the
job's ConfigMap last time, decides the desired children, and changes only what differs. Killing the
operator at any point and starting it again converges to the same children:

- the plan it acted on is stored in the ConfigMap (`plan.json`) before any pod is created, and read back
  on the first pass after a restart, so re-planning starts from what is deployed;
- pod names are deterministic (`<job>-trainer-<epoch tag>-<rank>`, `<job>-rollout-<slot>-<incarnation>`),
  so a create repeated after a crash answers AlreadyExists instead of making a duplicate;
- everything is owned by the RLJob, so nothing outlives it.

Decisions a user would want to see become Events (Planned, Replanned, ScaledRollout, Rejected,
TrainerLost). Errors the user can fix (invalid spec, infeasible plan) are reported in status and not
retried until something changes; API errors are raised to the caller, which retries with backoff.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from hexrl.api import reasons
from hexrl.api.models import API_VERSION, KIND, RLJobSpec
from hexrl.k8s import metrics, plancodec, render, scaling
from hexrl.k8s.announcer import Announcer
from hexrl.k8s.applier import Applier
from hexrl.k8s.calibrator import Calibrator
from hexrl.k8s.jobmemory import (
    JobMemories,
    JobMemory,
    PassResult,
    Planned,
    StoredState,
    Trigger,
    owned_by,
    thread_requests,
)
from hexrl.k8s.kubeapi import ApiError, KubeApi
from hexrl.k8s.operatorkey import OperatorKey
from hexrl.k8s.planning import PlanFn, Planning, ReplanFn
from hexrl.k8s.podview import PodView
from hexrl.k8s.prioritypool import PriorityPool
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import Snapshot
from hexrl.k8s.statuswriter import StatusWriter
from hexrl.k8s.store import JobKey, Store
from hexrl.sched.calibration import CalibrationProfile
from hexrl.sched.onlinecalibration import material_changes

__all__ = ["Reconciler"]

log = logging.getLogger(__name__)


class Reconciler:
    """Runs reconcile passes over its parts (see the module docstring); thread-safe."""

    def __init__(
        self, api: KubeApi, store: Store, settings: OperatorSettings,
        planner: PlanFn | None = None, replanner: ReplanFn | None = None,
    ) -> None:
        self.api = api
        self.store = store
        self.settings = settings
        self.memories = JobMemories()
        self.key = OperatorKey(api, settings)
        self._pool = PriorityPool(16, name="hexrl-api")
        announce = Announcer(api, settings.identity.field_manager)
        pods = PodView(store)
        self.calibrator = Calibrator(api, settings)
        self.planning = Planning(store, settings, self.memories, planner, replanner, self.calibrator)
        self.applier = Applier(api, store, settings, pods, announce, self._pool)
        self.status = StatusWriter(api, store, settings, pods, announce)
        self.status.calibrator = self.calibrator
        self.announce = announce

    def close(self) -> None:
        """Stop the helper threads (tests construct many reconcilers in one process)."""
        self.planning.close()
        self._pool.shutdown()

    # ------------------------------------------------------------------------------------ per job

    def memory(self, uid: str) -> JobMemory:
        """The job's memory (created empty on first use)."""
        return self.memories.get(uid)

    def forget(self, uid: str) -> None:
        """Drop a deleted job's memory."""
        self.memories.forget(uid)
        self.calibrator.forget(uid)

    def plan_nodes_of_jobs(self) -> dict[JobKey, set[str]]:
        """(namespace, job) → nodes its current plan uses (to find the jobs a node event affects)."""
        return self.memories.plan_nodes_by_job()

    def set_progress(self, uid: str, progress: dict[str, Any] | None) -> None:
        """The coordinator's latest progress report (folded into the status by the next pass)."""
        self.memory(uid).progress = progress

    def operator_key(self) -> bytes:
        """The operator's key (see `operatorkey`); raises ApiError when it can be neither read nor created."""
        return self.key.key()

    def job_tokens(self, uid: str) -> dict[str, str]:
        """The bearer token of each role calling one job's services (`operatorkey.OperatorKey.job_tokens`)."""
        return self.key.job_tokens(uid)

    @property
    def on_change(self) -> Callable[[str, str], None] | None:
        """Called with (namespace, name) when background work (baselines) wants another pass."""
        return self.planning.on_change

    @on_change.setter
    def on_change(self, callback: Callable[[str, str], None] | None) -> None:
        self.planning.on_change = callback

    @property
    def conflicts(self) -> int:
        """Optimistic plans that lost a race and were re-planned (tests, bench)."""
        return self.planning.conflicts

    def cluster_base(self, version: int, nodes: list[dict[str, Any]]) -> Snapshot:
        """The job-independent snapshot of the store's nodes (cached by the planning part)."""
        return self.planning.cluster_base(version, nodes)

    # ------------------------------------------------------------------------------------ the pass

    def reconcile(self, namespace: str, name: str) -> PassResult | None:
        """One pass; returns None when the job is gone or being deleted."""
        t0 = time.perf_counter()
        req0 = thread_requests(self.api)
        rljob = self.api.get(API_VERSION, KIND, name, namespace)
        if rljob is None or rljob["metadata"].get("deletionTimestamp"):
            if rljob is not None:
                self.forget(rljob["metadata"]["uid"])
            return None
        mem = self.memory(rljob["metadata"]["uid"])
        with mem.lock:
            try:
                result = self._pass(rljob, mem)
                metrics.RECONCILES.labels(result.outcome).inc()
            except ApiError as exc:
                metrics.RECONCILES.labels("error").inc()
                metrics.ERRORS.labels(exc.reason or str(exc.status)).inc()
                raise
            finally:
                metrics.RECONCILE_SECONDS.observe(time.perf_counter() - t0)
                metrics.API_REQUESTS.inc(thread_requests(self.api) - req0)
        result.requests = thread_requests(self.api) - req0
        self._log_pass(namespace, name, time.perf_counter() - t0, result)
        return result

    def _log_pass(self, namespace: str, name: str, seconds: float, result: PassResult) -> None:
        cache = self.planning.cache_stats()
        log.info("pass %s/%s: %.2fs (planner %.2fs%s), %d requests, %d created, %d deleted%s", namespace, name,
                 seconds, result.plan_seconds,
                 f"; MILP cache {cache.hits} hits, {cache.misses} misses so far" if cache else "",
                 result.requests, result.created, result.deleted, ", status written" if result.status_written else "")

    def _pass(self, rljob: dict[str, Any], mem: JobMemory) -> PassResult:
        """Validate, plan, apply, announce, report."""
        ref = _job_ref(rljob)
        mem.key = (ref.namespace, ref.name)
        out = PassResult()
        spec = self._valid_spec(rljob, mem, out)
        if spec is None:
            return out
        if not mem.loaded:
            self._load(ref, mem)
        planned = self._plan(rljob, ref, spec, mem, out)
        if planned is None:
            return out
        applied = self.applier.apply(rljob, ref, spec, planned, mem, out)
        self.status.announce_plan(rljob, planned)
        mem.plan = planned.plan
        self.status.report(rljob, ref, spec, planned, applied, mem, out)
        return out

    def _valid_spec(self, rljob: dict[str, Any], mem: JobMemory, out: PassResult) -> RLJobSpec | None:
        """The job's spec (kept in its memory), or None after reporting why it is invalid (no children are
        touched then)."""
        try:
            mem.spec = RLJobSpec.model_validate(rljob.get("spec") or {})
            return mem.spec
        except ValidationError as exc:
            mem.spec = None
            msg = "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
            self.status.reject(rljob, mem, reasons.INVALID_SPEC, f"the spec is invalid: {msg}; fix it and re-apply")
            out.invalid = True
            return None

    def _plan(self, rljob: dict[str, Any], ref: render.JobRef, spec: RLJobSpec, mem: JobMemory,
              out: PassResult) -> Planned | None:
        """The planning part, timed; None after reporting an infeasible plan (the job has none to deploy)."""
        t_plan = time.perf_counter()
        previous = mem.plan
        commit = self.planning.plan_and_commit(ref, spec, mem)
        out.plan_seconds = time.perf_counter() - t_plan
        for w in commit.snap.warnings:
            self.announce.event_once(rljob, mem, "Warning", "UnknownGPU", w)
        d = commit.decision
        if d.plan is None:
            assert d.infeasible is not None
            self.status.reject(rljob, mem, d.infeasible.reason, d.infeasible.message)
            return None
        plan = self.planning.with_baselines(ref, spec, d.plan, commit.snap, mem)
        out.planned = True
        out.replanned = d.trigger in (Trigger.SPEC, Trigger.CLUSTER, Trigger.CALIBRATION)
        return Planned(snap=commit.snap, plan=plan, previous=previous, trigger=d.trigger, lost=d.lost)

    def _load(self, ref: render.JobRef, mem: JobMemory) -> None:
        """First pass after a (re)start: read back the stored plan and state; derive the tokens."""
        cm = self.api.get("v1", "ConfigMap", render.names(ref)["config"], ref.namespace)
        mem.fresh = cm is None  # a new job: none of its children exist, so there is nothing to read back
        if cm and owned_by(cm, ref.uid):
            data = cm.get("data") or {}
            try:
                mem.plan = plancodec.loads(data[render.PLAN_KEY]) if render.PLAN_KEY in data else None
            except ValueError as exc:
                log.warning("job %s/%s: ignoring stored plan: %s", ref.namespace, ref.name, exc)
            with contextlib.suppress(ValueError):
                mem.stored = StoredState.from_wire(json.loads(data.get(render.STATE_KEY) or "{}"))
        mem.tokens = self.job_tokens(ref.uid)
        mem.loaded = True

    # ------------------------------------------------------------------------------------ calibration

    def calibrate(self, uid: str, progress: dict[str, Any]) -> bool:
        """Feed a job's progress to online calibration and write the GPUCalibration when due; True when a factor
        the job's plan depends on moved materially since the plan was last checked (the caller asks for a
        pass, which decides about a re-plan and posts the Calibrated Event)."""
        mem = self.memory(uid)
        if mem.plan is None or mem.spec is None or mem.key is None or not self.settings.calibration.enabled:
            return False
        namespace, name = mem.key
        cluster = self.planning.snapshot(namespace, name, mem).cluster
        self.calibrator.observe(uid, f"{namespace}/{name}", mem.spec, cluster, mem.plan, progress)
        self.calibrator.flush()
        profile = self.calibrator.profile()
        with mem.lock:
            if mem.plan is None:
                return False
            basis = mem.calibration_basis or mem.plan_profile or CalibrationProfile()
            used = {r.gpu for r in mem.plan.replicas} | {mem.plan.trainer.gpu}
            moved = [m for m in material_changes(basis, profile, self.settings.calibration.event_change) if m[0] in used]
            if not moved or mem.calibration_news:
                return False
            mem.calibration_news = tuple(moved)
            return True

    # ------------------------------------------------------------------------------------ scaling

    def scale(self, namespace: str, name: str, direction: str, state: scaling.ScaleState) -> bool:
        """Apply a live scaling decision to the committed plan; the caller triggers a pass. True if changed."""
        rljob = self.api.get(API_VERSION, KIND, name, namespace)
        if rljob is None:
            return False
        mem = self.memory(rljob["metadata"]["uid"])
        with mem.lock:
            if mem.plan is None or mem.spec is None:
                return False
            spec = mem.spec
            new_plan, state = self.planning.scale(_job_ref(rljob), mem, spec, direction, state)
            mem.scale = state
            mem.stored.scale = scaling.ScaleState.from_wire(state.wire())  # what a restart keeps
            if new_plan is None:
                return False
            metrics.SCALING.labels(direction).inc()
            metrics.EXTRA_ROLLOUT.labels(namespace, name).set(state.extra)
            self.announce.event(rljob, "Normal", reasons.SCALED_ROLLOUT, self._scaling_message(new_plan, spec, direction))
            return True

    def _scaling_message(self, new_plan: Any, spec: RLJobSpec, direction: str) -> str:
        """The ScaledRollout Event's sentence: which replica was added (and why) or that one was removed."""
        r = new_plan.replicas[-1] if direction == "grow" else None
        return (f"added a rollout replica on {r.nodes[0]} ({r.gpu}, {'spot' if r.spot else 'on-demand'}): "
                f"trainer idle fraction above {self.settings.scaling.starve_idle_fraction}"
                if r else f"removed an extra rollout replica: observed staleness near η={spec.staleness.max_policy_lag}")


def _job_ref(rljob: dict[str, Any]) -> render.JobRef:
    """The identity of an RLJob object that its children's names and owner references use."""
    meta = rljob["metadata"]
    return render.JobRef(meta["name"], meta["namespace"], meta["uid"], int(meta.get("generation") or 1))
