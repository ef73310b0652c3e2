"""What a run measures: the billing rate, the points of the time series and the final `SimResult`.

Pure functions of the state (`hexrl.sim.state`); the engine decides when to bill and when to sample.
"""

from __future__ import annotations

import math

from hexrl.sim.model import SeriesPoint, SimResult, SimSetup
from hexrl.sim.settings import SimSettings
from hexrl.sim.state import SimState


def cost_rate(state: SimState, setup: SimSetup) -> float:
    """$/h billed now: the trainer, and every up node hosting a replica set (serving or starting)."""
    fleet = state.fleet
    rollout = sum(
        fleet.sets[s].gpus * fleet.sets[s].price_per_gpu_hour
        for s, node in fleet.node_of_set.items()
        if node in fleet.up and s not in fleet.pending_sets
    )
    return setup.trainer.price_per_hour + rollout


def series_point(state: SimState, group_size: int, dt: float) -> SeriesPoint:
    """Averages over the interval of length `dt` that ends now (the trainer's step in progress counts)."""
    interval = state.tally.interval
    busy = interval.busy
    if state.trainer.busy:
        busy += state.now - max(state.trainer.step_start, state.tally.last_sample)
    return SeriesPoint(
        time_s=state.now,
        tokens_per_second=interval.tokens / dt,
        samples_per_second=interval.samples / dt,
        rollout_gpus_serving=state.fleet.serving_gpus(),
        spot_gpus_serving=state.fleet.serving_spot_gpus(),
        policy_version=state.versions.trained,
        buffer_samples=state.buffer.size * group_size,
        in_flight_samples=state.in_flight.size * group_size,
        staleness_mean=interval.lag / interval.lag_count if interval.lag_count else float("nan"),
        trainer_busy_fraction=min(1.0, busy / dt),
        cost_per_hour=interval.dollars * 3600.0 / dt,
    )


def result(state: SimState, setup: SimSetup, cfg: SimSettings, hours: float, seed: int) -> SimResult:
    """The run's totals over `hours`; the steady rate leaves out the warm-up fraction."""
    tally = state.tally
    horizon = hours * 3600.0
    steady_window = horizon * (1.0 - cfg.warmup_fraction)
    tps = tally.trained_tokens / horizon
    return SimResult(
        policy=setup.policy,
        hours=hours,
        seed=seed,
        trained_steps=state.versions.trained,
        trained_tokens=tally.trained_tokens,
        trained_samples=tally.trained_samples,
        tokens_per_second=tps,
        samples_per_second=tally.trained_samples / horizon,
        steady_tokens_per_second=tally.steady_tokens / steady_window if steady_window > 0 else tps,
        predicted_tokens_per_second=setup.predicted_tokens_per_second,
        cost_dollars=tally.dollars,
        cost_per_hour=tally.dollars / hours,
        dollars_per_million_tokens=(
            tally.dollars / (tally.trained_tokens / 1e6) if tally.trained_tokens > 0 else math.inf
        ),
        trainer_idle_fraction=max(0.0, 1.0 - state.trainer.busy_seconds / horizon),
        gpu_hours_lost_to_preemption=tally.gpu_hours_lost,
        dropped_stale_samples=tally.dropped,
        preemptions=tally.preemptions,
        returns=tally.returns,
        staleness_histogram=dict(sorted(tally.staleness.items())),
        gpus=setup.trainer.gpus + sum(n.gpus for n in setup.rollout),
        series=tally.series,
        notes=setup.notes,
    )
