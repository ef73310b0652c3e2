"""The engine's timed events: their kinds and the queue that orders them.

Events are popped by time; at equal times by kind (the order below), then in the order they were
pushed. That total order makes a run a function of its setup, trace and seed alone.
"""

from __future__ import annotations

import heapq
from enum import IntEnum


class EventKind(IntEnum):
    """What happened; the value orders events that share a time."""

    NODE = 0
    """A node of the trace is reclaimed or returns (payload: the trace's `NodeEvent`)."""
    NODE_READY = 1
    """A replica set's pods on a node serve (payload: (replica set, node))."""
    TRAINER_UP = 2
    """The trainer's pods restarted after its node returned."""
    WEIGHTS = 3
    """A weight download finished (payload: the version)."""
    TRAIN_DONE = 4
    """A training step ended (payload: the trainer's step token)."""
    TRAIN_CHECK = 5
    """A step's groups may be in the buffer (payload: the trainer's check token)."""
    SAMPLE = 6
    """Record a point of the time series."""
    START = 7
    """The job starts: first admission."""


class EventQueue:
    """A heap of (time, kind, sequence number, payload)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, EventKind, int, object]] = []
        self._seq = 0

    def __bool__(self) -> bool:
        return bool(self._heap)

    def push(self, time: float, kind: EventKind, payload: object = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time, kind, self._seq, payload))

    def pop(self) -> tuple[float, EventKind, object]:
        time, kind, _seq, payload = heapq.heappop(self._heap)
        return time, kind, payload
