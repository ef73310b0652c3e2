"""The plan step of a reconcile pass: cluster snapshot → planner → a plan committed to the reservation ledger.

`PlanStep` is a mixin of `reconcile.Reconciler`; it holds no state of its own (the attributes listed on the
class are the Reconciler's). What it does:

- builds the job's snapshot, in which every other job's committed plan holds its GPUs (the ledger);
- decides whether the planner must be asked at all (`_decide`): not while neither the planner's part of
  the spec nor the relevant part of the cluster changed, and not again for an answer it already gave;
- commits the plan: under one lock (serial, legacy) or optimistically (concurrent: plan against a
  snapshot, then commit only if every GPU it chose is still free, else re-plan holding the ledger);
- reuses MILP optima through the solution cache and computes the homogeneous baselines of a new plan on
  a background thread once no job is planning (the result comes back through another pass).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from hexrl.api.models import RLJobSpec
from hexrl.k8s import metrics, render, scaling
from hexrl.k8s.passstate import JobMemory, placement, plan_basis, plan_nodes, replan_reason, spec_key
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import Snapshot, build_cluster, cluster_base
from hexrl.k8s.store import Store
from hexrl.sched.types import Cluster, Infeasible, Plan

log = logging.getLogger(__name__)

BASELINE_QUIET = 2.0
"""s without any job planning before the background thread computes baselines (placing jobs first)."""

OPTIMISTIC_ATTEMPTS = 1
"""Optimistic plans per pass before the pass re-plans holding the ledger (no other job can commit then).
One: the re-plan after a lost race is nearly always a cache hit (the same MILP with less capacity), so
holding the ledger for it is cheap, and a second optimistic round would race the same winners again."""

Decision = tuple[Plan | None, Infeasible | None, str, int]
"""(plan to deploy, infeasibility to report, trigger of a planner call or "", nodes lost)."""


class PlanStep:
    """Snapshot, planner calls, ledger commit and deferred baselines (mixin of `Reconciler`)."""

    store: Store
    settings: OperatorSettings
    _planner: Callable[..., Any] | None
    _replanner: Callable[..., Any] | None
    _mem: dict[str, JobMemory]
    _mem_lock: threading.Lock
    _plan_lock: threading.Lock
    _ledger: threading.RLock
    _background: ThreadPoolExecutor
    _planning: int
    _last_planned: float
    _solutions: Any
    _base: tuple[int, Snapshot] | None
    conflicts: int
    on_change: Callable[[str, str], None] | None

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

    def _snapshot(self, namespace: str, name: str, mem: JobMemory) -> Snapshot:
        """The cluster as this job sees it: other jobs' pods and plans hold their GPUs."""
        reserved: dict[str, int] = {}
        with self._mem_lock:
            others = [m.plan for m in self._mem.values() if m is not mem and m.plan is not None]
        for plan in others:
            for node, gpus in plan.gpus_per_node().items():
                reserved[node] = reserved.get(node, 0) + gpus
        version, nodes = self.store.nodes_versioned()
        return build_cluster(nodes, self.store.gpu_pods(), (namespace, name), self.settings, reserved,
                             base=self.cluster_base(version, nodes))

    def cluster_base(self, version: int, nodes: list[dict[str, Any]]) -> Snapshot:
        """`snapshot.cluster_base` of the store's nodes at `version`, rebuilt only when a node changed."""
        with self._mem_lock:
            cached = self._base
        if cached is not None and cached[0] == version:
            return cached[1]
        base = cluster_base(nodes, self.settings)
        with self._mem_lock:
            self._base = (version, base)
        return base

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

    def _replan(self, spec: RLJobSpec, cluster: Cluster, current: Plan, trainer_may_move: bool) -> Plan | Infeasible:
        """The least-change re-plan of `current`, or a fresh plan when no re-plan is feasible."""
        t0 = time.perf_counter()
        try:
            if self._replanner is not None:
                return self._replanner(spec, cluster, current)  # type: ignore[no-any-return]
            from hexrl.sched import replan_or_plan

            return replan_or_plan(spec, cluster, current, self._planner_settings(), self.solutions(),
                                  trainer_may_move=trainer_may_move)
        finally:
            metrics.PLAN_SOLVE_SECONDS.labels("replan").observe(time.perf_counter() - t0)

    # ------------------------------------------------------------------------------------ ledger

    def _plan_and_commit(
        self, ref: render.JobRef, spec: RLJobSpec, mem: JobMemory
    ) -> tuple[Snapshot, Plan | None, Infeasible | None, str, int]:
        """Decide this job's plan and commit it to the ledger (mem.plan) without overlapping another's.

        Serial and legacy modes: the whole decision holds one lock. Concurrent mode: optimistic — plan against a
        snapshot, then, holding the ledger briefly, check the plan's GPUs per node against a fresh
        snapshot (other jobs may have committed meanwhile) and commit, or re-plan on a conflict."""
        if not self.concurrent:
            return self._plan_serial(ref, spec, mem)
        return self._plan_optimistic(ref, spec, mem)

    def _plan_serial(
        self, ref: render.JobRef, spec: RLJobSpec, mem: JobMemory
    ) -> tuple[Snapshot, Plan | None, Infeasible | None, str, int]:
        """One job plans at a time, each against the GPUs the plans before it committed."""
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

    def _plan_optimistic(
        self, ref: render.JobRef, spec: RLJobSpec, mem: JobMemory
    ) -> tuple[Snapshot, Plan | None, Infeasible | None, str, int]:
        """Plan without a lock, commit if the plan still fits; the last attempt holds the ledger throughout."""
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
            mem.basis = None  # the snapshot changed under us: decide again
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
        where = placement(plan)
        if mem.baselines is not None and mem.baselines[0] == where:
            plan = replace(plan, baselines=mem.baselines[1])  # type: ignore[arg-type]
            with self._ledger:
                if mem.plan is not None and placement(mem.plan) == where:
                    mem.plan = plan
            return plan
        if mem.baselines_pending != where:
            mem.baselines_pending = where
            self._background.submit(self._compute_baselines, ref, spec, snap.cluster, mem, where)
        return plan

    def _compute_baselines(
        self, ref: render.JobRef, spec: RLJobSpec, cluster: Cluster, mem: JobMemory, where: tuple[Any, ...]
    ) -> None:
        """Background: wait until no job has planned for a moment (placing jobs comes first), compute, ask
        for a pass."""
        from hexrl.sched.planner import baselines

        try:
            for _ in range(600):  # bounded: at most ~60 s of deferral, then compute anyway
                if self._planner_idle():
                    break
                time.sleep(0.1)
            if mem.plan is None or placement(mem.plan) != where:
                return  # re-planned meanwhile: the new plan gets its own computation
            t0 = time.perf_counter()
            found = baselines(spec, cluster, self._planner_settings(), self.solutions())
            metrics.PLAN_SOLVE_SECONDS.labels("baselines").observe(time.perf_counter() - t0)
            mem.baselines = (where, found)
        except Exception:  # an explanation must never take the operator down
            log.exception("job %s/%s: computing the homogeneous baselines failed", ref.namespace, ref.name)
            return
        finally:
            if mem.baselines_pending == where:
                mem.baselines_pending = None
        if self.on_change is not None and found:
            self.on_change(ref.namespace, ref.name)

    # ------------------------------------------------------------------------------------ decide

    def _decide(self, spec: RLJobSpec, snap: Snapshot, mem: JobMemory) -> Decision:
        """(plan to deploy, infeasibility to report, trigger of a planner call or "", nodes lost)."""
        current = mem.plan
        skey = spec_key(spec)
        lost = 0
        if current is not None:
            present = {n.name for n in snap.cluster.nodes if not n.going_away}
            lost = len(plan_nodes(current) - present)
        spec_same = mem.state.get("specKey") == skey
        why = replan_reason(mem.basis, snap.cluster, current)
        if current is not None and spec_same and not why:
            return current, None, "", 0
        if current is None and mem.rejection is not None and mem.rejection[0] == skey and not why:
            return None, mem.rejection[1], "", 0  # nothing that could help changed since the planner said no
        if current is not None:
            log.info("job %s: re-planning: %s", "/".join(mem.state.get("_job", ())),
                     why if spec_same else "the spec changed")
        result, trigger = self._ask_planner(spec, snap, current, not spec_same)
        mem.basis = plan_basis(snap.cluster)
        if isinstance(result, Infeasible):
            return self._infeasible(result, current, mem, skey, trigger, lost)
        mem.state.pop("rejected", None)
        mem.rejection = None
        if current is not None and placement(result) == placement(current):
            return current, None, "", lost  # same placement: keep the deployed plan (no churn, no event)
        if current is not None and result != current and mem.state.get("scale", {}).get("extra"):
            # the new plan re-sizes rollout from scratch; live scaling starts again from it
            mem.state["scale"] = scaling.ScaleState().wire()
            mem.scale = None
        return result, None, trigger, lost

    def _ask_planner(
        self, spec: RLJobSpec, snap: Snapshot, current: Plan | None, spec_changed: bool
    ) -> tuple[Plan | Infeasible, str]:
        """(the planner's answer, trigger): a first plan, or a re-plan of the current one (a fresh plan when
        the re-plan is infeasible)."""
        if current is None:
            return self._plan(spec, snap.cluster), "first"
        trigger = "spec" if spec_changed else "cluster"
        # a node event never restarts a trainer that survived it (replan keeps it when intact)
        return self._replan(spec, snap.cluster, current, trainer_may_move=trigger == "spec"), trigger

    @staticmethod
    def _infeasible(
        result: Infeasible, current: Plan | None, mem: JobMemory, skey: str, trigger: str, lost: int
    ) -> Decision:
        """Remember the planner's no; a running job keeps its last feasible plan (reported as rejected)."""
        metrics.ERRORS.labels(result.reason).inc()
        mem.rejection = (skey, result)
        if current is not None:
            # keep running the last feasible plan (a rejected change must not kill a running job)
            mem.state["rejected"] = {"reason": result.reason, "message": result.message}
            return current, None, "", lost
        return None, result, trigger, lost
