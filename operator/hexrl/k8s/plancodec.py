"""Plan ↔ JSON: the operator stores the plan it acted on in the job's ConfigMap and reads it back after a
restart, so re-planning starts from what is really deployed (least change) instead of from scratch.

Pure and lossless for the fields of `hexrl.sched.types.Plan` (tuples are written as lists).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from hexrl.sched.types import Baseline, Change, Plan, RolloutReplica, TrainerAssignment


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return asdict(plan)


def plan_from_dict(data: dict[str, Any]) -> Plan:
    """Inverse of `plan_to_dict`; raises ValueError (naming the problem) on a malformed document."""
    try:
        t = dict(data["trainer"])
        trainer = TrainerAssignment(
            **{**t, "nodes": tuple(t["nodes"]), "gpus_per_node": tuple(t["gpus_per_node"])}
        )
        replicas = tuple(RolloutReplica(**{**r, "nodes": tuple(r["nodes"])}) for r in data["replicas"])
        rest = {k: v for k, v in data.items() if k not in ("trainer", "replicas", "baselines", "changes", "notes")}
        return Plan(
            trainer=trainer,
            replicas=replicas,
            baselines=tuple(Baseline(**b) for b in data.get("baselines", ())),
            changes=tuple(Change(**c) for c in data.get("changes", ())),
            notes=tuple(data.get("notes", ())),
            **rest,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"stored plan is malformed: {exc}") from exc


def dumps(plan: Plan) -> str:
    return json.dumps(plan_to_dict(plan), sort_keys=True, separators=(",", ":"))


def loads(text: str) -> Plan:
    try:
        return plan_from_dict(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ValueError(f"stored plan is not JSON: {exc}") from exc
