"""The simulation's state: everything the event loop changes during a run, grouped by what it describes.

The engine (`hexrl.sim.engine`) owns one `SimState` and its event handlers change it; the setup
(`SimSetup`) and the settings stay fixed for the run. Groups in flight and finished groups are numpy
arrays with one entry per GRPO group, so that a burst of admissions is one vectorised step.

- `Fleet`     — which nodes are up and which node hosts each replica set
- `Slots`     — the group slots of the replica sets (list scheduling)
- `InFlight`  — groups being generated; `Buffer` — finished groups not yet trained
- `Versions`  — the trained policy version, the one the rollout holds, and the weight download
- `Trainer`   — the training loop's step in progress
- `Tally`     — what the run measures (tokens, dollars, lags, losses) and the sampled time series
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hexrl.sim.model import RolloutNode, SeriesPoint, SimSetup


def _floats() -> np.ndarray:
    return np.empty(0)


def _ints() -> np.ndarray:
    return np.empty(0, dtype=np.int64)


@dataclass
class Fleet:
    """Nodes and where the replica sets run.

    A replica set (the job's replicas of one node) is named by the node the plan put it on; the
    operator's re-plan may move it to another node of the same pool.
    """

    sets: dict[str, RolloutNode]
    """Each replica set's planned node, which fixes its pool, GPUs, price and speed."""
    node_of_set: dict[str, str]
    set_on_node: dict[str, str]
    node_pool: dict[str, str]
    """Every node the run knows: the plan's rollout nodes, its spare nodes and the trainer's nodes."""
    up: set[str]
    spares: list[str]
    """Up nodes of the cluster that host nothing, by name: where a re-plan moves a reclaimed set."""
    serving: set[str] = field(default_factory=set)
    pending_sets: list[str] = field(default_factory=list)
    """Replica sets whose node was reclaimed and that wait for capacity in their pool."""

    @classmethod
    def planned(cls, setup: SimSetup) -> Fleet:
        """Every replica set on the node the plan chose; every node up."""
        node_pool = {n.name: n.pool for n in setup.rollout}
        for name, pool, _spot in setup.spare_nodes:
            node_pool[name] = pool
        for name in setup.trainer.nodes:
            node_pool.setdefault(name, setup.trainer.pool)
        return cls(
            sets={n.name: n for n in setup.rollout},
            node_of_set={n.name: n.name for n in setup.rollout},
            set_on_node={n.name: n.name for n in setup.rollout},
            node_pool=node_pool,
            up=set(node_pool),
            spares=sorted(name for name, _, _ in setup.spare_nodes),
        )

    def serving_gpus(self) -> int:
        return sum(self.sets[s].gpus for s in self.serving)

    def serving_spot_gpus(self) -> int:
        return sum(self.sets[s].gpus for s in self.serving if self.sets[s].spot)


@dataclass
class Slots:
    """Group slots of the replica sets: one entry per slot, in blocks per set (in the setup's order).

    A set decodes `slots // G` groups at once (its engines' batch / G). A slot of a set that is not
    serving is free at +inf, so the earliest-free rule never picks it.
    """

    set_index: dict[str, int]
    step_s: list[float]
    """Seconds per decode step of one group on each replica set (slower when a set has < G slots)."""
    slot_set: np.ndarray
    slot_step: np.ndarray
    free: np.ndarray
    """Time each slot frees (+inf: its set is not serving)."""
    block: np.ndarray
    """Set i owns slots block[i] : block[i + 1]."""

    @classmethod
    def planned(cls, setup: SimSetup) -> Slots:
        gsize = setup.group_size
        step_s = [n.slots / n.slot_steps_per_second * max(1.0, gsize / n.slots) for n in setup.rollout]
        groups_at_once = [max(1, n.slots // gsize) for n in setup.rollout]
        slot_set = np.repeat(np.arange(len(groups_at_once), dtype=np.int64), groups_at_once)
        return cls(
            set_index={n.name: i for i, n in enumerate(setup.rollout)},
            step_s=step_s,
            slot_set=slot_set,
            slot_step=np.asarray(step_s, dtype=np.float64)[slot_set],
            free=np.full(slot_set.size, np.inf),
            block=np.concatenate(([0], np.cumsum(groups_at_once))).astype(np.int64),
        )

    def open_set(self, i: int, now: float) -> None:
        self.free[self.block[i] : self.block[i + 1]] = now

    def close_set(self, i: int) -> None:
        self.free[self.block[i] : self.block[i + 1]] = np.inf


AT_START = -1
"""Version of a group not started yet: it is stamped when it starts (`InFlight.stamp_started`)."""


@dataclass
class InFlight:
    """Groups admitted and placed on a slot, until they finish."""

    finish: np.ndarray = field(default_factory=_floats)
    start: np.ndarray = field(default_factory=_floats)
    steps: np.ndarray = field(default_factory=_floats)
    """Decode steps of the group's current assignment (longest response + overhead [+ re-prefill])."""
    tokens: np.ndarray = field(default_factory=_floats)
    """Tokens a group gives the trainer (Σ prompt + response)."""
    version: np.ndarray = field(default_factory=_ints)
    """The policy version that generates the group; `AT_START` until the group has started (a worker takes
    work when it has room and generates it with the weights it holds then)."""
    replica_set: np.ndarray = field(default_factory=_ints)

    def stamp_started(self, now: float, versions: Versions) -> None:
        """Give every group that has started by `now` the version the rollout held when it started."""
        waiting = (self.version == AT_START) & (self.start <= now)
        if waiting.any():
            self.version[waiting] = versions.held_at(self.start[waiting])

    @property
    def size(self) -> int:
        return int(self.finish.size)

    def add(self, finish: np.ndarray, start: np.ndarray, steps: np.ndarray, tokens: np.ndarray,
            version: np.ndarray, replica_set: np.ndarray) -> None:
        self.finish = np.concatenate((self.finish, finish))
        self.start = np.concatenate((self.start, start))
        self.steps = np.concatenate((self.steps, steps))
        self.tokens = np.concatenate((self.tokens, tokens))
        self.version = np.concatenate((self.version, version))
        self.replica_set = np.concatenate((self.replica_set, replica_set))

    def keep(self, mask: np.ndarray) -> None:
        self.finish, self.start, self.steps = self.finish[mask], self.start[mask], self.steps[mask]
        self.tokens, self.version = self.tokens[mask], self.version[mask]
        self.replica_set = self.replica_set[mask]


@dataclass
class Buffer:
    """Finished groups not yet trained, in completion order."""

    finished_at: np.ndarray = field(default_factory=_floats)
    tokens: np.ndarray = field(default_factory=_floats)
    version: np.ndarray = field(default_factory=_ints)

    @property
    def size(self) -> int:
        return int(self.finished_at.size)

    def add(self, finished_at: np.ndarray, tokens: np.ndarray, version: np.ndarray) -> None:
        self.finished_at = np.concatenate((self.finished_at, finished_at))
        self.tokens = np.concatenate((self.tokens, tokens))
        self.version = np.concatenate((self.version, version))

    def keep(self, mask: np.ndarray) -> None:
        self.finished_at = self.finished_at[mask]
        self.tokens, self.version = self.tokens[mask], self.version[mask]


@dataclass
class Versions:
    """Policy versions: trained (i), published to the weight service, and held by the rollout."""

    trained: int = 0
    published: int = 0
    rollout: int = 0
    downloading: bool = False
    pause_factor: float = 1.0
    """1 + weight-swap pause / step interval: the share of decode time lost to applying versions."""
    applied_at: list[float] = field(default_factory=lambda: [0.0])
    """When each version in `applied` reached the rollout (ascending; version 0 at t = 0)."""
    applied: list[int] = field(default_factory=lambda: [0])

    def apply(self, version: int, now: float) -> None:
        """The rollout holds `version` from `now` on."""
        self.rollout = version
        self.applied_at.append(now)
        self.applied.append(version)

    def held_at(self, times: np.ndarray) -> np.ndarray:
        """The version the rollout held at each of `times`."""
        index = np.searchsorted(np.asarray(self.applied_at), times, side="right") - 1
        held: np.ndarray = np.asarray(self.applied, dtype=np.int64)[np.maximum(index, 0)]
        return held


@dataclass
class Trainer:
    """The training loop. Tokens tell a handler whether the event it got is still the one expected."""

    busy: bool = False
    down: bool = False
    step_start: float = 0.0
    step_tokens: float = 0.0
    busy_seconds: float = 0.0
    step_token: int = 0
    check_token: int = 0


@dataclass
class Interval:
    """Sums over the current interval of the time series."""

    tokens: float = 0.0
    samples: float = 0.0
    busy: float = 0.0
    lag: float = 0.0
    lag_count: float = 0.0
    dollars: float = 0.0


@dataclass
class Tally:
    """What the run measures, and the time series sampled so far."""

    trained_tokens: float = 0.0
    trained_samples: int = 0
    steady_tokens: float = 0.0
    """Trained tokens after the warm-up fraction."""
    dropped: int = 0
    staleness: dict[int, int] = field(default_factory=dict)
    dollars: float = 0.0
    billed_until: float = 0.0
    cost_rate: float = 0.0
    """$/h billed since `billed_until`."""
    gpu_hours_lost: float = 0.0
    preemptions: int = 0
    returns: int = 0
    series: list[SeriesPoint] = field(default_factory=list)
    interval: Interval = field(default_factory=Interval)
    last_sample: float = 0.0


@dataclass
class SimState:
    """Everything one run changes, at the simulated time `now`."""

    fleet: Fleet
    slots: Slots
    in_flight: InFlight = field(default_factory=InFlight)
    unassigned: list[tuple[float, float, int]] = field(default_factory=list)
    """(steps, tokens, version) of groups waiting for any serving capacity."""
    buffer: Buffer = field(default_factory=Buffer)
    admitted: int = 0
    """N_r: trajectories admitted into generation and not given back (the coordinator's count)."""
    versions: Versions = field(default_factory=Versions)
    trainer: Trainer = field(default_factory=Trainer)
    tally: Tally = field(default_factory=Tally)
    now: float = 0.0

    @classmethod
    def planned(cls, setup: SimSetup) -> SimState:
        """The job as planned, before its first event."""
        return cls(fleet=Fleet.planned(setup), slots=Slots.planned(setup))
