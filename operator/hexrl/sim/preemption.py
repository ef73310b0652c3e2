"""Spot preemption, the decisions without the bookkeeping: which node an event hits, what becomes of the
groups a reclaimed replica set was generating, and where the operator's re-plan moves the set.

The engine (`hexrl.sim.engine`) applies these decisions to its state and schedules what follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hexrl.sim.model import RolloutNode
from hexrl.sim.state import Fleet, InFlight
from hexrl.sim.trace import PREEMPT, NodeEvent


def resolve_node(fleet: Fleet, trainer_nodes: tuple[str, ...], event: NodeEvent) -> str | None:
    """The node a trace event hits; an event without a node takes the pool's first node in the right
    state (up for a reclaim, down for a return), or None when there is none."""
    if event.node:
        return event.node if event.node in fleet.node_pool else None
    names = sorted(n for n, p in fleet.node_pool.items() if p == event.pool)
    want_up = event.kind == PREEMPT
    # Prefer nodes the job uses: a reclaim of an idle spare changes nothing.
    used = [n for n in names if (n in fleet.up) == want_up and (n in fleet.set_on_node or n in trainer_nodes)]
    other = [n for n in names if (n in fleet.up) == want_up]
    pick = used or other
    return pick[0] if pick else None


def spare_in_pool(fleet: Fleet, pool: str) -> str | None:
    """The first up spare node of `pool`: where the operator's re-plan moves a reclaimed replica set."""
    for spare in fleet.spares:
        if spare in fleet.up and fleet.node_pool[spare] == pool:
            return spare
    return None


@dataclass(frozen=True)
class Partials:
    """The unfinished groups of a reclaimed replica set, earliest start first."""

    start: np.ndarray
    steps: np.ndarray
    tokens: np.ndarray
    version: np.ndarray
    running: np.ndarray
    """Started before the reclaim (a queued group has lost nothing)."""
    progress: np.ndarray
    """Decode steps done."""
    held_gpu_seconds: np.ndarray
    """GPU-seconds the group held: its G of the set's slots, for the time it ran."""


def take_partials(in_flight: InFlight, set_index: int, node: RolloutNode, group_size: int, now: float,
                  step_s: float) -> Partials | None:
    """Remove the replica set's unfinished groups from `in_flight`; None if it had none.

    `step_s` is the set's decode step of one group, stretched by the weight-swap pauses.
    """
    mine = (in_flight.replica_set == set_index) & (in_flight.finish > now)
    if not mine.any():
        return None
    order = np.argsort(in_flight.start[mine], kind="stable")
    start, steps = in_flight.start[mine][order], in_flight.steps[mine][order]
    tokens, version = in_flight.tokens[mine][order], in_flight.version[mine][order]
    in_flight.keep(~mine)
    running = start < now
    progress = np.where(running, np.minimum(steps, (now - start) / step_s), 0.0)
    held = np.where(running, now - start, 0.0) * node.gpus * group_size / max(node.slots, group_size)
    return Partials(start, steps, tokens, version, running, progress, held)


def still_fresh_when_done(partials: Partials, now: float, trained: int, slots_free: np.ndarray,
                          handoff_s: float, step_s: float, eta: int) -> np.ndarray:
    """Which migrated partials would end within η versions of the trainer (needs `trained` > 0).

    The trainer's version when a continued response ends is extrapolated at the run's mean step
    interval; the response continues after the hand-off or when a slot frees, whichever is later.
    """
    interval = now / trained
    queued = np.sort(slots_free[np.isfinite(slots_free)])
    first_free = float(queued[0]) if queued.size else math.inf
    done_at = max(handoff_s, first_free - now) + (partials.steps - partials.progress) * step_s
    fresh: np.ndarray = trained + done_at / interval - partials.version < eta
    return fresh
