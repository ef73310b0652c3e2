"""The planning part of a reconcile pass: cluster snapshot → planner → a plan committed to the ledger.

`Planning` owns everything that spans jobs: the reservation ledger (every job's committed plan holds its
GPUs in the others' snapshots), the locks that keep two commits from overlapping, the MILP solution cache,
the cached job-independent cluster base, and the background thread computing homogeneous baselines. Its
interface to the reconciler is `plan_and_commit` (a `Commit`), `with_baselines`, `scale` and
`cluster_base`. What it does:

- builds the job's snapshot, in which every other job's committed plan holds its GPUs;
- decides whether the planner must be asked at all (`_decide`): not while neither the planner's part of
  the spec nor the relevant part of the cluster changed, and not again for an answer it already gave;
- commits the plan: under one lock (`serial`) or optimistically (`concurrent`: plan against a snapshot,
  then commit only if every GPU it chose is still free, else re-plan holding the ledger);
- reuses MILP optima through the solution cache (MILPs that differ from an earlier one only by less free
  capacity reuse its optimum without a solver call, exactly: sched/solvecache.py), and computes the
  homogeneous baselines of a new plan on a background thread once no job is planning (the result comes
  back through another pass, via `on_change`).

After a node event (a cluster-triggered re-plan) the trainer is never moved while all its nodes survive:
`replan(..., trainer_may_move=False)` re-places only rollout. Only a spec change (or a lost trainer node)
re-plans the trainer.

Online calibration (`calibrator.Calibrator`): every plan is made with the cluster's calibration profile in
the cost model. When a factor the job depends on moved materially (`JobMemory.calibration_news`, set by the
progress poll), the pass re-scores the current plan under the new profile, asks for the least-change re-plan
(trainer kept), and deploys it only when it beats the current plan by more than
`CalibrationSettings.replan_margin`; either way the sentence of a Calibrated Event says what was learned and
what was done.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from hexrl.api.models import RLJobSpec
from hexrl.k8s import metrics, render, scaling
from hexrl.k8s.jobmemory import JobMemories, JobMemory, Trigger, placement, plan_nodes, spec_key
from hexrl.k8s.replanpolicy import plan_basis, replan_reason
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import Snapshot, build_cluster, cluster_base
from hexrl.k8s.store import Store
from hexrl.sched.calibration import CalibrationProfile
from hexrl.sched.types import Cluster, Infeasible, Plan

log = logging.getLogger(__name__)

BASELINE_QUIET = 2.0
"""s without any job planning before the background thread computes baselines (placing jobs first)."""

OPTIMISTIC_ATTEMPTS = 1
"""Optimistic plans per pass before the pass re-plans holding the ledger (no other job can commit then).
One: the re-plan after a lost race is nearly always a cache hit (the same MILP with less capacity), so
holding the ledger for it is cheap, and a second optimistic round would race the same winners again."""

PlanFn = Callable[[RLJobSpec, Cluster], "Plan | Infeasible"]
"""An injected planner: (spec, cluster) → plan or infeasibility (tests, the benchmark's fresh-solve mode)."""

ReplanFn = Callable[..., "Plan | Infeasible"]
"""An injected re-planner: (spec, cluster, current plan, *, trainer_may_move) → plan or infeasibility (it stands
in for the whole re-plan, including the fallback to a fresh plan)."""


@dataclass(frozen=True)
class Decision:
    """What `_decide` concluded for one job."""

    plan: Plan | None
    """The plan to deploy (None: nothing feasible and nothing running)."""
    infeasible: Infeasible | None
    """The planner's no to report when there is no plan to deploy."""
    trigger: Trigger | None
    """Why the planner was asked; None when it was not."""
    lost: int
    """Nodes of the current plan that are gone or going away."""


@dataclass(frozen=True)
class Commit:
    """`plan_and_commit`'s answer: the decision and the snapshot it was made on."""

    snap: Snapshot
    decision: Decision


class Planning:
    """The planning part of the reconciler (see the module docstring); thread-safe."""

    def __init__(
        self, store: Store, settings: OperatorSettings, memories: JobMemories,
        planner: PlanFn | None = None, replanner: ReplanFn | None = None, calibrator: Any = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.memories = memories
        self.calibrator = calibrator
        """The operator's `calibrator.Calibrator` (None: plan with the catalog alone)."""
        self._planner = planner
        self._replanner = replanner
        self._lock = threading.Lock()  # the counters, the cache's creation and the cluster base
        self._plan_lock = threading.Lock()  # serial planning: one job decides at a time
        self._ledger = threading.RLock()  # a commit of any plan (concurrent planning, scaling)
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hexrl-baselines")
        self._planning = 0
        self._last_planned = 0.0
        self._solutions: Any = None
        self._base: tuple[int, Snapshot] | None = None
        self.conflicts = 0
        """Optimistic plans that lost a race and were re-planned (tests, bench)."""
        self.on_change: Callable[[str, str], None] | None = None
        """Called with (namespace, name) when background work (baselines) wants another pass."""

    def close(self) -> None:
        """Stop the background thread (tests construct many reconcilers in one process)."""
        self._background.shutdown(wait=False, cancel_futures=True)

    @property
    def concurrent(self) -> bool:
        """Optimistic planning against the ledger (planning = concurrent)."""
        return self.settings.planning.mode == "concurrent"

    def solutions(self) -> Any:
        """The operator's MILP solution cache, created once on first use (under the lock: passes start
        together, and each must share the one cache)."""
        if self._solutions is None:
            from hexrl.sched.solvecache import SolutionCache

            with self._lock:
                if self._solutions is None:
                    self._solutions = SolutionCache()
        return self._solutions

    def cache_stats(self) -> Any:
        """Hits and misses of the solution cache so far (None before the first solve)."""
        return self._solutions.stats if self._solutions is not None else None

    def profile(self) -> CalibrationProfile:
        """The calibration profile plans are made with now."""
        return self.calibrator.profile() if self.calibrator is not None else CalibrationProfile()

    def _planner_settings(self, profile: CalibrationProfile | None = None) -> Any:
        from hexrl.sched import CostModelSettings, PlannerSettings

        cost = CostModelSettings(calibration=self.profile() if profile is None else profile)
        return PlannerSettings(compute_baselines=False, cost=cost)  # baselines come later, in the background

    def snapshot(self, namespace: str, name: str, mem: JobMemory) -> Snapshot:
        """The cluster as this job sees it: other jobs' pods and plans hold their GPUs."""
        reserved: dict[str, int] = {}
        for plan in self.memories.plans_except(mem):
            for node, gpus in plan.gpus_per_node().items():
                reserved[node] = reserved.get(node, 0) + gpus
        version, nodes = self.store.nodes_versioned()
        return build_cluster(nodes, self.store.gpu_pods(), (namespace, name), self.settings, reserved,
                             base=self.cluster_base(version, nodes))

    def cluster_base(self, version: int, nodes: list[dict[str, Any]]) -> Snapshot:
        """`snapshot.cluster_base` of the store's nodes at `version`, rebuilt only when a node changed."""
        with self._lock:
            cached = self._base
        if cached is not None and cached[0] == version:
            return cached[1]
        base = cluster_base(nodes, self.settings)
        with self._lock:
            self._base = (version, base)
        return base

    # ------------------------------------------------------------------------------------ planner

    def _plan(self, spec: RLJobSpec, cluster: Cluster, profile: CalibrationProfile | None = None) -> Plan | Infeasible:
        t0 = time.perf_counter()
        try:
            if self._planner is not None:
                return self._planner(spec, cluster)
            from hexrl.sched import plan

            return plan(spec, cluster, self._planner_settings(profile), self.solutions())
        finally:
            metrics.PLAN_SOLVE_SECONDS.labels("plan").observe(time.perf_counter() - t0)

    def _replan(self, spec: RLJobSpec, cluster: Cluster, current: Plan, trainer_may_move: bool,
                profile: CalibrationProfile | None = None) -> Plan | Infeasible:
        """The least-change re-plan of `current`, or a fresh plan when no re-plan is feasible."""
        t0 = time.perf_counter()
        try:
            if self._replanner is not None:
                return self._replanner(spec, cluster, current, trainer_may_move=trainer_may_move)
            from hexrl.sched import replan_or_plan

            return replan_or_plan(spec, cluster, current, self._planner_settings(profile), self.solutions(),
                                  trainer_may_move=trainer_may_move)
        finally:
            metrics.PLAN_SOLVE_SECONDS.labels("replan").observe(time.perf_counter() - t0)

    # ------------------------------------------------------------------------------------ ledger

    def plan_and_commit(self, ref: render.JobRef, spec: RLJobSpec, mem: JobMemory) -> Commit:
        """Decide this job's plan and commit it to the ledger (mem.plan) without overlapping another's.

        Serial mode: the whole decision holds one lock. Concurrent mode: optimistic — plan against a
        snapshot, then, holding the ledger briefly, check the plan's GPUs per node against a fresh
        snapshot (other jobs may have committed meanwhile) and commit, or re-plan on a conflict."""
        if not self.concurrent:
            return self._plan_serial(ref, spec, mem)
        return self._plan_optimistic(ref, spec, mem)

    def _plan_serial(self, ref: render.JobRef, spec: RLJobSpec, mem: JobMemory) -> Commit:
        """One job plans at a time, each against the GPUs the plans before it committed."""
        self._planning_delta(+1)  # also while waiting for the lock: a job wants the planner
        try:
            with self._plan_lock:
                snap = self.snapshot(ref.namespace, ref.name, mem)
                decision = self._decide(spec, snap, mem)
                if decision.plan is not None:
                    mem.plan = decision.plan
                return Commit(snap, decision)
        finally:
            self._planning_delta(-1)

    def _plan_optimistic(self, ref: render.JobRef, spec: RLJobSpec, mem: JobMemory) -> Commit:
        """Plan without a lock, commit if the plan still fits; the last attempt holds the ledger throughout."""
        for attempt in range(OPTIMISTIC_ATTEMPTS + 1):
            last = attempt == OPTIMISTIC_ATTEMPTS
            # the last attempt holds the ledger throughout: nobody can commit in between, so it fits
            with self._ledger if last else contextlib.nullcontext():
                with self._ledger:
                    snap = self.snapshot(ref.namespace, ref.name, mem)
                self._planning_delta(+1)
                try:
                    decision = self._decide(spec, snap, mem)
                finally:
                    self._planning_delta(-1)
                plan = decision.plan
                with self._ledger:
                    if plan is None or plan is mem.plan or last or self._fits(ref, plan, mem):
                        if plan is not None:
                            mem.plan = plan
                        return Commit(snap, decision)
            self.conflicts += 1
            metrics.ERRORS.labels("PlanConflict").inc()
            log.info("job %s/%s: GPUs of the new plan were taken by another job meanwhile; re-planning",
                     ref.namespace, ref.name)
            mem.basis = None  # the snapshot changed under us: decide again
        raise AssertionError("unreachable: the last attempt always commits")

    def _fits(self, ref: render.JobRef, plan: Plan, mem: JobMemory) -> bool:
        """Every node of `plan` still exists, is not going away and has the GPUs it needs, given the
        plans other jobs committed meanwhile (call holding the ledger)."""
        fresh = self.snapshot(ref.namespace, ref.name, mem).cluster
        free = {n.name: n.gpus_free for n in fresh.nodes}
        return all(free.get(node, 0) >= gpus for node, gpus in plan.gpus_per_node().items())

    def _planning_delta(self, d: int) -> None:
        with self._lock:
            self._planning += d
            self._last_planned = time.monotonic()

    def _planner_idle(self) -> bool:
        """No job is planning, and none did for `BASELINE_QUIET` s (passes of a burst come in waves)."""
        with self._lock:
            return self._planning == 0 and time.monotonic() - self._last_planned >= BASELINE_QUIET

    # ------------------------------------------------------------------------------------ scaling

    def scale(
        self, ref: render.JobRef, mem: JobMemory, spec: RLJobSpec, direction: str, state: scaling.ScaleState
    ) -> tuple[Plan | None, scaling.ScaleState]:
        """(the plan with one rollout replica more or less, or None; the scaling state after it), committed
        to mem.plan under the ledger — a greedy step, no solver."""
        assert mem.plan is not None
        with self._ledger:
            new_plan: Plan | None = None
            snap = self.snapshot(ref.namespace, ref.name, mem)
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

    # ------------------------------------------------------------------------------------ baselines

    def with_baselines(self, ref: render.JobRef, spec: RLJobSpec, plan: Plan, snap: Snapshot, mem: JobMemory) -> Plan:
        """The plan with its homogeneous baselines once the background thread has them; meanwhile the
        plan as is (children do not wait for an explanation), and the computation is submitted once."""
        if plan.baselines or not self.settings.planning.homogeneous_baselines or self._planner is not None:
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
        """Keep the current plan, repeat the last no, or ask the planner (see the module docstring)."""
        current = mem.plan
        profile = self.profile()
        if current is not None and mem.plan_profile is None:
            mem.plan_profile = profile  # a plan read back after a restart: assume the profile in force made it
        skey = spec_key(spec)
        lost = 0
        if current is not None:
            present = {n.name for n in snap.cluster.nodes if not n.going_away}
            lost = len(plan_nodes(current) - present)
        spec_same = mem.stored.spec_key == skey
        why = replan_reason(mem.basis, snap.cluster, current)
        if current is not None and spec_same and not why:
            if mem.calibration_news:
                return self._recalibrated(spec, snap, mem, current, profile)
            return Decision(current, None, None, 0)
        if current is None and mem.rejection is not None and mem.rejection[0] == skey and not why:
            return Decision(None, mem.rejection[1], None, 0)  # nothing that could help changed since the no
        if current is not None:
            log.info("job %s: re-planning: %s", "/".join(mem.key or ()), why if spec_same else "the spec changed")
        result, trigger = self._ask_planner(spec, snap, current, not spec_same, profile)
        mem.basis = plan_basis(snap.cluster)
        if mem.calibration_news:  # this answer already uses what was learned; say so
            learned = "; ".join(self._learned(gpu, phase, f) for gpu, phase, _, f in mem.calibration_news)
            mem.calibration_event = f"Calibrated: {learned}; taken into this re-plan"
        mem.calibration_basis, mem.calibration_news = profile, ()
        if isinstance(result, Infeasible):
            return self._infeasible(result, current, mem, skey, trigger, lost)
        mem.rejected_change = None
        mem.rejection = None
        if current is not None and placement(result) == placement(current):
            return Decision(current, None, None, lost)  # same placement: keep the deployed plan (no churn, no event)
        self._adopt(mem, result, current, profile)
        return Decision(result, None, trigger, lost)

    @staticmethod
    def _adopt(mem: JobMemory, result: Plan, current: Plan | None, profile: CalibrationProfile) -> None:
        """Bookkeeping of a new plan: the profile it was made under; live scaling starts again from it."""
        mem.plan_profile = profile
        if current is not None and result != current and mem.stored.scale is not None and mem.stored.scale.extra:
            # the new plan re-sizes rollout from scratch; live scaling starts again from it
            mem.stored.scale = scaling.ScaleState()
            mem.scale = None

    def _recalibrated(
        self, spec: RLJobSpec, snap: Snapshot, mem: JobMemory, current: Plan, profile: CalibrationProfile
    ) -> Decision:
        """A factor the job depends on moved: re-plan if the least-change re-plan (trainer kept) beats the current
        plan, re-scored under the new profile, by more than the margin; say what was learned either way."""
        from hexrl.sched import CostModelSettings
        from hexrl.sched.onlinecalibration import replan_gain, rescored_tokens_per_second

        news, mem.calibration_news, mem.calibration_basis = mem.calibration_news, (), profile
        old = CostModelSettings(calibration=mem.plan_profile or CalibrationProfile())
        now = rescored_tokens_per_second(spec, snap.cluster, current, old, CostModelSettings(calibration=profile))
        result = self._replan(spec, snap.cluster, current, trainer_may_move=False, profile=profile)
        gain = replan_gain(spec, now, current.cost_per_hour, result) if isinstance(result, Plan) else -1.0
        learned = "; ".join(self._learned(gpu, phase, new) for gpu, phase, _, new in news)
        if isinstance(result, Plan) and placement(result) != placement(current) and gain > self.settings.calibration.replan_margin:
            self._adopt(mem, result, current, profile)
            mem.calibration_event = (f"Calibrated: {learned}; {_roles_changed(current, result)} re-planned (predicted "
                                     f"{now:,.1f} → {result.tokens_per_second:,.1f} tokens/s)")
            return Decision(result, None, Trigger.CALIBRATION, 0)
        better = f"; the best re-plan would gain {gain:+.0%}" if isinstance(result, Plan) and gain > -1.0 else ""
        mem.calibration_event = f"Calibrated: {learned}; plan unchanged (predicted {now:,.1f} tokens/s{better})"
        return Decision(current, None, None, 0)

    def _learned(self, gpu: str, phase: str, factor: float) -> str:
        """'L4 decode measured 0.012× the catalog (confidence 0.93)', or '... pinned at 0.5× ...'."""
        c = self.calibrator
        if c is not None and c.is_pinned(gpu, phase):
            return f"{gpu} {phase} pinned at {factor:.3g}× the catalog"
        confidence = c.confidence(gpu, phase) if c is not None else 0.0
        return f"{gpu} {phase} measured {factor:.3g}× the catalog (confidence {confidence:.2f})"

    def _ask_planner(
        self, spec: RLJobSpec, snap: Snapshot, current: Plan | None, spec_changed: bool, profile: CalibrationProfile
    ) -> tuple[Plan | Infeasible, Trigger]:
        """(the planner's answer, trigger): a first plan, or a re-plan of the current one (a fresh plan when
        the re-plan is infeasible)."""
        if current is None:
            return self._plan(spec, snap.cluster, profile), Trigger.FIRST
        trigger = Trigger.SPEC if spec_changed else Trigger.CLUSTER
        # a node event never restarts a trainer that survived it (replan keeps it when intact)
        return self._replan(spec, snap.cluster, current, trainer_may_move=trigger == Trigger.SPEC,
                            profile=profile), trigger

    @staticmethod
    def _infeasible(
        result: Infeasible, current: Plan | None, mem: JobMemory, skey: str, trigger: Trigger, lost: int
    ) -> Decision:
        """Remember the planner's no; a running job keeps its last feasible plan (reported as rejected)."""
        metrics.ERRORS.labels(result.reason).inc()
        mem.rejection = (skey, result)
        if current is not None:
            # keep running the last feasible plan (a rejected change must not kill a running job)
            mem.rejected_change = result
            return Decision(current, None, None, lost)
        return Decision(None, result, trigger, lost)


def _roles_changed(old: Plan, new: Plan) -> str:
    """'trainer and rollout', 'trainer' or 'rollout': what a new plan moves (where and how, not its predictions)."""
    trainer_moved = replace(old.trainer, tokens_per_second=0.0) != replace(new.trainer, tokens_per_second=0.0)
    rollout_moved = [replace(r, tokens_per_second=0.0) for r in old.replicas] != [
        replace(r, tokens_per_second=0.0) for r in new.replicas]
    roles = [role for role, moved in (("trainer", trainer_moved), ("rollout", rollout_moved)) if moved]
    return " and ".join(roles) or "rollout"
