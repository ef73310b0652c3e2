"""What the operator tells a user about a job: Kubernetes Events, and the plan's summary and sentence.

`Announcer` is the one small interface the reconciler's parts share for this: the apply part posts
TrainerLost, the status part Planned/Replanned/Rejected and pod problems, and both put the same plan
summary into the ConfigMap and the status. An Event is informational, so posting one never fails a pass.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from hexrl.api.models import API_VERSION, KIND
from hexrl.k8s import conditions as cond
from hexrl.k8s.jobmemory import JobMemory
from hexrl.k8s.kubeapi import ApiError, KubeApi
from hexrl.sched.types import Plan

log = logging.getLogger(__name__)

EventType = str
"""Kubernetes' Event type: "Normal" or "Warning"."""


class Announce(Protocol):
    """What the parts of a pass need to tell the user (fakes in unit tests record the calls)."""

    def event(self, rljob: dict[str, Any], etype: EventType, reason: str, message: str) -> None: ...

    def event_once(self, rljob: dict[str, Any], mem: JobMemory, etype: EventType, reason: str, message: str) -> None: ...

    def summary(self, plan: Plan) -> dict[str, Any]: ...

    def sentence(self, plan: Plan, verb: str) -> str: ...


class Announcer:
    """Posts Events about RLJobs through the API and words plans (see the module docstring)."""

    def __init__(self, api: KubeApi, field_manager: str) -> None:
        self.api = api
        self.field_manager = field_manager
        """Our name as the Events' reporting instance (the server-side-apply field manager)."""

    def event_once(self, rljob: dict[str, Any], mem: JobMemory, etype: EventType, reason: str, message: str) -> None:
        """Post an Event unless the same reason and message were posted for this generation already."""
        key = f"{rljob['metadata'].get('generation')}|{reason}|{message}"
        if key in mem.events_sent:
            return
        mem.events_sent.add(key)
        self.event(rljob, etype, reason, message)

    def event(self, rljob: dict[str, Any], etype: EventType, reason: str, message: str) -> None:
        """Post one Event about `job`; a refusal is logged, never raised."""
        m = rljob["metadata"]
        try:
            self.api.create(self._event_body(m, etype, reason, message))
        except ApiError as exc:
            log.warning("could not post event %s for %s/%s: %s", reason, m["namespace"], m["name"], exc)

    def _event_body(self, m: dict[str, Any], etype: EventType, reason: str, message: str) -> dict[str, Any]:
        now = cond.now_iso()
        return {
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
            "reportingInstance": self.field_manager,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }

    @staticmethod
    def summary(plan: Plan) -> dict[str, Any]:
        """`status.plan` (and the ConfigMap's copy) of a plan."""
        from hexrl.sched import plan_summary  # the planner's package loads the solver: only when planning

        return plan_summary(plan).wire()

    @staticmethod
    def sentence(plan: Plan, verb: str) -> str:
        """One line a user reads in an Event or the status message: `<verb>: trainer …; rollout …; …`."""
        groups = ", ".join(f"{g.replicas}×{g.gpus_per_replica} {g.gpu} on {g.pool}" for g in plan.rollout_groups())
        t = plan.trainer
        return (
            f"{verb}: trainer {t.gpus}×{t.gpu} on {t.pool}; rollout {groups or 'none'}; "
            f"{plan.tokens_per_second:.0f} tokens/s predicted at ${plan.cost_per_hour:.2f}/h "
            f"(bottleneck: {plan.bottleneck})"
        )
