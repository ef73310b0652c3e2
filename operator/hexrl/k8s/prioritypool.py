"""A thread pool whose queue is ordered by priority: the reconciler's fan-out of API calls.

When many RLJobs arrive together, their passes run at once (one per worker of the work queue) and each
fans its creates out to this pool. With a first-come-first-served queue the requests of all jobs
interleave, so every job waits for every other job's pods and all of them finish late, together. Here
each call carries its job's priority — the order in which this process first saw the job — and the
pool always starts the most senior queued call (FIFO among equals): the first job's children are
created first, and jobs complete one after another, while the workers stay busy whenever anything is
queued. Nothing is starved for long: a pass submits its calls only after planning, and the queue
drains at the API server's pace.

The standard library's `ThreadPoolExecutor` has one FIFO queue and no priorities, hence this small
class (a heap under a condition variable; futures from `concurrent.futures`).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class PriorityPool:
    """`workers` daemon threads running submitted calls, lowest `priority` first, FIFO within a priority."""

    def __init__(self, workers: int, name: str = "pool") -> None:
        if workers < 1:
            raise ValueError("a PriorityPool needs at least one worker")
        self._heap: list[tuple[float, int, Callable[[], Any], Future[Any]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._workers, self._name = workers, name
        self._threads: list[threading.Thread] = []
        self._idle = 0

    def submit(self, priority: float, fn: Callable[[], R]) -> Future[R]:
        future: Future[R] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the pool is shut down")
            heapq.heappush(self._heap, (priority, next(self._seq), fn, future))
            if self._idle == 0 and len(self._threads) < self._workers:
                # threads start on demand (as in ThreadPoolExecutor): an idle operator holds none
                t = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()
            else:
                self._cond.notify()
        return future

    def map(self, fn: Callable[[T], R], items: Iterable[T], priority: float = 0.0) -> list[R]:
        """fn over items on the pool at `priority`; results in item order (the first exception is raised
        after every call has finished, so no call outlives the pass that made it)."""
        futures = [self.submit(priority, partial(fn, item)) for item in items]
        for f in futures:
            f.exception()  # wait for all before raising any
        return [f.result() for f in futures]

    def shutdown(self) -> None:
        """Cancel queued calls and let the workers exit (running calls finish)."""
        with self._cond:
            self._closed = True
            for _, _, _, future in self._heap:
                future.cancel()
            self._heap.clear()
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._heap and not self._closed:
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                if not self._heap:
                    return
                _, _, fn, future = heapq.heappop(self._heap)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller through the future
                future.set_exception(exc)
