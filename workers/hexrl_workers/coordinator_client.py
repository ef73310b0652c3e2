"""A small synchronous client for the coordinator (used by the rollout worker and the trainer).

Connection failures and 5xx answers are retried with capped exponential backoff (the coordinator may be
restarting), and so is a 429 (its trajectory buffer is full), after at least its Retry-After; any other 4xx
is the caller's mistake and raises `CoordinatorError` with the service's reason.
Once the owner's stop event (`abort`) is set, a failure is not retried: a worker told to stop (SIGTERM)
must exit within its grace period even when the coordinator is already gone.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import requests

from hexrl_workers.httpcommon import bearer
from hexrl_workers.protocol import (
    Batch,
    BatchRequest,
    IngestResult,
    Progress,
    TrajectoryBatchIn,
    VersionUpdate,
    WorkReport,
    WorkRequest,
    WorkResponse,
)

log = logging.getLogger(__name__)
WAIT_LOG_SECONDS = 60.0
"""While retrying, one log line per this many seconds (a pod waiting for its coordinator says so)."""


MAX_RETRY_AFTER = 30.0
"""Longest Retry-After honoured, seconds (a larger or garbled value waits this long)."""


def _retry_after(resp: requests.Response) -> float:
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(resp.headers.get("Retry-After", "0"))))
    except ValueError:
        return MAX_RETRY_AFTER


def split_by_group(body: TrajectoryBatchIn) -> list[TrajectoryBatchIn]:
    """One push per group: its trajectories, partials and discarded samples (at most group size samples: what the
    coordinator's body limit is sized for, `hexrl_workers.limits`), and one per evaluation item (at most k ≤ 256
    records of a few hundred bytes, well inside the smallest such limit), sent first; the released items go with
    the last push, so an item released after some of its evaluation results were pushed is handed back only for
    the rest."""
    groups: dict[int, TrajectoryBatchIn] = {}
    for t in body.trajectories:
        groups.setdefault(t.group_id, TrajectoryBatchIn(worker_id=body.worker_id)).trajectories.append(t)
    for p in body.partials:
        groups.setdefault(p.group_id, TrajectoryBatchIn(worker_id=body.worker_id)).partials.append(p)
    for d in body.discarded:
        groups.setdefault(d.group_id, TrajectoryBatchIn(worker_id=body.worker_id)).discarded.append(d)
    evals: dict[int, TrajectoryBatchIn] = {}
    for e in body.evaluations:
        evals.setdefault(e.item_id, TrajectoryBatchIn(worker_id=body.worker_id)).evaluations.append(e)
    parts = list(evals.values()) + (list(groups.values()) or [TrajectoryBatchIn(worker_id=body.worker_id)])
    parts[-1].released_item_ids = list(body.released_item_ids)
    parts[-1].work = list(body.work)
    return parts


class CoordinatorError(RuntimeError):
    def __init__(self, status: int, error: str, field: str | None = None) -> None:
        super().__init__(f"coordinator answered {status}: {error}" + (f" (field {field})" if field else ""))
        self.status, self.error, self.field = status, error, field


class CoordinatorUnavailable(RuntimeError):
    pass


class CoordinatorClient:
    def __init__(self, url: str, token: str | None = None, retry_seconds: float = 60.0,
                 abort: threading.Event | None = None) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(bearer(token))
        self.retry_seconds = retry_seconds
        """Give up on an unreachable coordinator after this long, seconds."""
        self.abort = abort
        """When set (the owner is stopping), a failed call raises at once instead of retrying."""

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> requests.Response:
        start = time.monotonic()
        deadline = start + self.retry_seconds
        next_log = start + 5.0  # a blip (the coordinator restarting) is not worth a line
        delay = 0.05
        while True:
            try:
                data = body.model_dump_json(by_alias=True) if hasattr(body, "model_dump_json") else None
                kwargs: dict[str, Any] = {"timeout": timeout}
                if data is not None:
                    kwargs["data"] = data
                    kwargs["headers"] = {"Content-Type": "application/json"}
                elif body is not None:
                    kwargs["json"] = body
                resp = self.session.request(method, self.url + path, **kwargs)
                if resp.status_code < 500 and resp.status_code != 429:
                    break
                problem = f"HTTP {resp.status_code}: {resp.text[:200]}"
                # 429: the coordinator's buffer is full; the body is kept and sent again after Retry-After
                delay = max(delay, _retry_after(resp))
            except requests.RequestException as exc:
                problem = str(exc)
            if self.abort is not None and self.abort.is_set():
                raise CoordinatorUnavailable(f"coordinator {self.url} unavailable while stopping: {problem}")
            if time.monotonic() + delay > deadline:
                raise CoordinatorUnavailable(f"coordinator {self.url} unavailable: {problem}")
            if time.monotonic() >= next_log:
                log.warning("coordinator %s unavailable for %.0f s (%s); retrying", self.url,
                            time.monotonic() - start, problem)
                next_log = time.monotonic() + WAIT_LOG_SECONDS
            if self.abort is not None:
                self.abort.wait(delay)
            else:
                time.sleep(delay)
            delay = min(2.0, delay * 2)
        if resp.status_code >= 400:
            try:
                err = resp.json()
            except ValueError:
                err = {"error": resp.text}
            raise CoordinatorError(resp.status_code, str(err.get("error")), err.get("field"))
        return resp

    def work(self, worker_id: str, max_items: int = 1, wait_seconds: float = 1.0) -> WorkResponse:
        req = WorkRequest(worker_id=worker_id, max_items=max_items, wait_seconds=wait_seconds)
        return WorkResponse.model_validate_json(self._call("POST", "/v1/work", req, timeout=wait_seconds + 30).content)

    def push(self, body: TrajectoryBatchIn) -> IngestResult:
        """Hand in finished samples and partials, one request per group (`split_by_group`: the coordinator's
        body limit is sized for one group's samples); the answers are summed."""
        total = IngestResult()
        for part in split_by_group(body):
            got = IngestResult.model_validate_json(self._call("POST", "/v1/trajectories", part).content)
            total = IngestResult(accepted=total.accepted + got.accepted, dropped=total.dropped + got.dropped,
                                 partials=total.partials + got.partials,
                                 evaluations=total.evaluations + got.evaluations)
        return total

    def batch(self, trainer_version: int, wait_seconds: float = 5.0) -> Batch | None:
        req = BatchRequest(trainer_version=trainer_version, wait_seconds=wait_seconds)
        resp = self._call("POST", "/v1/batch", req, timeout=wait_seconds + 60)
        return None if resp.status_code == 204 else Batch.model_validate_json(resp.content)

    def new_version(self, version: int, batch_id: int | None, loss: float | None = None,
                    work: list[WorkReport] | None = None) -> None:
        self._call("POST", "/v1/version", VersionUpdate(version=version, batch_id=batch_id, loss=loss,
                                                        work=work or []))

    def version(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/version").json())

    def progress(self) -> Progress:
        return Progress.model_validate_json(self._call("GET", "/v1/progress").content)

    def state(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/state").json())

    def restore(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/restore", snapshot).json())

    def set_staleness(self, eta: int) -> None:
        self._call("PUT", "/v1/staleness", {"maxPolicyLag": eta})
