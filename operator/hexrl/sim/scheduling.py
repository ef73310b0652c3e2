"""Continuous batching as list scheduling: GRPO groups onto the group slots of the serving replica sets.

Each group, in order, takes the slot that frees first, from its admission on, and holds it for its
decode steps × the slot's step time × the weight-swap stretch:

    start = max(admission, earliest free slot),     finish = start + steps · step_slot · stretch

A group that finds no serving slot waits for capacity (the engine keeps it). A finished group moves to
the buffer in completion order.
"""

from __future__ import annotations

import heapq

import numpy as np

from hexrl.sim.state import Buffer, InFlight, Slots

FINISH_TOLERANCE = 1e-9
"""Relative time tolerance when matching a recomputed finish time to the event that expected it."""

_NO_SLOTS = np.empty(0, dtype=np.int64)
_NO_TIMES = np.empty(0)

Placement = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(slot, start, finish) of the first len(slot) groups; the rest found no serving slot."""


def place_groups(slots: Slots, steps: np.ndarray, at: float, stretch: float) -> Placement:
    """List-schedule the groups from `at` on, marking the slots they take busy.

    Fast path (vectorised): the n groups take the n earliest-free slots in order; that is exactly
    what the sequential rule does whenever no group of the burst finishes before the last of those
    slots frees (no slot is used twice). Otherwise the burst is placed one by one with a heap.
    """
    n = steps.size
    free = slots.free
    m = min(n, int(np.isfinite(free).sum()))
    if m == 0:
        return _NO_SLOTS, _NO_TIMES, _NO_TIMES
    idx = np.argpartition(free, m - 1)[:m] if m < free.size else np.arange(free.size)
    idx = idx[np.argsort(free[idx], kind="stable")]
    start = np.maximum(free[idx], at)
    finish = start + steps[:m] * slots.slot_step[idx] * stretch
    if m < n or (m > 1 and finish.min() < free[idx[-1]]):
        return _place_one_by_one(slots, steps, at, stretch)
    free[idx] = finish
    return idx, start, finish


def _place_one_by_one(slots: Slots, steps: np.ndarray, at: float, stretch: float) -> Placement:
    """The exact sequential rule with a heap over the serving slots (a slot may take several groups)."""
    free = slots.free
    open_idx = np.flatnonzero(np.isfinite(free))
    heap = list(zip(free[open_idx].tolist(), open_idx.tolist(), strict=True))
    heapq.heapify(heap)
    slot_step = slots.slot_step
    idx, starts, finishes = [], [], []
    for need in steps.tolist():
        f, j = heap[0]
        st = f if f > at else at
        fin = st + need * slot_step[j] * stretch
        heapq.heapreplace(heap, (fin, j))
        idx.append(j)
        starts.append(st)
        finishes.append(fin)
    for f, j in heap:
        free[j] = f
    return np.asarray(idx, dtype=np.int64), np.asarray(starts), np.asarray(finishes)


def collect_finished(in_flight: InFlight, buffer: Buffer, now: float) -> None:
    """Groups finished by `now` move to the buffer, in completion order."""
    if in_flight.size == 0:
        return
    done = in_flight.finish <= now + FINISH_TOLERANCE * max(1.0, now)
    if not done.any():
        return
    order = np.argsort(in_flight.finish[done], kind="stable")
    buffer.add(in_flight.finish[done][order], in_flight.tokens[done][order], in_flight.version[done][order])
    in_flight.keep(~done)
