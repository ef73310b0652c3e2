"""Why a pod of a job cannot start or serve — one line, from the pod's own status. Pure.

The RLJob's `Ready` condition names the pod and the cause (`pod tiny-rollout-l4-0-0: Unschedulable:
persistentvolumeclaim "models" not found`) instead of only counting ready pods, so a user does not need
`kubectl describe pod` to find out why a job sits still. What the pod status says, in the order checked:

| kind (reason constant)   | from                                                                    |
|--------------------------|-------------------------------------------------------------------------|
| `PodUnschedulable`       | condition PodScheduled=False, reason Unschedulable (the scheduler's     |
|                          | message: a missing PVC, no capacity, taints, affinity)                  |
| `ImagePullFailed`        | a container waiting in ErrImagePull, ImagePullBackOff, ErrImageNeverPull,|
|                          | InvalidImageName, …                                                     |
| `CrashLoopBackOff`       | a container waiting in CrashLoopBackOff: its last exit code and         |
|                          | termination message (the last log line: pods use FallbackToLogsOnError) |
| `ContainerFailed`        | CreateContainerConfigError & co., or a container/pod that terminated    |
|                          | with an error (trainer ranks never restart)                             |
| `PodNotReady`            | Running but not Ready for longer than a grace period (failing readiness |
|                          | probe); time-dependent, so judged at pass time (`not_ready_problem`)    |

`pod_problem(pod)` is what the pod index stores in its view (it changes only when the cause does, so a
changed cause triggers a reconcile pass); `job_problems(views, now, grace)` adds the time-dependent
not-ready ones and orders everything so the first is the one worth a user's attention.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hexrl.api import reasons

IMAGE_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
                           "RegistryUnavailable", "SignatureValidationFailed"})
CONTAINER_ERRORS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError",
                              "PreCreateHookError", "PostStartHookError", "PreStartHookError"})
KIND_ORDER = (reasons.POD_UNSCHEDULABLE, reasons.IMAGE_PULL_FAILED, reasons.CRASH_LOOP, reasons.CONTAINER_FAILED,
              reasons.POD_NOT_READY)
"""Most fundamental first: a pod that cannot be scheduled never pulls, one that cannot pull never crashes."""
ROLE_ORDER = ("coordinator", "trainer", "rollout")
MAX_DETAIL = 300
"""Characters of a cause's detail kept in the one-line message."""


@dataclass(frozen=True)
class PodProblem:
    """One pod's problem: `kind` is a reason constant, `cause` Kubernetes' own word, `detail` one line."""

    pod: str
    role: str
    kind: str
    cause: str
    detail: str

    def line(self) -> str:
        return f"pod {self.pod}: {self.cause}: {self.detail}"


# ------------------------------------------------------------------------------------ from one pod


def pod_problem(pod: Mapping[str, Any]) -> dict[str, str] | None:
    """{kind, cause, detail} of what keeps this pod from starting, or None (the pod index stores it)."""
    status = pod.get("status") or {}
    return (
        _unschedulable(status)
        or _container_problem(status.get("initContainerStatuses") or [])
        or _container_problem(status.get("containerStatuses") or [])
        or _pod_failed(status)
    )


def not_ready_since(pod: Mapping[str, Any]) -> str:
    """When a Running pod last became not ready (the Ready condition's transition time), else ""."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return ""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return "" if cond.get("status") == "True" else str(cond.get("lastTransitionTime") or "")
    return str(status.get("startTime") or "")


def readiness_target(pod: Mapping[str, Any]) -> str:
    """`GET :8003/readyz` — what the pod's first container's readiness probe asks ("" if none)."""
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    get = (containers[0].get("readinessProbe") or {}).get("httpGet") or {}
    return f"GET :{get.get('port')}{get.get('path', '/')}" if get else ""


def _problem(kind: str, cause: str, detail: str) -> dict[str, str]:
    return {"kind": kind, "cause": cause, "detail": _one_line(detail)}


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def _unschedulable(status: Mapping[str, Any]) -> dict[str, str] | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                and cond.get("reason") == "Unschedulable":
            return _problem(reasons.POD_UNSCHEDULABLE, "Unschedulable", scheduler_sentence(cond.get("message", "")))
    return None


def scheduler_sentence(message: str) -> str:
    """The scheduler's reason without its node count and preemption epilogue:
    `0/8 nodes are available: persistentvolumeclaim "models" not found. preemption: …` →
    `persistentvolumeclaim "models" not found`."""
    text = message.split(" preemption:", 1)[0].strip()
    text = re.sub(r"^0/\d+ nodes are available:\s*", "", text)
    return text.rstrip(".") or "no node fits the pod"


def _container_problem(statuses: Iterable[Mapping[str, Any]]) -> dict[str, str] | None:
    for cs in statuses:
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason", "")
        name = cs.get("name", "")
        if reason in IMAGE_REASONS:
            return _problem(reasons.IMAGE_PULL_FAILED, reason,
                            waiting.get("message") or f"container {name} cannot pull image {cs.get('image', '')}")
        if reason == "CrashLoopBackOff":
            last = (cs.get("lastState") or {}).get("terminated") or {}
            return _problem(reasons.CRASH_LOOP, reason,
                            f"{_exit_sentence(name, last)}; restarted {cs.get('restartCount', 0)} time(s)")
        if reason in CONTAINER_ERRORS:
            return _problem(reasons.CONTAINER_FAILED, reason, waiting.get("message") or f"container {name}")
        terminated = state.get("terminated") or {}
        if terminated and terminated.get("exitCode", 0) != 0:
            return _problem(reasons.CONTAINER_FAILED, terminated.get("reason") or "Error",
                            _exit_sentence(name, terminated))
    return None


def _exit_sentence(container: str, terminated: Mapping[str, Any]) -> str:
    """`container trainer exited with code 2 (OOMKilled): <last line of its termination message>`."""
    out = f"container {container} exited with code {terminated.get('exitCode', '?')}"
    if terminated.get("reason") not in (None, "", "Error", "Completed"):
        out += f" ({terminated['reason']})"
    lines = [ln.strip() for ln in str(terminated.get("message") or "").splitlines() if ln.strip()]
    return out + (f": {lines[-1]}" if lines else "")


def _pod_failed(status: Mapping[str, Any]) -> dict[str, str] | None:
    """A pod that failed as a whole (evicted, node shutdown…), when no container said more."""
    if status.get("phase") != "Failed":
        return None
    return _problem(reasons.CONTAINER_FAILED, status.get("reason") or "Failed",
                    status.get("message") or "the pod failed")


# ----------------------------------------------------------------------------------- over a job


def not_ready_problem(view: Mapping[str, Any], now: datetime, grace_seconds: float) -> PodProblem | None:
    """PodNotReady when a pod has been Running and not Ready for more than `grace_seconds`."""
    since = parse_time(view.get("notReadySince") or "")
    if since is None or view.get("ready"):
        return None
    waited = (now - since).total_seconds()
    if waited <= grace_seconds:
        return None
    probe = view.get("readinessProbe") or "its readiness probe"
    return PodProblem(view["name"], view.get("role", ""), reasons.POD_NOT_READY, "NotReady",
                      f"running but not ready for {_duration(waited)} ({probe} fails)")


def job_problems(views: Iterable[Mapping[str, Any]], now: datetime, grace_seconds: float) -> list[PodProblem]:
    """Every problem of the job's pods, the one to show first at the front (kind, then role, then name)."""
    out: list[PodProblem] = []
    for v in views:
        p = v.get("problem")
        if p:
            out.append(PodProblem(v["name"], v.get("role", ""), p["kind"], p["cause"], p["detail"]))
        else:
            slow = not_ready_problem(v, now, grace_seconds)
            if slow is not None:
                out.append(slow)
    return sorted(out, key=_rank)


def next_not_ready_check(views: Iterable[Mapping[str, Any]], now: datetime, grace_seconds: float) -> float | None:
    """Seconds until the first not-ready pod crosses the grace period (a pass must look again then; no pod
    event will say so), or None."""
    waits = []
    for v in views:
        since = parse_time(v.get("notReadySince") or "")
        if since is not None and not v.get("ready") and not v.get("problem"):
            left = grace_seconds - (now - since).total_seconds()
            if left >= 0:
                waits.append(left + 1.0)
    return min(waits, default=None)


def _rank(p: PodProblem) -> tuple[int, int, str]:
    kind = KIND_ORDER.index(p.kind) if p.kind in KIND_ORDER else len(KIND_ORDER)
    role = ROLE_ORDER.index(p.role) if p.role in ROLE_ORDER else len(ROLE_ORDER)
    return kind, role, p.pod


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 timestamp of the API (`2026-01-01T00:00:00Z`), or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
