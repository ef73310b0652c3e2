"""The reconcile pass of one RLJob: snapshot → plan/replan → render → apply → one status write.

This module holds the job-level orchestration (`Reconciler`: per-job memory, the operator key and job
tokens, the pass that calls the steps in order, live scaling). The steps live in their own modules:
`planstep` (snapshot → planner → reservation ledger / solution cache / deferred baselines), `applystep`
(render → server-side apply, pod creates and deletes, gang restart), `statusstep` (health, conditions,
Events, one status write); `passstate` holds what they share (`JobMemory`, `PassResult`, keys).

Runs in a worker thread (the kopf event loop stays free), one pass per job at a time (a lock per job).

Planning (`OperatorSettings.planning`). `serial` (default): one job plans at a time, each against the
GPUs the plans before it reserved; MILPs that differ from an earlier one only by less free capacity
reuse its optimum without a solver call (exact, sched/solvecache.py — a sweep of jobs from one template
costs one solve per distinct spec), and the homogeneous baselines of a new plan are computed on a
background thread after its children exist (the result comes back through another pass; one status
write each). `concurrent`: the same, but jobs plan at once against a ledger of the GPUs every
committed plan holds and commit only if every GPU they chose is still free in a fresh snapshot (the
loser re-plans holding the ledger) — slower on 2 cores, where CPU-bound solves under the GIL only
stretch each other. `legacy`: serial passes with fresh solves and baselines computed inline, kept for the benchmark's
side-by-side comparison.

After a node event (a cluster-triggered re-plan) the trainer is never moved while all its nodes survive:
`replan(..., trainer_may_move=False)` re-places only rollout. Only a spec change (or a lost trainer node)
re-plans the trainer.
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

import base64
import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from hexrl.api import jobtokens, reasons
from hexrl.api.models import API_VERSION, KIND, RLJobSpec
from hexrl.k8s import metrics, plancodec, render, scaling
from hexrl.k8s.applystep import ApplyStep
from hexrl.k8s.kubeapi import ApiError, KubeApi
from hexrl.k8s.passstate import (
    EXPECT_TTL,
    JobMemory,
    PassResult,
    Planned,
    owned_by,
    plan_nodes,
    thread_requests,
)
from hexrl.k8s.planstep import BASELINE_QUIET, OPTIMISTIC_ATTEMPTS, PlanStep
from hexrl.k8s.prioritypool import PriorityPool
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.statusstep import StatusStep
from hexrl.k8s.store import Store
from hexrl.sched.types import Plan

__all__ = ["BASELINE_QUIET", "EXPECT_TTL", "OPTIMISTIC_ATTEMPTS", "JobMemory", "PassResult", "Reconciler"]

log = logging.getLogger(__name__)


class Reconciler(PlanStep, ApplyStep, StatusStep):
    """Owns the per-job memory and runs reconcile passes; thread-safe."""

    def __init__(
        self,
        api: KubeApi,
        store: Store,
        settings: OperatorSettings,
        planner: Callable[..., Any] | None = None,
        replanner: Callable[..., Any] | None = None,
    ) -> None:
        self.api = api
        self.store = store
        self.settings = settings
        self._planner = planner
        self._replanner = replanner
        self._mem: dict[str, JobMemory] = {}
        self._mem_lock = threading.Lock()
        self._plan_lock = threading.Lock()
        self._ledger = threading.RLock()
        self._pool = PriorityPool(16, name="hexrl-api")
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hexrl-baselines")
        self._planning = 0
        self._last_planned = 0.0
        self._solutions: Any = None
        self._base: tuple[int, Any] | None = None
        self.conflicts = 0
        """Optimistic plans that lost a race and were re-planned (tests, bench)."""
        self.on_change: Callable[[str, str], None] | None = None
        """Called with (namespace, name) when background work (baselines) wants another pass."""
        self._key: bytes | None = None
        self._key_lock = threading.Lock()

    # ------------------------------------------------------------------------------------ tokens

    def operator_key(self) -> bytes:
        """The operator's key (see `OperatorSettings.key_secret`), read once; created when missing.

        Raises ApiError when the Secret can be neither read nor created (the caller says what to fix)."""
        with self._key_lock:
            if self._key is None:
                self._key = self._read_or_create_key()
            return self._key

    def _read_or_create_key(self) -> bytes:
        ns, name = self.settings.operator_namespace(), self.settings.key_secret
        secret = self.api.get("v1", "Secret", name, ns)
        if secret is None:
            body = {
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": ns,
                             "labels": {"app.kubernetes.io/name": "hexrl", "app.kubernetes.io/component": "operator",
                                        "app.kubernetes.io/managed-by": "hexrl-operator"}},
                "data": {"key": base64.b64encode(secrets.token_bytes(32)).decode()},
            }
            try:
                self.api.create(body)
                log.info("created the operator key Secret %s/%s", ns, name)
            except ApiError as exc:
                if exc.reason != "AlreadyExists":  # another replica won the race: read theirs
                    raise
            secret = self.api.get("v1", "Secret", name, ns)
        raw = base64.b64decode(((secret or {}).get("data") or {}).get("key", ""))
        if len(raw) < 16:
            raise ApiError(422, "InvalidKey", f"Secret {ns}/{name} has no data.key of at least 16 bytes; delete it "
                                              "and the operator creates a new one")
        return raw

    def job_tokens(self, uid: str) -> dict[str, str]:
        """The bearer token of each role calling one job's services (`hexrl.api.jobtokens`): HMAC-SHA256(operator
        key, job UID + "/" + role). Deterministic, so a restarted operator (or another replica) derives them
        instead of reading them back."""
        return jobtokens.derive_tokens(self.operator_key(), uid)

    def close(self) -> None:
        """Stop the helper threads (tests construct many reconcilers in one process)."""
        self._background.shutdown(wait=False, cancel_futures=True)
        self._pool.shutdown()

    # ------------------------------------------------------------------------------------ memory

    def memory(self, uid: str) -> JobMemory:
        with self._mem_lock:
            if uid not in self._mem:
                self._mem[uid] = JobMemory(uid)
            return self._mem[uid]

    def forget(self, uid: str) -> None:
        with self._mem_lock:
            self._mem.pop(uid, None)

    def plan_nodes_of_jobs(self) -> dict[tuple[str, str], set[str]]:
        """(namespace, job) → nodes its current plan uses (to find the jobs a node event affects)."""
        with self._mem_lock:
            mems = list(self._mem.values())
        out = {}
        for m in mems:
            key = m.state.get("_job")
            if key and m.plan is not None:
                out[tuple(key)] = plan_nodes(m.plan)
        return out

    def set_progress(self, uid: str, progress: dict[str, Any] | None) -> None:
        self.memory(uid).progress = progress

    # ------------------------------------------------------------------------------------ the pass

    def reconcile(self, namespace: str, name: str) -> PassResult | None:
        """One pass; returns None when the job is gone or being deleted."""
        t0 = time.perf_counter()
        req0 = thread_requests(self.api)
        job = self.api.get(API_VERSION, KIND, name, namespace)
        if job is None or job["metadata"].get("deletionTimestamp"):
            if job is not None:
                self.forget(job["metadata"]["uid"])
            return None
        mem = self.memory(job["metadata"]["uid"])
        with mem.lock:
            try:
                result = self._pass(job, mem)
                metrics.RECONCILES.labels(result.outcome or ("ok" if result.planned else "infeasible")).inc()
            except ApiError as exc:
                metrics.RECONCILES.labels("error").inc()
                metrics.ERRORS.labels(exc.reason or str(exc.status)).inc()
                raise
            finally:
                metrics.RECONCILE_SECONDS.observe(time.perf_counter() - t0)
                metrics.API_REQUESTS.inc(thread_requests(self.api) - req0)
        result.requests = thread_requests(self.api) - req0
        cache = self._solutions.stats if self._solutions is not None else None
        log.info("pass %s/%s: %.2fs (planner %.2fs%s), %d requests, %d created, %d deleted%s", namespace, name,
                 time.perf_counter() - t0, result.plan_seconds,
                 f"; MILP cache {cache.hits} hits, {cache.misses} misses so far" if cache else "",
                 result.requests, result.created, result.deleted, ", status written" if result.status_written else "")
        return result

    def _pass(self, job: dict[str, Any], mem: JobMemory) -> PassResult:
        """Validate, plan, apply, announce, report — each step in its own module (see the module docstring)."""
        meta = job["metadata"]
        ref = render.JobRef(meta["name"], meta["namespace"], meta["uid"], int(meta.get("generation") or 1))
        mem.state["_job"] = [ref.namespace, ref.name]
        out = PassResult()
        spec = self._valid_spec(job, mem, out)
        if spec is None:
            return out
        if not mem.loaded:
            self._load(ref, mem)
        planned = self._planned(job, ref, spec, mem, out)
        if planned is None:
            return out
        trainer_lost, replaced, summary = self._apply_children(job, ref, spec, planned, mem, out)
        self._announce(job, planned)
        mem.plan = planned.plan
        self._report(job, ref, spec, planned, summary, mem, trainer_lost, replaced, out)
        return out

    def _valid_spec(self, job: dict[str, Any], mem: JobMemory, out: PassResult) -> RLJobSpec | None:
        """The job's spec, or None after reporting why it is invalid (no children are touched then)."""
        try:
            return RLJobSpec.model_validate(job.get("spec") or {})
        except ValidationError as exc:
            msg = "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
            self._write_rejection(job, mem, reasons.INVALID_SPEC, f"the spec is invalid: {msg}; fix it and re-apply")
            out.outcome = "invalid"
            return None

    def _planned(
        self, job: dict[str, Any], ref: render.JobRef, spec: RLJobSpec, mem: JobMemory, out: PassResult
    ) -> Planned | None:
        """The plan step, timed; None after reporting an infeasible plan (the job has none to deploy)."""
        t_plan = time.perf_counter()
        previous = mem.plan
        snap, plan, infeasible, trigger, lost = self._plan_and_commit(ref, spec, mem)
        out.plan_seconds = time.perf_counter() - t_plan
        for w in snap.warnings:
            self._event_once(job, mem, "Warning", "UnknownGPU", w)
        if plan is None:
            assert infeasible is not None
            self._write_rejection(job, mem, infeasible.reason, infeasible.message)
            return None
        plan = self._with_baselines(ref, spec, plan, snap, mem)
        out.planned = True
        out.replanned = trigger in ("spec", "cluster")
        return Planned(snap=snap, plan=plan, previous=previous, trigger=trigger, lost=lost)

    # ------------------------------------------------------------------------------------ load

    def _load(self, ref: render.JobRef, mem: JobMemory) -> None:
        """First pass after a (re)start: read back the stored plan and state; derive the token."""
        names = render.names(ref)
        cm = self.api.get("v1", "ConfigMap", names["config"], ref.namespace)
        mem.fresh = cm is None  # a new job: none of its children exist, so there is nothing to read back
        if cm and owned_by(cm, ref.uid):
            data = cm.get("data") or {}
            try:
                mem.plan = plancodec.loads(data[render.PLAN_KEY]) if render.PLAN_KEY in data else None
            except ValueError as exc:
                log.warning("job %s/%s: ignoring stored plan: %s", ref.namespace, ref.name, exc)
            with contextlib.suppress(ValueError):
                mem.state.update(json.loads(data.get(render.STATE_KEY) or "{}"))
        mem.tokens = self.job_tokens(ref.uid)
        mem.loaded = True

    # ------------------------------------------------------------------------------------ scaling

    def scale(self, namespace: str, name: str, direction: str, state: scaling.ScaleState) -> bool:
        """Apply a live scaling decision to the stored plan; the caller triggers a pass. True if changed."""
        job = self.api.get(API_VERSION, KIND, name, namespace)
        if job is None:
            return False
        mem = self.memory(job["metadata"]["uid"])
        with mem.lock:
            if mem.plan is None:
                return False
            spec = RLJobSpec.model_validate(job["spec"])
            with self._ledger:  # a greedy step, no solver: commit it against the ledger directly
                new_plan, state = self._scaled_plan(namespace, name, mem, spec, direction, state)
            mem.scale = state
            mem.state["scale"] = state.wire()
            if new_plan is None:
                return False
            metrics.SCALING.labels(direction).inc()
            metrics.EXTRA_ROLLOUT.labels(namespace, name).set(state.extra)
            self._event(job, "Normal", reasons.SCALED_ROLLOUT, self._scaling_message(new_plan, spec, direction))
            return True

    def _scaled_plan(
        self, namespace: str, name: str, mem: JobMemory, spec: RLJobSpec, direction: str, state: scaling.ScaleState
    ) -> tuple[Plan | None, scaling.ScaleState]:
        """(the plan with one rollout replica more or less, or None; the scaling state after it), committed
        to mem.plan (call holding the ledger)."""
        assert mem.plan is not None
        new_plan: Plan | None = None
        snap = self._snapshot(namespace, name, mem)
        if direction == "grow":
            new_plan = scaling.grow(mem.plan, snap.cluster, spec.budget.max_cost_per_hour,
                                    spec.placement.spot.rollout != "forbidden")
            if new_plan is not None:
                state = replace(state, extra=state.extra + 1)
        elif direction == "shrink" and state.extra > 0:
            new_plan = scaling.shrink(mem.plan, snap.cluster)
            state = replace(state, extra=state.extra - 1)
        if new_plan is not None:
            mem.plan = new_plan
        return new_plan, state

    def _scaling_message(self, new_plan: Plan, spec: RLJobSpec, direction: str) -> str:
        """The ScaledRollout Event's sentence: which replica was added (and why) or that one was removed."""
        r = new_plan.replicas[-1] if direction == "grow" else None
        return (f"added a rollout replica on {r.nodes[0]} ({r.gpu}, {'spot' if r.spot else 'on-demand'}): "
                f"trainer idle fraction above {self.settings.scaling.starve_idle_fraction}"
                if r else f"removed an extra rollout replica: observed staleness near η={spec.staleness.max_policy_lag}")
