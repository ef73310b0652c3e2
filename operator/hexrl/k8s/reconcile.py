"""The reconcile pass of one RLJob: snapshot → plan/replan → render → apply → one status write.

Runs in a worker thread (the kopf event loop stays free), one pass per job at a time (a lock per job).

Planning (`OperatorSettings.planning`). `serial` (default): one job plans at a time, each against the
GPUs the plans before it reserved; MILPs that differ from an earlier one only by less free capacity
reuse its optimum without a solver call (exact, sched/solvecache.py — a sweep of jobs from one template
costs one solve per distinct spec), and the homogeneous baselines of a new plan are computed on a
background thread after its children exist (the result comes back through another pass; one status
write each). `concurrent`: the same, but jobs plan at once against a ledger of the GPUs every
committed plan holds and commit only if every GPU they chose is still free in a fresh snapshot (the
loser re-plans holding the ledger) — slower on 2 cores, where CPU-bound solves under the GIL only
stretch each other. `legacy`: session 1's path (serial, fresh solves, baselines inline), kept for the
benchmark's side-by-side comparison.

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
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from hexrl.api import reasons
from hexrl.api.models import API_VERSION, KIND, RLJobSpec
from hexrl.k8s import metrics, plancodec, render, scaling
from hexrl.k8s import status as st
from hexrl.k8s.kubeapi import ApiError, KubeApi
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import Snapshot, build_cluster
from hexrl.k8s.store import Store
from hexrl.sched.types import Cluster, Infeasible, Plan

log = logging.getLogger(__name__)

EXPECT_TTL = 60.0
"""s during which a pod we created counts as existing even though the watch has not shown it yet."""

BASELINE_QUIET = 2.0
"""s without any job planning before the background thread computes baselines (placing jobs first)."""

OPTIMISTIC_ATTEMPTS = 1
"""Optimistic plans per pass before the pass re-plans holding the ledger (no other job can commit then).
One: the re-plan after a lost race is nearly always a cache hit (the same MILP with less capacity), so
holding the ledger for it is cheap, and a second optimistic round would race the same winners again."""


@dataclass
class JobMemory:
    """What the operator remembers about one job between passes (rebuilt from the ConfigMap on restart)."""

    uid: str
    loaded: bool = False
    plan: Plan | None = None
    state: dict[str, Any] = field(default_factory=dict)
    token: str = ""
    cluster_key: str = ""
    child_hashes: dict[tuple[str, str], str] = field(default_factory=dict)
    expected: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)
    deleted: dict[str, float] = field(default_factory=dict)
    events_sent: set[str] = field(default_factory=set)
    progress: dict[str, Any] | None = None
    scale: scaling.ScaleState | None = None
    fresh: bool = False
    """The job had no ConfigMap when first seen by this process: its children are all new."""
    rejection: tuple[tuple[str, str], Infeasible] | None = None
    """((spec key, cluster key), the planner's answer) of the last infeasible plan, to not ask again."""
    baselines: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None
    """(placement the baselines were computed for, the baselines), from the background thread."""
    baselines_pending: tuple[Any, ...] | None = None
    """Placement whose baselines are being computed (so a pass does not submit it twice)."""
    trainer_recovering: bool = False
    """A trainer gang was restarted and is not all ready yet (Degraded stays True until it is)."""
    rollout_recovering: int = 0
    """Rollout pods replaced and not all ready yet."""
    lock: threading.Lock = field(default_factory=threading.Lock)


def _key(obj: Any) -> str:
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def _spec_key(spec: RLJobSpec) -> str:
    """Hash of what the planner reads from the spec (η and images change the ConfigMap/pods, not the plan)."""
    wire = spec.wire()
    for k in ("images", "suspend", "reward", "dataset", "checkpoint"):
        wire.pop(k, None)
    return hashlib.sha256(json.dumps(wire, sort_keys=True).encode()).hexdigest()[:16]


def _plan_nodes(plan: Plan) -> set[str]:
    return set(plan.trainer.nodes) | {n for r in plan.replicas for n in r.nodes}


@dataclass
class PassResult:
    """What one pass did (for tests, metrics and the benchmark)."""

    created: int = 0
    deleted: int = 0
    planned: bool = False
    replanned: bool = False
    status_written: bool = False
    requests: int = 0
    plan_seconds: float = 0.0
    outcome: str = ""
    """ok | infeasible | invalid (the label of hexrl_operator_reconciles_total); empty = derive from planned."""


class Reconciler:
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
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="hexrl-api")
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hexrl-baselines")
        self._planning = 0
        self._last_planned = 0.0
        self._solutions: Any = None
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

    def job_token(self, uid: str) -> str:
        """The bearer token of one job's services: HMAC-SHA256(operator key, job UID), URL-safe base64.
        Deterministic, so a restarted operator (or another replica) derives it instead of reading it back."""
        digest = hmac.new(self.operator_key(), uid.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    @property
    def concurrent(self) -> bool:
        """Optimistic planning against the ledger (planning = concurrent)."""
        return self.settings.planning == "concurrent"

    @property
    def deferred(self) -> bool:
        """Solution cache and baselines after the children (every mode but legacy)."""
        return self.settings.planning != "legacy"

    def solutions(self) -> Any:
        """The operator's MILP solution cache (not in legacy planning), created once on first use (under
        the lock: passes start together, and each must share the one cache)."""
        if self._solutions is None and self.deferred:
            from hexrl.sched.solvecache import SolutionCache

            with self._mem_lock:
                if self._solutions is None:
                    self._solutions = SolutionCache()
        return self._solutions

    def _planner_settings(self) -> Any:
        from hexrl.sched import PlannerSettings

        # baselines come later, from the background thread (inline only in legacy planning)
        return PlannerSettings(compute_baselines=self.settings.homogeneous_baselines and not self.deferred)

    def close(self) -> None:
        """Stop the helper threads (tests construct many reconcilers in one process)."""
        self._background.shutdown(wait=False, cancel_futures=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

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
                out[tuple(key)] = _plan_nodes(m.plan)
        return out

    def set_progress(self, uid: str, progress: dict[str, Any] | None) -> None:
        self.memory(uid).progress = progress

    def _snapshot(self, namespace: str, name: str, mem: JobMemory) -> Snapshot:
        """The cluster as this job sees it: other jobs' pods and plans hold their GPUs."""
        reserved: dict[str, int] = {}
        with self._mem_lock:
            others = [m.plan for m in self._mem.values() if m is not mem and m.plan is not None]
        for plan in others:
            for node, gpus in plan.gpus_per_node().items():
                reserved[node] = reserved.get(node, 0) + gpus
        return build_cluster(self.store.nodes(), self.store.gpu_pods(), (namespace, name), self.settings, reserved)

    # ------------------------------------------------------------------------------------ planner

    def _plan(self, spec: RLJobSpec, cluster: Cluster) -> Plan | Infeasible:
        t0 = time.perf_counter()
        try:
            if self._planner is not None:
                return self._planner(spec, cluster)  # type: ignore[no-any-return]
            from hexrl.sched import plan

            return plan(spec, cluster, self._planner_settings(), self.solutions())
        finally:
            metrics.PLAN_SOLVE_SECONDS.labels("plan").observe(time.perf_counter() - t0)

    def _replan(self, current: Plan, spec: RLJobSpec, cluster: Cluster, trainer_may_move: bool) -> Plan | Infeasible:
        t0 = time.perf_counter()
        try:
            if self._replanner is not None:
                return self._replanner(current, cluster, spec)  # type: ignore[no-any-return]
            from hexrl.sched import replan

            return replan(current, cluster, spec, self._planner_settings(), self.solutions(),
                          trainer_may_move=trainer_may_move)
        finally:
            metrics.PLAN_SOLVE_SECONDS.labels("replan").observe(time.perf_counter() - t0)

    # ------------------------------------------------------------------------------------ the pass

    def reconcile(self, namespace: str, name: str) -> PassResult | None:
        """One pass; returns None when the job is gone or being deleted."""
        t0 = time.perf_counter()
        req0 = _thread_requests(self.api)
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
                metrics.API_REQUESTS.inc(_thread_requests(self.api) - req0)
        result.requests = _thread_requests(self.api) - req0
        cache = self._solutions.stats if self._solutions is not None else None
        log.info("pass %s/%s: %.2fs (planner %.2fs%s), %d requests, %d created, %d deleted%s", namespace, name,
                 time.perf_counter() - t0, result.plan_seconds,
                 f"; MILP cache {cache.hits} hits, {cache.misses} misses so far" if cache else "",
                 result.requests, result.created, result.deleted, ", status written" if result.status_written else "")
        return result

    def _pass(self, job: dict[str, Any], mem: JobMemory) -> PassResult:
        meta = job["metadata"]
        ref = render.JobRef(meta["name"], meta["namespace"], meta["uid"], int(meta.get("generation") or 1))
        mem.state["_job"] = [ref.namespace, ref.name]
        out = PassResult()
        try:
            spec = RLJobSpec.model_validate(job.get("spec") or {})
        except ValidationError as exc:
            msg = "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
            self._write_rejection(job, mem, reasons.INVALID_SPEC, f"the spec is invalid: {msg}; fix it and re-apply")
            out.outcome = "invalid"
            return out
        if not mem.loaded:
            self._load(ref, mem)
        t_plan = time.perf_counter()
        previous = mem.plan
        snap, plan, infeasible, trigger, lost = self._plan_and_commit(ref, spec, mem)
        out.plan_seconds = time.perf_counter() - t_plan
        for w in snap.warnings:
            self._event_once(job, mem, "Warning", "UnknownGPU", w)
        if plan is None:
            assert infeasible is not None
            self._write_rejection(job, mem, infeasible.reason, infeasible.message)
            return out
        plan = self._with_baselines(ref, spec, plan, snap, mem)
        out.planned = True
        out.replanned = trigger in ("spec", "cluster")

        # --- trainer gang: decide the epoch before the ConfigMap (which stores it) is written
        trainer_lost, trainer_create, trainer_delete = self._trainer_decision(ref, spec, plan, snap, mem)
        if trainer_lost:
            self._event(job, "Warning", reasons.TRAINER_LOST,
                        "a trainer rank was lost; restarting the trainer group from the last checkpoint")
            metrics.PREEMPTIONS.labels("trainer").inc()

        eta = spec.staleness.max_policy_lag
        mem.state["specKey"] = _spec_key(spec)
        state = {k: v for k, v in mem.state.items() if not k.startswith("_") and k != "rejected"}
        summary = self._summary(plan)
        static = render.render_static(ref, spec, plan, summary, eta, state, mem.token, self.settings)
        out.created += self._apply_all(static, mem)

        # --- pods: trainer gang, then rollout slots
        if spec.suspend:
            trainer_delete += [p for p in self.store.job_pods(ref.namespace, ref.name) if p["role"] == "trainer"]
            trainer_create = []
        out.deleted += sum(self._fan_out(lambda p: self._delete_pod(ref, mem, p, snap), trainer_delete))
        out.created += sum(self._fan_out(lambda pod: self._create_pod(mem, pod), trainer_create))
        created, deleted, replaced = self._rollout(ref, spec, plan, snap, mem)
        out.created += created
        out.deleted += deleted
        if replaced:
            metrics.PREEMPTIONS.labels("rollout").inc(replaced)

        # --- events for decisions
        if trigger == "first":
            self._event(job, "Normal", reasons.PLANNED, self._plan_sentence(plan, "planned"))
        elif trigger in ("spec", "cluster") and previous is not None and plan != previous:
            why = f"after losing {lost} node(s)" if lost else ("after a spec change" if trigger == "spec" else
                                                             "after a cluster change")
            self._event(job, "Normal", reasons.REPLANNED, self._plan_sentence(plan, f"re-planned {why}"))
        if trigger:
            metrics.REPLANS.labels(trigger).inc()
        mem.plan = plan

        # --- status, once
        health = self._health(ref, spec, plan, mem, trainer_lost, replaced)
        new_status = self._status(job, spec, plan, summary, health, lost, mem)
        out.status_written = self._write_status(job, new_status)
        self._export(ref, plan, new_status)
        return out

    # ------------------------------------------------------------------------------------ ledger

    def _plan_and_commit(
        self, ref: render.JobRef, spec: RLJobSpec, mem: JobMemory
    ) -> tuple[Snapshot, Plan | None, Infeasible | None, str, int]:
        """Decide this job's plan and commit it to the ledger (mem.plan) without overlapping another's.

        Serial and legacy modes: the whole decision holds one lock. Concurrent mode: optimistic — plan against a
        snapshot, then, holding the ledger briefly, check the plan's GPUs per node against a fresh
        snapshot (other jobs may have committed meanwhile) and commit, or re-plan on a conflict."""
        if not self.concurrent:
            self._planning_delta(+1)  # also while waiting for the lock: a job wants the planner
            try:
                with self._plan_lock:
                    snap = self._snapshot(ref.namespace, ref.name, mem)
                    plan, infeasible, trigger, lost = self._decide(spec, snap, mem)
                    if plan is not None:
                        mem.plan = plan
                    return snap, plan, infeasible, trigger, lost
            finally:
                self._planning_delta(-1)
        for attempt in range(OPTIMISTIC_ATTEMPTS + 1):
            last = attempt == OPTIMISTIC_ATTEMPTS
            # the last attempt holds the ledger throughout: nobody can commit in between, so it fits
            with self._ledger if last else contextlib.nullcontext():
                with self._ledger:
                    snap = self._snapshot(ref.namespace, ref.name, mem)
                self._planning_delta(+1)
                try:
                    plan, infeasible, trigger, lost = self._decide(spec, snap, mem)
                finally:
                    self._planning_delta(-1)
                with self._ledger:
                    if plan is None or plan is mem.plan or last or self._fits(ref, plan, mem):
                        if plan is not None:
                            mem.plan = plan
                        return snap, plan, infeasible, trigger, lost
            self.conflicts += 1
            metrics.ERRORS.labels("PlanConflict").inc()
            log.info("job %s/%s: GPUs of the new plan were taken by another job meanwhile; re-planning",
                     ref.namespace, ref.name)
            mem.cluster_key = ""  # the snapshot changed under us: decide again
        raise AssertionError("unreachable: the last attempt always commits")

    def _fits(self, ref: render.JobRef, plan: Plan, mem: JobMemory) -> bool:
        """Every node of `plan` still exists, is not going away and has the GPUs it needs, given the
        plans other jobs committed meanwhile (call holding the ledger)."""
        fresh = self._snapshot(ref.namespace, ref.name, mem).cluster
        free = {n.name: n.gpus_free for n in fresh.nodes}
        return all(free.get(node, 0) >= gpus for node, gpus in plan.gpus_per_node().items())

    def _planning_delta(self, d: int) -> None:
        with self._mem_lock:
            self._planning += d
            self._last_planned = time.monotonic()

    def _planner_idle(self) -> bool:
        """No job is planning, and none did for `BASELINE_QUIET` s (passes of a burst come in waves)."""
        with self._mem_lock:
            return self._planning == 0 and time.monotonic() - self._last_planned >= BASELINE_QUIET

    # ------------------------------------------------------------------------------------ baselines

    def _with_baselines(
        self, ref: render.JobRef, spec: RLJobSpec, plan: Plan, snap: Snapshot, mem: JobMemory
    ) -> Plan:
        """The plan with its homogeneous baselines once the background thread has them; meanwhile the
        plan as is (children do not wait for an explanation), and the computation is submitted once."""
        if (plan.baselines or not self.deferred or not self.settings.homogeneous_baselines
                or self._planner is not None):
            return plan
        placement = _placement(plan)
        if mem.baselines is not None and mem.baselines[0] == placement:
            plan = replace(plan, baselines=mem.baselines[1])  # type: ignore[arg-type]
            with self._ledger:
                if mem.plan is not None and _placement(mem.plan) == placement:
                    mem.plan = plan
            return plan
        if mem.baselines_pending != placement:
            mem.baselines_pending = placement
            self._background.submit(self._compute_baselines, ref, spec, snap.cluster, mem, placement)
        return plan

    def _compute_baselines(
        self, ref: render.JobRef, spec: RLJobSpec, cluster: Cluster, mem: JobMemory, placement: tuple[Any, ...]
    ) -> None:
        """Background: wait until no job has planned for a moment (placing jobs comes first), compute, ask
        for a pass."""
        from hexrl.sched.planner import baselines

        try:
            for _ in range(600):  # bounded: at most ~60 s of deferral, then compute anyway
                if self._planner_idle():
                    break
                time.sleep(0.1)
            if mem.plan is None or _placement(mem.plan) != placement:
                return  # re-planned meanwhile: the new plan gets its own computation
            t0 = time.perf_counter()
            found = baselines(spec, cluster, self._planner_settings(), self.solutions())
            metrics.PLAN_SOLVE_SECONDS.labels("baselines").observe(time.perf_counter() - t0)
            mem.baselines = (placement, found)
        except Exception:  # an explanation must never take the operator down
            log.exception("job %s/%s: computing the homogeneous baselines failed", ref.namespace, ref.name)
            return
        finally:
            if mem.baselines_pending == placement:
                mem.baselines_pending = None
        if self.on_change is not None and found:
            self.on_change(ref.namespace, ref.name)

    # ------------------------------------------------------------------------------------ decide

    def _decide(
        self, spec: RLJobSpec, snap: Snapshot, mem: JobMemory
    ) -> tuple[Plan | None, Infeasible | None, str, int]:
        """(plan to deploy, infeasibility to report, trigger of a planner call or "", nodes lost)."""
        current = mem.plan
        cluster_key = _relevance_key(snap.cluster, current)
        spec_key = _spec_key(spec)
        lost = 0
        if current is not None:
            present = {n.name for n in snap.cluster.nodes if not n.going_away}
            lost = len(_plan_nodes(current) - present)
        if current is not None and mem.state.get("specKey") == spec_key and mem.cluster_key == cluster_key:
            return current, None, "", 0
        if current is None and mem.rejection is not None and mem.rejection[0] == (spec_key, cluster_key):
            return None, mem.rejection[1], "", 0  # nothing changed since the planner said no
        if current is None:
            trigger = "first"
            result = self._plan(spec, snap.cluster)
        else:
            trigger = "spec" if mem.state.get("specKey") != spec_key else "cluster"
            # a node event never restarts a trainer that survived it (replan keeps it when intact)
            result = self._replan(current, spec, snap.cluster, trainer_may_move=trigger == "spec")
            if isinstance(result, Infeasible):
                result = self._plan(spec, snap.cluster)
        mem.cluster_key = _relevance_key(snap.cluster, result if isinstance(result, Plan) else current)
        if isinstance(result, Infeasible):
            metrics.ERRORS.labels(result.reason).inc()
            mem.rejection = ((spec_key, cluster_key), result)
            if current is not None:
                # keep running the last feasible plan (a rejected change must not kill a running job)
                mem.state["rejected"] = {"reason": result.reason, "message": result.message}
                return current, None, "", lost
            return None, result, trigger, lost
        mem.state.pop("rejected", None)
        mem.rejection = None
        if current is not None and _placement(result) == _placement(current):
            return current, None, "", lost  # same placement: keep the deployed plan (no churn, no event)
        if current is not None and result != current and mem.state.get("scale", {}).get("extra"):
            # the new plan re-sizes rollout from scratch; live scaling starts again from it
            mem.state["scale"] = scaling.ScaleState().wire()
            mem.scale = None
        return result, None, trigger, lost

    def _summary(self, plan: Plan) -> dict[str, Any]:
        try:
            from hexrl.sched import plan_summary  # type: ignore[attr-defined]

            return plan_summary(plan).wire()
        except ImportError:
            return st.summarize(plan)

    @staticmethod
    def _plan_sentence(plan: Plan, verb: str) -> str:
        groups = ", ".join(f"{g.replicas}×{g.gpus_per_replica} {g.gpu} on {g.pool}" for g in plan.rollout_groups())
        t = plan.trainer
        return (
            f"{verb}: trainer {t.gpus}×{t.gpu} on {t.pool}; rollout {groups or 'none'}; "
            f"{plan.tokens_per_second:.0f} tokens/s predicted at ${plan.cost_per_hour:.2f}/h "
            f"(bottleneck: {plan.bottleneck})"
        )

    # ------------------------------------------------------------------------------------ load

    def _load(self, ref: render.JobRef, mem: JobMemory) -> None:
        """First pass after a (re)start: read back the stored plan and state; derive the token."""
        names = render.names(ref)
        cm = self.api.get("v1", "ConfigMap", names["config"], ref.namespace)
        mem.fresh = cm is None  # a new job: none of its children exist, so there is nothing to read back
        if cm and _owned_by(cm, ref.uid):
            data = cm.get("data") or {}
            try:
                mem.plan = plancodec.loads(data[render.PLAN_KEY]) if render.PLAN_KEY in data else None
            except ValueError as exc:
                log.warning("job %s/%s: ignoring stored plan: %s", ref.namespace, ref.name, exc)
            with contextlib.suppress(ValueError):
                mem.state.update(json.loads(data.get(render.STATE_KEY) or "{}"))
        mem.token = self.job_token(ref.uid)
        mem.loaded = True

    # ------------------------------------------------------------------------------------ apply

    def _apply_all(self, objs: list[dict[str, Any]], mem: JobMemory) -> int:
        """Apply objects whose desired hash differs from what is there, concurrently (they are independent;
        all are written before any pod is created); returns how many were written."""

        def one(obj: dict[str, Any]) -> int:
            key = (obj["kind"], obj["metadata"]["name"])
            want = obj["metadata"]["annotations"][render.HASH_ANNOTATION]
            if mem.child_hashes.get(key) == want:
                return 0
            # A Secret is never read back (no RBAC for it): its apply is idempotent, and the token derived.
            if key not in mem.child_hashes and not mem.fresh and obj["kind"] != "Secret":
                existing = self.api.get(obj["apiVersion"], obj["kind"], obj["metadata"]["name"],
                                        obj["metadata"].get("namespace"))
                have = ((existing or {}).get("metadata", {}).get("annotations") or {}).get(render.HASH_ANNOTATION)
                if existing is not None and have == want:
                    mem.child_hashes[key] = want
                    return 0
            self.api.apply(obj)
            mem.child_hashes[key] = want
            metrics.CHILDREN_CREATED.labels(obj["kind"]).inc()
            return 1

        return sum(self._fan_out(one, objs))

    def _create_pod(self, mem: JobMemory, pod: dict[str, Any]) -> int:
        name = pod["metadata"]["name"]
        try:
            self.api.create(pod)
        except ApiError as exc:
            if exc.reason != "AlreadyExists":
                raise
            return 0
        labels = pod["metadata"]["labels"]
        mem.expected[name] = (
            {"name": name, "namespace": pod["metadata"]["namespace"], "uid": "", "node": "", "gpus": 0,
             "job": labels.get("hexrl.dev/job", ""), "role": labels.get("hexrl.dev/role", ""),
             "slot": labels.get("hexrl.dev/slot", ""), "phase": "Pending", "terminal": False,
             "disrupted": False, "deleting": False, "ready": False,
             "epoch": labels.get(render.EPOCH_LABEL, ""),
             "hash": pod["metadata"]["annotations"][render.HASH_ANNOTATION], "expected": True},
            time.monotonic(),
        )
        metrics.CHILDREN_CREATED.labels("Pod").inc()
        return 1

    def _delete_pod(self, ref: render.JobRef, mem: JobMemory, p: dict[str, Any], snap: Snapshot) -> int:
        if p.get("expected"):
            mem.expected.pop(p["name"], None)
        node_gone = bool(p.get("node")) and p["node"] not in self.store.node_names()
        # a pod on a vanished node is never confirmed dead by a kubelet: remove it at once
        grace = 0 if node_gone else None
        ok = self.api.delete("v1", "Pod", p["name"], ref.namespace, grace_seconds=grace, uid=p.get("uid") or None)
        mem.deleted[p["name"]] = time.monotonic()
        if ok:
            metrics.CHILDREN_DELETED.labels("Pod").inc()
        return int(ok)

    # ------------------------------------------------------------------------------------ pods

    def _job_pods(self, ref: render.JobRef, mem: JobMemory) -> list[dict[str, Any]]:
        """Live view of the job's pods: the store, plus pods we created and have not seen yet, minus
        pods we deleted (their deletion may not have reached the watch yet)."""
        now = time.monotonic()
        seen = self.store.job_pods(ref.namespace, ref.name)
        names = {p["name"] for p in seen}
        for n in [n for n, (_, t) in mem.expected.items() if n in names or now - t > EXPECT_TTL]:
            mem.expected.pop(n, None)
        for n in [n for n, t in mem.deleted.items() if n not in names or now - t > EXPECT_TTL]:
            mem.deleted.pop(n, None)
        pods = [p for p in seen if p["name"] not in mem.deleted and not p["deleting"]]
        pods += [v for v, _ in mem.expected.values()]
        return pods

    def _pod_bad(self, p: dict[str, Any], snap: Snapshot) -> str:
        """Why a pod must be replaced ("" = healthy or still starting)."""
        if p["terminal"]:
            return "failed" if p["phase"] == "Failed" else "completed"
        if p["disrupted"]:
            return "disrupted"
        if p["node"]:
            if p["node"] in snap.going_away:
                return f"node {p['node']} {snap.going_away[p['node']]}"
            if p["node"] not in self.store.node_names():
                return f"node {p['node']} is gone"
        return ""

    def _trainer_decision(
        self, ref: render.JobRef, spec: RLJobSpec, plan: Plan, snap: Snapshot, mem: JobMemory
    ) -> tuple[bool, list[dict[str, Any]], list[dict[str, Any]]]:
        """(gang lost, pods to create, pods to delete). All ranks of an incarnation or none."""
        epoch = int(mem.state.get("trainerEpoch", 0))
        pods = [p for p in self._job_pods(ref, mem) if p["role"] == "trainer"]
        tag = render.trainer_epoch_tag(plan, epoch)
        current = [p for p in pods if (p.get("epoch") or _epoch_of(p["name"], ref)) == tag]
        # any rank of any incarnation dying counts (a re-plan may already have moved the trainer off a lost node)
        lost = any(self._pod_bad(p, snap) for p in pods)
        desired = render.render_trainer_pods(ref, spec, plan, snap, epoch, self.settings)
        if current and not lost:
            # a rank vanished after the gang was created (e.g. its node was deleted): the gang is broken
            have = {p["name"] for p in current}
            lost = any(d["metadata"]["name"] not in have for d in desired)
        if lost:
            epoch += 1
            mem.state["trainerEpoch"] = epoch
            tag = render.trainer_epoch_tag(plan, epoch)
            desired = render.render_trainer_pods(ref, spec, plan, snap, epoch, self.settings)
        keep = {d["metadata"]["name"] for d in desired}
        delete = [p for p in pods if p["name"] not in keep]
        have = {p["name"] for p in pods}
        create = [d for d in desired if d["metadata"]["name"] not in have]
        return lost, create, delete

    def _rollout(
        self, ref: render.JobRef, spec: RLJobSpec, plan: Plan, snap: Snapshot, mem: JobMemory
    ) -> tuple[int, int, int]:
        """Bring rollout pods to one healthy pod per planned slot; returns (created, deleted, replaced)."""
        pods = [p for p in self._job_pods(ref, mem) if p["role"] == "rollout"]
        by_slot: dict[str, list[dict[str, Any]]] = {}
        for p in pods:
            by_slot.setdefault(p["slot"], []).append(p)
        replaced = 0
        to_delete: list[dict[str, Any]] = []
        to_create: list[dict[str, Any]] = []
        slots = [] if spec.suspend else render.rollout_slots(plan)
        wanted = {s.slot for s in slots}
        for slot in slots:
            have = sorted(by_slot.get(slot.slot, []), key=lambda p: _incarnation(p["name"]))
            keep = None
            for p in have:
                why = self._pod_bad(p, snap)
                inc = _incarnation(p["name"])
                want_hash = render.render_rollout_pod(ref, spec, slot, inc, snap, self.settings)["metadata"][
                    "annotations"][render.HASH_ANNOTATION]
                matches = (p.get("hash") or want_hash) == want_hash
                if why or not matches or keep is not None:
                    if why and why not in ("completed",):
                        replaced += 1
                        log.info("job %s/%s: replacing rollout pod %s: %s", ref.namespace, ref.name, p["name"], why)
                    to_delete.append(p)
                else:
                    keep = p
            if keep is None:
                inc = max((_incarnation(p["name"]) for p in have), default=-1) + 1
                to_create.append(render.render_rollout_pod(ref, spec, slot, inc, snap, self.settings))
        for s, ps in by_slot.items():
            if s not in wanted:
                to_delete.extend(ps)
        # deletions first: they free the GPUs the new pods may need
        deleted = sum(self._fan_out(lambda p: self._delete_pod(ref, mem, p, snap), to_delete))
        created = sum(self._fan_out(lambda pod: self._create_pod(mem, pod), to_create))
        return created, deleted, replaced

    def _fan_out(self, fn: Callable[[Any], int], items: list[Any]) -> list[int]:
        """Run independent API calls of one pass concurrently (pods of a big plan are created in parallel)."""
        if len(items) <= 1:
            return [fn(i) for i in items]

        def counted(item: Any) -> tuple[int, int]:
            before = _thread_requests(self.api)
            return fn(item), _thread_requests(self.api) - before

        done = list(self._pool.map(counted, items))
        credit = getattr(self.api, "credit", None)
        if credit is not None:
            credit(sum(n for _, n in done))  # the pass's requests, made on helper threads
        return [r for r, _ in done]

    # ------------------------------------------------------------------------------------ status

    def _health(
        self, ref: render.JobRef, spec: RLJobSpec, plan: Plan, mem: JobMemory, trainer_lost: bool, replaced: int
    ) -> st.Health:
        pods = self._job_pods(ref, mem)
        coordinator = [p for p in self.store.job_pods(ref.namespace, ref.name) if p["role"] == "coordinator"]
        tag = render.trainer_epoch_tag(plan, int(mem.state.get("trainerEpoch", 0)))
        trainer = [p for p in pods if p["role"] == "trainer" and (p.get("epoch") or _epoch_of(p["name"], ref)) == tag]
        wanted = {s.slot for s in render.rollout_slots(plan)}
        rollout = [p for p in pods if p["role"] == "rollout" and p["slot"] in wanted]
        trainer_ready = sum(1 for p in trainer if p["ready"])
        trainer_desired = 0 if spec.suspend else len(plan.trainer.nodes)
        rollout_ready = sum(1 for p in rollout if p["ready"])
        rollout_desired = 0 if spec.suspend else len(wanted)
        # Degraded holds from the loss until the replacements are ready, not just for the pass that saw it
        mem.trainer_recovering = (trainer_lost or mem.trainer_recovering) and trainer_ready < trainer_desired
        mem.rollout_recovering = (mem.rollout_recovering + replaced) if rollout_ready < rollout_desired else 0
        return st.Health(
            planned=True,
            trainer_ready=trainer_ready,
            trainer_desired=trainer_desired,
            rollout_ready=rollout_ready,
            rollout_desired=rollout_desired,
            coordinator_ready=spec.suspend or any(p["ready"] for p in coordinator),
            trainer_lost=mem.trainer_recovering,
            rollout_replaced=mem.rollout_recovering,
            suspended=spec.suspend,
        )

    def _status(
        self, job: dict[str, Any], spec: RLJobSpec, plan: Plan, summary: dict[str, Any], h: st.Health,
        lost: int, mem: JobMemory,
    ) -> dict[str, Any]:
        old = job.get("status") or {}
        gen = job["metadata"].get("generation")
        now = st.now_iso()
        conds = list(old.get("conditions") or [])
        rejected = mem.state.get("rejected")
        if rejected:
            conds = st.set_condition(conds, reasons.PLANNED, "False", rejected["reason"],
                                     rejected["message"] + " (still running the previous plan)", gen, now)
            self._event_once(job, mem, "Warning", reasons.REJECTED, rejected["message"])
        else:
            conds = st.set_condition(
                conds, reasons.PLANNED, "True",
                reasons.REPLANNED if old.get("plan") and _plan_changed(old.get("plan"), summary) else
                (_cond_reason(conds, reasons.PLANNED, reasons.PLAN_FOUND)),
                self._plan_sentence(plan, "plan"), gen, now)
        conds = st.set_condition(conds, reasons.READY, *st.ready_condition(h), gen, now)
        conds = st.set_condition(conds, reasons.DEGRADED, *st.degraded_condition(h, lost), gen, now)
        eta = spec.staleness.max_policy_lag
        conds = st.set_condition(conds, reasons.STALENESS_WITHIN_BOUND, *st.staleness_condition(mem.progress, eta),
                                 gen, now)
        progress = mem.progress or {}
        new = {
            "phase": st.phase_for(h),
            "observedGeneration": gen,
            "conditions": conds,
            "plan": summary,
            "gpus": plan.gpus,
            "tokensPerSecond": round(float(progress.get("tokensPerSecond") or plan.tokens_per_second), 1),
            "costPerHour": round(plan.cost_per_hour, 2),
            "staleness": round(float(progress.get("observedStaleness") or 0.0), 2) if progress else None,
            "message": self._plan_sentence(plan, "running"),
        }
        if progress:
            new["progress"] = {k: progress[k] for k in
                               ("policyVersion", "trainedSteps", "observedStaleness", "tokensPerSecond",
                                "bufferDepth", "trainerIdleFraction") if k in progress}
        return new

    def _write_status(self, job: dict[str, Any], new: dict[str, Any]) -> bool:
        if st.status_equal(job.get("status"), new):
            return False
        m = job["metadata"]
        self.api.patch_status(API_VERSION, KIND, m["name"], m["namespace"], new)
        return True

    def _write_rejection(self, job: dict[str, Any], mem: JobMemory, reason: str, message: str) -> None:
        """Planned=False with the planner's reason, one Warning Event per distinct message, no children."""
        old = job.get("status") or {}
        gen = job["metadata"].get("generation")
        now = st.now_iso()
        conds = st.set_condition(list(old.get("conditions") or []), reasons.PLANNED, "False", reason, message, gen, now)
        conds = st.set_condition(conds, reasons.READY, "False", reasons.CHILDREN_PENDING, "no plan", gen, now)
        new = {"phase": "Pending", "observedGeneration": gen, "conditions": conds, "message": message,
               "gpus": 0, "costPerHour": 0.0, "tokensPerSecond": 0.0}
        self._write_status(job, new)
        self._event_once(job, mem, "Warning", reasons.REJECTED, f"{reason}: {message}")
        m = job["metadata"]
        for g in (metrics.PLANNED_TOKENS, metrics.PLANNED_COST, metrics.PLANNED_GPUS):
            g.labels(m["namespace"], m["name"]).set(0)

    def _export(self, ref: render.JobRef, plan: Plan, status: dict[str, Any]) -> None:
        metrics.PLANNED_TOKENS.labels(ref.namespace, ref.name).set(plan.tokens_per_second)
        metrics.PLANNED_COST.labels(ref.namespace, ref.name).set(plan.cost_per_hour)
        metrics.PLANNED_GPUS.labels(ref.namespace, ref.name).set(plan.gpus)
        if status.get("staleness") is not None:
            metrics.OBSERVED_STALENESS.labels(ref.namespace, ref.name).set(status["staleness"])

    # ------------------------------------------------------------------------------------ events

    def _event_once(self, job: dict[str, Any], mem: JobMemory, etype: str, reason: str, message: str) -> None:
        key = f"{job['metadata'].get('generation')}|{reason}|{message}"
        if key in mem.events_sent:
            return
        mem.events_sent.add(key)
        self._event(job, etype, reason, message)

    def _event(self, job: dict[str, Any], etype: str, reason: str, message: str) -> None:
        m = job["metadata"]
        now = st.now_iso()
        ev = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{m['name']}.", "namespace": m["namespace"]},
            "involvedObject": {"apiVersion": API_VERSION, "kind": KIND, "name": m["name"],
                               "namespace": m["namespace"], "uid": m["uid"]},
            "reason": reason,
            "message": message[:1000],
            "type": etype,
            "source": {"component": "hexrl-operator"},
            "reportingComponent": "hexrl-operator",
            "reportingInstance": self.settings.field_manager,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.api.create(ev)
        except ApiError as exc:  # an Event is informational: never fail a pass for it
            log.warning("could not post event %s for %s/%s: %s", reason, m["namespace"], m["name"], exc)

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
            new_plan: Plan | None = None
            with self._ledger:  # a greedy step, no solver: commit it against the ledger directly
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
            mem.scale = state
            mem.state["scale"] = state.wire()
            if new_plan is None:
                return False
            metrics.SCALING.labels(direction).inc()
            metrics.EXTRA_ROLLOUT.labels(namespace, name).set(state.extra)
            r = new_plan.replicas[-1] if direction == "grow" else None
            msg = (f"added a rollout replica on {r.nodes[0]} ({r.gpu}, {'spot' if r.spot else 'on-demand'}): "
                   f"trainer idle fraction above {self.settings.scaling.starve_idle_fraction}"
                   if r else f"removed an extra rollout replica: observed staleness near η={spec.staleness.max_policy_lag}")
            self._event(job, "Normal", reasons.SCALED_ROLLOUT, msg)
            return True


def _thread_requests(api: Any) -> int:
    """Requests the calling thread made (a fake API without per-thread counts: the total)."""
    fn = getattr(api, "thread_requests", None)
    return int(fn()) if fn is not None else int(api.requests)


def _relevance_key(cluster: Cluster, plan: Plan | None) -> str:
    """What must change before re-planning is worth it: any node's existence, size, pool or going-away
    state, and how busy the nodes this job's plan uses are. Other jobs' pods coming and going on nodes
    this job does not use do not count — otherwise every job would re-plan whenever any job's pod starts."""
    mine = _plan_nodes(plan) if plan is not None else set()
    items = [
        (n.name, n.pool, n.gpus, n.going_away, n.gpus_used_by_others if n.name in mine else -1)
        for n in cluster.nodes
    ]
    return _key((items, cluster.pools))


def _placement(plan: Plan) -> tuple[Any, ...]:
    """What the deployed children depend on (not the solver's timing or explanation)."""
    return (plan.trainer, plan.replicas)


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(o.get("uid") == uid for o in obj.get("metadata", {}).get("ownerReferences") or [])


def _incarnation(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _epoch_of(pod_name: str, ref: render.JobRef) -> str:
    prefix = f"{ref.name}-trainer-"
    return pod_name[len(prefix):].rsplit("-", 1)[0] if pod_name.startswith(prefix) else ""


def _plan_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    if not old:
        return False
    keys = ("trainer", "rollout", "gpus")
    return any(old.get(k) != new.get(k) for k in keys)


def _cond_reason(conds: list[dict[str, Any]], ctype: str, default: str) -> str:
    c = st.get_condition(conds, ctype)
    if c and c.get("status") == "True":
        return str(c.get("reason") or default)
    return default
