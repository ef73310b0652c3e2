"""What the reconciler remembers about each job and the typed data its parts hand each other.

- `JobMemory`: one job's memory between passes (its plan, what is stored in its ConfigMap as
  `StoredState`, pods created or deleted but not yet seen by the watch, ...), and `JobMemories`, the
  registry of them all;
- `Planned` (planning → apply → status), `Applied` (apply → status) and `PassResult` (what a pass did);
- `Trigger`: why the planner was asked (None when it was not);
- keys derived from a spec, a plan or a pod name.

Pure: no API calls. The parts of a pass (`planning`, `applier`, `statuswriter`) read and update one
job's memory under its lock.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from hexrl.api.models import RLJobSpec
from hexrl.k8s import render, scaling
from hexrl.k8s.replanpolicy import PlanBasis
from hexrl.k8s.snapshot import Snapshot
from hexrl.k8s.store import JobKey
from hexrl.sched.calibration import CalibrationProfile
from hexrl.sched.types import Infeasible, Plan

EXPECT_TTL = 60.0
"""s during which a pod we created counts as existing even though the watch has not shown it yet."""

Pod = dict[str, Any]
"""A pod as the store shows it (`snapshot.pod_view`)."""

Outcome = Literal["ok", "infeasible", "invalid", "error"]
"""The label of hexrl_operator_reconciles_total."""


class Trigger(StrEnum):
    """Why a pass asked the planner (the label of hexrl_operator_replans_total)."""

    FIRST = "first"
    """The job had no plan yet."""
    SPEC = "spec"
    """The part of the spec the planner reads changed."""
    CLUSTER = "cluster"
    """The cluster changed in a way that may break or improve the plan (`replanpolicy.replan_reason`)."""
    CALIBRATION = "calibration"
    """Online calibration moved a factor the plan depends on and the best re-plan beats the plan by more than
    the margin (`settings.CalibrationSettings.replan_margin`)."""


@dataclass
class StoredState:
    """The operator's per-job state kept in the job's ConfigMap (`state.json`) beside the plan, so a
    restarted operator resumes from it. Absent fields are not written (the ConfigMap stays as it was)."""

    spec_key: str | None = None
    """`spec_key` of the spec the stored plan was made for (a different one means: re-plan)."""
    trainer_epoch: int | None = None
    """Incarnation of the trainer gang (None: never restarted); each loss of a rank starts the next."""
    scale: scaling.ScaleState | None = None
    """Live rollout scaling (extra replicas, last step), without the poll counters."""
    unknown: dict[str, Any] = field(default_factory=dict)
    """Keys this version does not know, kept as read so they survive a round trip."""

    @property
    def epoch(self) -> int:
        """The trainer gang's current epoch (0 before its first restart)."""
        return self.trainer_epoch or 0

    def wire(self) -> dict[str, Any]:
        """The JSON object stored in the ConfigMap."""
        out = dict(self.unknown)
        if self.spec_key is not None:
            out["specKey"] = self.spec_key
        if self.trainer_epoch is not None:
            out["trainerEpoch"] = self.trainer_epoch
        if self.scale is not None:
            out["scale"] = self.scale.wire()
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> StoredState:
        """Read the stored object back (`ValueError` when a known field has the wrong type)."""
        rest = {k: v for k, v in data.items() if k not in ("specKey", "trainerEpoch", "scale")}
        try:
            epoch = int(data["trainerEpoch"]) if "trainerEpoch" in data else None
            scale = scaling.ScaleState.from_wire(data["scale"]) if "scale" in data else None
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"stored state is malformed: {exc}") from None
        spec = data.get("specKey")
        return cls(spec_key=str(spec) if spec is not None else None, trainer_epoch=epoch, scale=scale, unknown=rest)


@dataclass
class JobMemory:
    """What the operator remembers about one job between passes (rebuilt from the ConfigMap on restart)."""

    uid: str
    seen_at: float = field(default_factory=time.monotonic)
    """When this process first saw the job: the priority of its API calls (earlier first)."""
    key: JobKey | None = None
    """(namespace, name), known from the first pass on."""
    spec: RLJobSpec | None = None
    """The spec as the last pass validated it (None before the first pass or while the spec is invalid)."""
    loaded: bool = False
    """The ConfigMap was read back (first pass of this process done)."""
    plan: Plan | None = None
    """The plan committed for this job (what its children are brought to)."""
    stored: StoredState = field(default_factory=StoredState)
    """What is stored in the ConfigMap beside the plan."""
    tokens: dict[str, str] = field(default_factory=dict)
    """The job's per-role bearer tokens (`hexrl.api.jobtokens`), derived on the first pass."""
    basis: PlanBasis | None = None
    """What the cluster offered when the planner last answered for this job (None: not asked by this
    process); `replanpolicy.replan_reason` compares the cluster with it."""
    child_hashes: dict[tuple[str, str], str] = field(default_factory=dict)
    """(kind, name) → desired hash of each static child last applied or found current."""
    expected: dict[str, tuple[Pod, float]] = field(default_factory=dict)
    """Pods created and not yet seen by the watch: name → (their expected view, when created)."""
    deleted: dict[str, float] = field(default_factory=dict)
    """Pods deleted whose deletion the watch may not have shown yet: name → when."""
    events_sent: set[str] = field(default_factory=set)
    """Keys of the Events posted once per generation and message."""
    progress: dict[str, Any] | None = None
    """The coordinator's last progress report."""
    scale: scaling.ScaleState | None = None
    """Live scaling state with its poll counters (None: start from `stored.scale`)."""
    fresh: bool = False
    """The job had no ConfigMap when first seen by this process: its children are all new."""
    rejection: tuple[str, Infeasible] | None = None
    """(spec key, the planner's answer) of the last infeasible plan, to not ask again until the spec
    changes or capacity appears (`replanpolicy.replan_reason`)."""
    rejected_change: Infeasible | None = None
    """The planner's no to a change while the job keeps running its previous plan (reported as Planned=False)."""
    baselines: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None
    """(placement the baselines were computed for, the baselines), from the background thread."""
    baselines_pending: tuple[Any, ...] | None = None
    """Placement whose baselines are being computed (so a pass does not submit it twice)."""
    trainer_recovering: bool = False
    """A trainer gang was restarted and is not all ready yet (Degraded stays True until it is)."""
    rollout_recovering: int = 0
    """Rollout pods replaced and not all ready yet."""
    blocker_key: str | None = None
    """What the last Warning Event about a pod problem or the dataset was about (reason and pod): a new
    Event only when it changes, none while the same cause persists."""
    plan_profile: CalibrationProfile | None = None
    """The calibration profile `plan`'s predictions were made under (None: not known yet; after a restart the
    profile in force when the stored plan is first read back is assumed)."""
    calibration_basis: CalibrationProfile | None = None
    """The profile the plan was last checked against; a material move away from it is news for this job."""
    calibration_news: tuple[tuple[str, str, float, float], ...] = ()
    """(gpu, phase, old factor, new factor) of each material move not yet acted on: the next pass checks
    whether to re-plan and posts the Calibrated Event."""
    calibration_message: str = ""
    """The last Calibrated Event's sentence (status.calibration.message)."""
    calibration_event: str | None = None
    """A Calibrated Event the next status report posts (None: none due)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Held for a whole pass (one pass of a job at a time)."""

    def scale_state(self) -> scaling.ScaleState:
        """The live scaling state: in memory, else as stored, else a fresh one."""
        return self.scale or self.stored.scale or scaling.ScaleState()


class JobMemories:
    """Every job's memory, by UID; thread-safe."""

    def __init__(self) -> None:
        self._by_uid: dict[str, JobMemory] = {}
        self._lock = threading.Lock()

    def get(self, uid: str) -> JobMemory:
        """The job's memory, created empty on first use."""
        with self._lock:
            if uid not in self._by_uid:
                self._by_uid[uid] = JobMemory(uid)
            return self._by_uid[uid]

    def forget(self, uid: str) -> None:
        """Drop a deleted job's memory."""
        with self._lock:
            self._by_uid.pop(uid, None)

    def all(self) -> list[JobMemory]:
        """A copy of the list of memories (safe to iterate while passes add jobs)."""
        with self._lock:
            return list(self._by_uid.values())

    def plans_except(self, mem: JobMemory) -> list[Plan]:
        """The plans every other job holds (they reserve their GPUs against this job's plans)."""
        return [m.plan for m in self.all() if m is not mem and m.plan is not None]

    def plan_nodes_by_job(self) -> dict[JobKey, set[str]]:
        """(namespace, job) → nodes its current plan uses (to find the jobs a node event affects)."""
        return {m.key: plan_nodes(m.plan) for m in self.all() if m.key is not None and m.plan is not None}


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
    invalid: bool = False
    """The spec did not validate (no children were touched)."""
    recheck_seconds: float | None = None
    """Look at the job again after this long even without an event (a pod not ready for longer than the
    grace period becomes a PodNotReady problem; no watch event says so)."""

    @property
    def outcome(self) -> Outcome:
        """ok | infeasible | invalid: the pass's label in hexrl_operator_reconciles_total."""
        if self.invalid:
            return "invalid"
        return "ok" if self.planned else "infeasible"


@dataclass(frozen=True)
class Planned:
    """The planning part's answer when the job has a plan to deploy (handed to apply and status)."""

    snap: Snapshot
    """The cluster as this job saw it when planning (pods are judged against it)."""
    plan: Plan
    """The plan to deploy (possibly unchanged from the last pass)."""
    previous: Plan | None
    """The plan deployed before this pass (None on the first), to tell a re-plan from a repeat."""
    trigger: Trigger | None
    """Why the planner was asked; None when it was not."""
    lost: int
    """Nodes of the previous plan that are gone or going away."""


@dataclass(frozen=True)
class Applied:
    """What the apply part did that the status part reports."""

    trainer_lost: bool
    """A trainer rank was lost and the gang restarted under a new epoch."""
    replaced: int
    """Rollout pods replaced because unhealthy."""
    summary: dict[str, Any]
    """The plan summary (stored in the ConfigMap and in the status)."""


def spec_key(spec: RLJobSpec) -> str:
    """Hash of what the planner reads from the spec (η and images change the ConfigMap/pods, not the plan)."""
    wire = spec.wire()
    for k in ("images", "suspend", "reward", "dataset", "checkpoint"):
        wire.pop(k, None)
    return hashlib.sha256(json.dumps(wire, sort_keys=True).encode()).hexdigest()[:16]


def plan_nodes(plan: Plan) -> set[str]:
    """Every node a plan places trainer or rollout on."""
    return set(plan.trainer.nodes) | {n for r in plan.replicas for n in r.nodes}


def placement(plan: Plan) -> tuple[Any, ...]:
    """What the deployed children depend on (not the solver's timing or explanation)."""
    return (plan.trainer, plan.replicas)


def thread_requests(api: Any) -> int:
    """Requests the calling thread made (a fake API without per-thread counts: the total)."""
    fn = getattr(api, "thread_requests", None)
    return int(fn()) if fn is not None else int(api.requests)


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    """The object has an owner reference to `uid`."""
    return any(o.get("uid") == uid for o in obj.get("metadata", {}).get("ownerReferences") or [])


def incarnation(name: str) -> int:
    """The trailing number of a rollout pod's name (`<job>-rollout-<slot>-<incarnation>`)."""
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def epoch_of(pod_name: str, ref: render.JobRef) -> str:
    """The epoch tag in a trainer pod's name (`<job>-trainer-<epoch tag>-<rank>`); "" for other pods."""
    prefix = f"{ref.name}-trainer-"
    return pod_name[len(prefix):].rsplit("-", 1)[0] if pod_name.startswith(prefix) else ""
