"""The status part of a reconcile pass: health of the children → conditions, Events, one status write.

`StatusWriter` reports on one job at a time; its interface is `announce` (the Planned/Replanned Event of a
new plan), `report` (after the apply part) and `reject` (when there is no plan to deploy). It sees the
job's pods through the shared `PodView` and posts Events through the shared `Announce`. It

- counts ready trainer ranks and rollout replicas of the deployed plan (`_health`), keeping Degraded
  True from a loss until the replacements are ready, and finds what keeps pods from starting or serving
  (`podhealth`) and whether the coordinator cannot load the dataset (its progress report);
- builds the new status (Planned, Ready, Degraded, StalenessWithinBound, plan summary, progress) and
  writes it only when it differs from the stored one — one write per pass at most;
- posts the Events a user wants to see (Planned, Replanned, Calibrated, Rejected...), each rejection once per
  generation and message, a pod problem or dataset error once per cause (reason and pod);
- shows the plan's prediction under the cluster's calibration next to the catalog's and to what the
  coordinator measures (`status.calibration`);
- exports the per-job gauges.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from hexrl.api import reasons
from hexrl.api.evalspec import EvalSummary
from hexrl.api.models import API_VERSION, KIND, RLJobSpec
from hexrl.k8s import conditions as cond
from hexrl.k8s import metrics, podhealth, render
from hexrl.k8s.announcer import Announce
from hexrl.k8s.jobmemory import Applied, JobMemory, PassResult, Planned, Trigger, epoch_of
from hexrl.k8s.kubeapi import KubeApi
from hexrl.k8s.podview import PodView
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.store import Store
from hexrl.sched.types import Plan

log = logging.getLogger(__name__)


class StatusWriter:
    """Health, conditions, Events, the one status write and the per-job gauges (see the module docstring)."""

    def __init__(
        self, api: KubeApi, store: Store, settings: OperatorSettings, pods: PodView, announce: Announce
    ) -> None:
        self.api = api
        self.store = store
        self.settings = settings
        self.pods = pods
        self.announce = announce
        self.calibrator: Any = None
        """The operator's `calibrator.Calibrator` (confidences and pins for status.calibration), if any."""

    def report(
        self, rljob: dict[str, Any], ref: render.JobRef, spec: RLJobSpec, p: Planned, applied: Applied,
        mem: JobMemory, out: PassResult,
    ) -> None:
        """The pass's one status write (if anything changed) and the job's gauges."""
        health, out.recheck_seconds = self._health(ref, spec, p.plan, mem, applied.trainer_lost, applied.replaced)
        if mem.calibration_event is not None:
            self.announce.event(rljob, "Normal", reasons.CALIBRATED, mem.calibration_event)
            mem.calibration_message, mem.calibration_event = mem.calibration_event, None
        new_status = self._status(rljob, spec, p.plan, applied.summary, health, p.lost, mem)
        if self.settings.calibration.enabled:
            new_status["calibration"] = self._calibration(spec, p, mem)
        out.status_written = self._write_status(rljob, new_status)
        self._announce_blocker(rljob, mem, health)
        self._export(ref, p.plan, new_status)

    def announce_plan(self, rljob: dict[str, Any], p: Planned) -> None:
        """A Planned or Replanned Event for a new plan, and the re-plan counter."""
        if p.trigger is Trigger.FIRST:
            self.announce.event(rljob, "Normal", reasons.PLANNED, self.announce.sentence(p.plan, "planned"))
        elif p.trigger is not None and p.previous is not None and p.plan != p.previous:
            why = f"after losing {p.lost} node(s)" if p.lost else {
                Trigger.SPEC: "after a spec change", Trigger.CALIBRATION: "after calibration"}.get(
                p.trigger, "after a cluster change")
            self.announce.event(rljob, "Normal", reasons.REPLANNED, self.announce.sentence(p.plan, f"re-planned {why}"))
        if p.trigger is not None:
            metrics.REPLANS.labels(p.trigger.value).inc()

    def _health(
        self, ref: render.JobRef, spec: RLJobSpec, plan: Plan, mem: JobMemory, trainer_lost: bool, replaced: int
    ) -> tuple[cond.Health, float | None]:
        """The job's health, and when to look again if a not-ready pod may cross the grace period."""
        pods = self.pods.pods(ref, mem)
        coordinator = [p for p in self.store.job_pods(ref.namespace, ref.name) if p["role"] == "coordinator"
                       and not p["deleting"]]
        tag = render.trainer_epoch_tag(plan, mem.stored.epoch)
        trainer = [p for p in pods if p["role"] == "trainer" and (p.get("epoch") or epoch_of(p["name"], ref)) == tag]
        wanted = {s.slot for s in render.rollout_slots(plan)}
        rollout = [p for p in pods if p["role"] == "rollout" and p["slot"] in wanted]
        trainer_ready = sum(1 for p in trainer if p["ready"])
        trainer_desired = 0 if spec.suspend else len(plan.trainer.nodes)
        rollout_ready = sum(1 for p in rollout if p["ready"])
        rollout_desired = 0 if spec.suspend else len(wanted)
        # Degraded holds from the loss until the replacements are ready, not just for the pass that saw it
        mem.trainer_recovering = (trainer_lost or mem.trainer_recovering) and trainer_ready < trainer_desired
        mem.rollout_recovering = (mem.rollout_recovering + replaced) if rollout_ready < rollout_desired else 0
        deployed = [] if spec.suspend else coordinator + trainer + rollout
        now, grace = datetime.now(UTC), self.settings.watching.not_ready_grace_seconds
        health = cond.Health(
            planned=True,
            trainer_ready=trainer_ready,
            trainer_desired=trainer_desired,
            rollout_ready=rollout_ready,
            rollout_desired=rollout_desired,
            coordinator_ready=spec.suspend or any(p["ready"] for p in coordinator),
            trainer_lost=mem.trainer_recovering,
            rollout_replaced=mem.rollout_recovering,
            suspended=spec.suspend,
            problems=tuple(podhealth.job_problems(deployed, now, grace)),
            data_error=None if spec.suspend else (mem.progress or {}).get("dataError") or None,
        )
        return health, podhealth.next_not_ready_check(deployed, now, grace)

    def _announce_blocker(self, rljob: dict[str, Any], mem: JobMemory, h: cond.Health) -> None:
        """A Warning Event naming the pod (or the dataset) and the cause when the cause changes — not every
        pass, and not again when the same cause moves to another pod: the job's pods appear over several
        passes (the coordinator's through its ReplicaSet), so the first-ranked pod with one missing PVC
        changes while the problem stays the same."""
        blocker = h.blocker()
        key = None
        if blocker is not None:
            first = h.problems[0] if h.problems and not h.data_error else None
            # the kind and Kubernetes' word for it (Unschedulable, ImagePullBackOff, …): its detail moves too
            # ("PVC not found" → "PVC unbound" while the claim binds) without being news
            key = f"{blocker[0]}|{first.cause}" if first is not None else f"{blocker[0]}|dataset"
        if key != mem.blocker_key and blocker is not None:
            self.announce.event(rljob, "Warning", *blocker)
        mem.blocker_key = key

    def _status(
        self, rljob: dict[str, Any], spec: RLJobSpec, plan: Plan, summary: dict[str, Any], h: cond.Health,
        lost: int, mem: JobMemory,
    ) -> dict[str, Any]:
        gen = rljob["metadata"].get("generation")
        conds = self._conditions(rljob, spec, plan, summary, h, lost, mem)
        progress = mem.progress or {}
        new = {
            "phase": cond.phase_for(h),
            "observedGeneration": gen,
            "conditions": conds,
            "plan": summary,
            "gpus": plan.gpus,
            "tokensPerSecond": round(float(progress.get("tokensPerSecond") or plan.tokens_per_second), 1),
            "costPerHour": round(plan.cost_per_hour, 2),
            "staleness": round(float(progress.get("observedStaleness") or 0.0), 2) if progress else None,
            "message": self.announce.sentence(plan, "running"),
        }
        if progress:
            new["progress"] = {k: progress[k] for k in
                               ("policyVersion", "trainedSteps", "observedStaleness", "tokensPerSecond",
                                "bufferDepth", "trainerIdleFraction", "datasetExhausted") if k in progress}
            if progress.get("meanReward") is not None:
                new["progress"]["meanReward"] = round(float(progress["meanReward"]), 3)
            evaluation = _evaluation_status(progress.get("evaluation"))
            if evaluation is not None:
                new["progress"]["evaluation"] = evaluation
        return new

    def _calibration(self, spec: RLJobSpec, p: Planned, mem: JobMemory) -> dict[str, Any]:
        """status.calibration: the plan's throughput under the calibration it was last checked against and from
        the catalog alone, what the coordinator measures, and the factors of the plan's GPU types."""
        from hexrl.sched import CostModelSettings
        from hexrl.sched.calibration import CalibrationProfile
        from hexrl.sched.onlinecalibration import rescored_tokens_per_second

        made = CostModelSettings(calibration=mem.plan_profile or CalibrationProfile())
        profile = mem.calibration_basis or mem.plan_profile or CalibrationProfile()
        cluster = p.snap.cluster
        predicted = rescored_tokens_per_second(spec, cluster, p.plan, made, CostModelSettings(calibration=profile))
        catalog = rescored_tokens_per_second(spec, cluster, p.plan, made, CostModelSettings())
        observed = float((mem.progress or {}).get("tokensPerSecond") or 0.0)
        used = {r.gpu for r in p.plan.replicas} | {p.plan.trainer.gpu}
        c = self.calibrator
        factors = [{"gpu": e.gpu, "phase": e.phase, "factor": float(f"{e.factor:.4g}"),  # 4 significant: 1e-4 exists
                    "confidence": round(c.confidence(e.gpu, e.phase), 3) if c is not None else 0.0,
                    "pinned": bool(c is not None and c.is_pinned(e.gpu, e.phase))}
                   for e in profile.entries if e.gpu in used]
        out: dict[str, Any] = {"predictedTokensPerSecond": round(predicted, 1),
                               "catalogTokensPerSecond": round(catalog, 1), "factors": factors,
                               "message": mem.calibration_message}
        if observed > 0:
            out["observedTokensPerSecond"] = round(observed, 1)
            if predicted > 0:
                out["predictionError"] = round(observed / predicted - 1.0, 3)
        return out

    def _conditions(
        self, rljob: dict[str, Any], spec: RLJobSpec, plan: Plan, summary: dict[str, Any], h: cond.Health,
        lost: int, mem: JobMemory,
    ) -> list[dict[str, Any]]:
        """Planned (or rejected while the previous plan runs), Ready, Degraded, StalenessWithinBound."""
        old = rljob.get("status") or {}
        gen = rljob["metadata"].get("generation")
        now = cond.now_iso()
        conds = list(old.get("conditions") or [])
        rejected = mem.rejected_change
        if rejected is not None:
            conds = cond.set_condition(conds, reasons.PLANNED, "False", rejected.reason,
                                       rejected.message + " (still running the previous plan)", gen, now)
            self.announce.event_once(rljob, mem, "Warning", reasons.REJECTED, rejected.message)
        else:
            conds = cond.set_condition(
                conds, reasons.PLANNED, "True",
                reasons.REPLANNED if old.get("plan") and _plan_changed(old.get("plan"), summary) else
                (_cond_reason(conds, reasons.PLANNED, reasons.PLAN_FOUND)),
                self.announce.sentence(plan, "plan"), gen, now)
        conds = cond.set_condition(conds, reasons.READY, *cond.ready_condition(h), gen, now)
        conds = cond.set_condition(conds, reasons.DEGRADED, *cond.degraded_condition(h, lost), gen, now)
        eta = spec.staleness.max_policy_lag
        return cond.set_condition(conds, reasons.STALENESS_WITHIN_BOUND,
                                  *cond.staleness_condition(mem.progress, eta), gen, now)

    def _write_status(self, rljob: dict[str, Any], new: dict[str, Any]) -> bool:
        if cond.status_equal(rljob.get("status"), new):
            return False
        m = rljob["metadata"]
        self.api.patch_status(API_VERSION, KIND, m["name"], m["namespace"], new)
        return True

    def reject(self, rljob: dict[str, Any], mem: JobMemory, reason: str, message: str) -> None:
        """Planned=False with the planner's reason, one Warning Event per distinct message, no children."""
        old = rljob.get("status") or {}
        gen = rljob["metadata"].get("generation")
        now = cond.now_iso()
        conds = cond.set_condition(list(old.get("conditions") or []), reasons.PLANNED, "False", reason, message,
                                   gen, now)
        conds = cond.set_condition(conds, reasons.READY, "False", reasons.CHILDREN_PENDING, "no plan", gen, now)
        new = {"phase": "Pending", "observedGeneration": gen, "conditions": conds, "message": message,
               "gpus": 0, "costPerHour": 0.0, "tokensPerSecond": 0.0}
        self._write_status(rljob, new)
        self.announce.event_once(rljob, mem, "Warning", reasons.REJECTED, f"{reason}: {message}")
        m = rljob["metadata"]
        for g in (metrics.PLANNED_TOKENS, metrics.PLANNED_COST, metrics.PLANNED_GPUS):
            g.labels(m["namespace"], m["name"]).set(0)

    @staticmethod
    def _export(ref: render.JobRef, plan: Plan, status: dict[str, Any]) -> None:
        metrics.PLANNED_TOKENS.labels(ref.namespace, ref.name).set(plan.tokens_per_second)
        metrics.PLANNED_COST.labels(ref.namespace, ref.name).set(plan.cost_per_hour)
        metrics.PLANNED_GPUS.labels(ref.namespace, ref.name).set(plan.gpus)
        if status.get("staleness") is not None:
            metrics.OBSERVED_STALENESS.labels(ref.namespace, ref.name).set(status["staleness"])


def _plan_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    if not old:
        return False
    keys = ("trainer", "rollout", "gpus")
    return any(old.get(k) != new.get(k) for k in keys)


def _cond_reason(conds: list[dict[str, Any]], ctype: str, default: str) -> str:
    c = cond.get_condition(conds, ctype)
    if c and c.get("status") == "True":
        return str(c.get("reason") or default)
    return default


def _evaluation_status(reported: Any) -> dict[str, Any] | None:
    """The coordinator's latest evaluation as `status.progress.evaluation` (numbers to 3 decimals, so the
    status is not rewritten for noise), or None when there is none or it does not parse (a coordinator of
    another version must not break the status write)."""
    if not isinstance(reported, dict):
        return None
    try:
        summary = EvalSummary.model_validate(reported)
    except ValueError:
        log.warning("ignoring an unreadable evaluation in the coordinator's progress: %r", reported)
        return None
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in summary.wire().items()}
