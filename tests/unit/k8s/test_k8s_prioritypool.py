"""The reconciler's API fan-out pool: most senior job first, FIFO within a job, errors after all calls."""

from __future__ import annotations

import threading
import time

import pytest

from hexrl.k8s.prioritypool import PriorityPool

pytestmark = pytest.mark.unit


def test_queued_calls_run_by_priority_then_fifo():
    pool = PriorityPool(1)
    gate = threading.Event()
    order: list[str] = []
    try:
        blocker = pool.submit(0, gate.wait)  # occupy the only worker while the queue fills
        late = [pool.submit(2.0, lambda i=i: order.append(f"late-{i}")) for i in range(3)]
        early = [pool.submit(1.0, lambda i=i: order.append(f"early-{i}")) for i in range(3)]
        gate.set()
        for f in [blocker, *late, *early]:
            f.result(timeout=10)
    finally:
        pool.shutdown()
    assert order == ["early-0", "early-1", "early-2", "late-0", "late-1", "late-2"]


def test_map_returns_in_item_order_and_runs_in_parallel():
    pool = PriorityPool(4)
    together = threading.Barrier(4, timeout=10)  # only passes when all four calls run at once

    def call(x: int) -> int:
        together.wait()
        return x * x

    try:
        out = pool.map(call, [3, 1, 2, 4])
    finally:
        pool.shutdown()
    assert out == [9, 1, 4, 16]


def test_map_raises_the_first_error_only_after_every_call_finished():
    pool = PriorityPool(2)
    finished: list[int] = []

    def call(i: int) -> int:
        if i == 0:
            raise ValueError("boom")
        time.sleep(0.1)
        finished.append(i)
        return i

    try:
        with pytest.raises(ValueError, match="boom"):
            pool.map(call, [0, 1, 2, 3])
    finally:
        pool.shutdown()
    assert sorted(finished) == [1, 2, 3]


def test_shutdown_cancels_queued_calls_and_refuses_new_ones():
    pool = PriorityPool(1)
    gate, started = threading.Event(), threading.Event()
    running = pool.submit(0, lambda: (started.set(), gate.wait())[1])
    assert started.wait(5)
    queued = pool.submit(1, lambda: "never")
    pool.shutdown()
    gate.set()
    assert running.result(timeout=5) is True
    assert queued.cancelled()
    with pytest.raises(RuntimeError):
        pool.submit(0, lambda: None)


def test_threads_start_on_demand_up_to_the_limit():
    pool = PriorityPool(3)
    try:
        assert not pool._threads
        assert pool.map(lambda x: x + 1, [1]) == [2]
        assert len(pool._threads) == 1  # one call, one thread; it is reused
        assert pool.map(lambda x: x, range(3)) == [0, 1, 2]
        pool.map(lambda _: time.sleep(0.05), range(10))
        assert 1 <= len(pool._threads) <= 3
    finally:
        pool.shutdown()
