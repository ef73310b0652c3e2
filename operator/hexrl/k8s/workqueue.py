"""The asynchronous side: a debouncing work queue of jobs to reconcile, progress polling, health server.

Triggers (an RLJob created/changed, a node event, a job's pod failing) only *request* a pass for a job;
the queue decides when it runs:

- **debounce**: a request with quiet period `d` and cap `m` makes the pass due at
  `min(last_request + d, first_request + m)` — a storm of 100 node events over 1 s produces one pass
  per affected job (two if the storm outlasts the cap), not 100;
- **one pass per job at a time**: a request for a job whose pass is running is remembered and served
  right after it (so nothing is lost and no two passes of a job overlap);
- **backoff**: a pass that fails with an API error is retried after 1, 2, 4 … 60 s.

Passes run in a thread pool of `worker_limit` threads (the reconciler uses the blocking `kubernetes`
transport), so the kopf event loop keeps serving watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from hexrl.k8s.store import JobKey

log = logging.getLogger(__name__)



@dataclass
class _Pending:
    first: float
    due: float


@dataclass
class WorkQueue:
    """Debounced, per-key-serialised, retrying dispatch of `work(key)` into a thread pool."""

    work: Callable[[JobKey], Any]
    workers: int = 8
    passes: int = 0
    failures: dict[JobKey, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._pending: dict[JobKey, _Pending] = {}
        self._running: set[JobKey] = set()
        self._again: dict[JobKey, float] = {}
        self._wake: asyncio.Event | None = None
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="hexrl-reconcile")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hexrl-workqueue")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def request(self, key: JobKey, delay: float = 0.0, cap: float | None = None) -> None:
        """Ask for a pass of `key` after `delay` s of quiet, at the latest `cap` s after the first ask."""
        now = time.monotonic()
        if key in self._running:
            self._again[key] = min(self._again.get(key, float("inf")), delay)
            return
        p = self._pending.get(key)
        candidate = now + delay
        if p is None:
            self._pending[key] = _Pending(first=now, due=candidate)
        elif candidate < p.due:
            p.due = candidate  # a more urgent request wins
        else:
            # keep quiet periods extending the wait, but never beyond the cap after the first request
            p.due = max(p.due, min(candidate, p.first + (cap if cap is not None else delay)))
        if self._wake is not None:
            self._wake.set()

    def pending(self) -> int:
        return len(self._pending) + len(self._running)

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            now = time.monotonic()
            due = [k for k, p in self._pending.items() if p.due <= now and k not in self._running]
            for key in due:
                del self._pending[key]
                self._running.add(key)
                fut = loop.run_in_executor(self._executor, self._one, key)
                fut.add_done_callback(partial(self._done, key))
            nxt = min((p.due for p in self._pending.values()), default=None)
            self._wake.clear()
            timeout = None if nxt is None else max(0.0, nxt - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    def _one(self, key: JobKey) -> None:
        self.passes += 1
        self.work(key)

    def _done(self, key: JobKey, fut: Any) -> None:
        self._running.discard(key)
        exc = fut.exception() if not fut.cancelled() else None
        if exc is not None:
            n = self.failures.get(key, 0) + 1
            self.failures[key] = n
            backoff = min(60.0, 2.0 ** (n - 1))
            log.warning("reconcile of %s/%s failed (%s), retrying in %.0f s", key[0], key[1], exc, backoff)
            self.request(key, backoff)
        else:
            self.failures.pop(key, None)
        if key in self._again:
            self.request(key, self._again.pop(key))
        if self._wake is not None:
            self._wake.set()
