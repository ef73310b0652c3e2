"""What an RLJob's status says: conditions (metav1.Condition semantics), phase and printer-column fields.
Pure functions; `statuswriter.StatusWriter` writes the result.

A condition's `lastTransitionTime` changes only when its `status` flips; reason, message and
observedGeneration are refreshed in place. The reconciler computes the whole new status, compares it with
the stored one and writes it once (or not at all when nothing changed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hexrl.api import reasons
from hexrl.api.models import Phase
from hexrl.k8s.podhealth import PodProblem


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def set_condition(
    conditions: list[dict[str, Any]], ctype: str, status: str, reason: str, message: str,
    generation: int | None, now: str,
) -> list[dict[str, Any]]:
    """A new list with condition `ctype` set; its transition time is kept unless the status flips."""
    out = []
    found = False
    for c in conditions:
        if c.get("type") != ctype:
            out.append(c)
            continue
        found = True
        flipped = c.get("status") != status
        out.append(_condition(ctype, status, reason, message, generation,
                              now if flipped else c.get("lastTransitionTime") or now))
    if not found:
        out.append(_condition(ctype, status, reason, message, generation, now))
    order = {t: i for i, t in enumerate(
        (reasons.PLANNED, reasons.READY, reasons.DEGRADED, reasons.STALENESS_WITHIN_BOUND))}
    return sorted(out, key=lambda c: order.get(c.get("type", ""), 99))


def _condition(ctype: str, status: str, reason: str, message: str, gen: int | None, ltt: str) -> dict[str, Any]:
    c: dict[str, Any] = {"type": ctype, "status": status, "reason": reason, "message": message,
                         "lastTransitionTime": ltt}
    if gen is not None:
        c["observedGeneration"] = gen
    return c


def get_condition(conditions: list[dict[str, Any]], ctype: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == ctype), None)


@dataclass(frozen=True)
class Health:
    """What the reconciler observed about the job's pods this pass."""

    planned: bool
    trainer_ready: int = 0
    trainer_desired: int = 0
    rollout_ready: int = 0
    rollout_desired: int = 0
    coordinator_ready: bool = False
    trainer_lost: bool = False
    rollout_replaced: int = 0
    suspended: bool = False
    problems: tuple[PodProblem, ...] = ()
    """Pods of the deployed plan that cannot start or serve, the one to show first at the front."""
    data_error: str | None = None
    """The coordinator's sentence when it cannot load the job's dataset (from /v1/progress)."""

    def blocker(self) -> tuple[str, str] | None:
        """(reason, one line) of what most plausibly keeps the job from running, or None: the dataset
        (the coordinator said so), else the first pod problem."""
        if self.data_error:
            return reasons.DATASET_UNAVAILABLE, f"coordinator: {self.data_error}; fix spec.dataset and re-apply"
        if self.problems:
            return self.problems[0].kind, self.problems[0].line()
        return None


def staleness_condition(progress: dict[str, Any] | None, eta: int) -> tuple[str, str, str]:
    """(status, reason, message) of StalenessWithinBound from the coordinator's observed staleness.

    Within bound when observed ≤ η; "near" (still True) from 85 % of η; False above η (should never
    happen: the coordinator's gate prevents it, so False means the gate is broken or was loosened).
    """
    if not progress or "observedStaleness" not in progress:
        return "Unknown", reasons.NO_PROGRESS_YET, "no progress report from the coordinator yet"
    s = float(progress.get("observedStaleness") or 0.0)
    if s > eta:
        return "False", reasons.EXCEEDED_BOUND, f"observed policy lag {s:.2f} exceeds η={eta}"
    if eta > 0 and s >= 0.85 * eta:
        return "True", reasons.NEAR_BOUND, f"observed policy lag {s:.2f} is close to η={eta}"
    return "True", reasons.WITHIN_BOUND, f"observed policy lag {s:.2f} ≤ η={eta}"


def phase_for(h: Health) -> str:
    if not h.planned:
        return Phase.pending.value
    if h.suspended:
        return Phase.pending.value
    if h.trainer_lost:
        return Phase.degraded.value
    all_ready = (
        h.coordinator_ready and h.trainer_ready == h.trainer_desired and h.rollout_ready >= h.rollout_desired
    )
    if all_ready:
        return Phase.running.value
    if h.trainer_ready == h.trainer_desired and h.trainer_desired > 0 and h.rollout_ready > 0:
        # the trainer runs and some rollout replicas generate: progress continues while others are replaced
        return Phase.degraded.value if h.rollout_replaced else Phase.running.value
    return Phase.planning.value


def ready_condition(h: Health) -> tuple[str, str, str]:
    if not h.planned:
        return "False", reasons.CHILDREN_PENDING, "no plan"
    missing = []
    if not h.coordinator_ready:
        missing.append("coordinator")
    if h.trainer_ready < h.trainer_desired:
        missing.append(f"trainer {h.trainer_ready}/{h.trainer_desired}")
    if h.rollout_ready < h.rollout_desired:
        missing.append(f"rollout {h.rollout_ready}/{h.rollout_desired}")
    blocker = h.blocker()
    if blocker is not None:
        reason, line = blocker
        more = len(h.problems) - (0 if h.data_error else 1)
        tail = [f"{more} more pod(s) with problems"] if more > 0 else []
        tail += ["waiting for " + ", ".join(missing)] if missing else []
        return "False", reason, line + (f" ({'; '.join(tail)})" if tail else "")
    if missing:
        return "False", reasons.CHILDREN_PENDING, "waiting for " + ", ".join(missing)
    return "True", reasons.CHILDREN_READY, (
        f"coordinator, {h.trainer_desired} trainer pod(s) and {h.rollout_desired} rollout pod(s) ready"
    )


def degraded_condition(h: Health, lost_nodes: int) -> tuple[str, str, str]:
    if h.trainer_lost:
        return "True", reasons.TRAINER_LOST, "a trainer rank was lost; the group restarts from the last checkpoint"
    if h.rollout_replaced:
        return "True", reasons.ROLLOUT_PREEMPTED, (
            f"replacing {h.rollout_replaced} rollout pod(s)" + (f" after losing {lost_nodes} node(s)" if lost_nodes else "")
        )
    return "False", reasons.CHILDREN_READY, "no lost or replaced pods"


def status_equal(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Compare only the fields this operator owns (kopf keeps its own keys in status too)."""
    old = old or {}
    return all(old.get(k) == v for k, v in new.items())


def summarize(plan: Any) -> dict[str, Any]:
    """`status.plan` from a `sched.Plan` (wire form of `hexrl.api.models.PlanSummary`)."""
    from hexrl.api.models import PlanSummary, RolloutGroup, TrainerPlacement

    t = plan.trainer
    return PlanSummary(
        trainer=TrainerPlacement(
            gpu=t.gpu, pool=t.pool, gpus=t.gpus, data_parallel=t.data_parallel, tensor_parallel=t.tensor_parallel,
            pipeline_parallel=t.pipeline_parallel, fsdp=t.fsdp, nodes=list(t.nodes),
            tokens_per_second=round(t.tokens_per_second, 1),
        ),
        rollout=[
            RolloutGroup(gpu=g.gpu, pool=g.pool, replicas=g.replicas, gpus_per_replica=g.gpus_per_replica,
                         spot=g.spot, nodes=list(g.nodes), tokens_per_second=round(g.tokens_per_second, 1))
            for g in plan.rollout_groups()
        ],
        gpus=plan.gpus,
        predicted_tokens_per_second=round(plan.tokens_per_second, 1),
        cost_per_hour=round(plan.cost_per_hour, 2),
        solve_seconds=round(plan.solve_seconds, 4),
        bottleneck=plan.bottleneck,
        staleness_predicted=round(plan.staleness_predicted, 3),
    ).wire()
