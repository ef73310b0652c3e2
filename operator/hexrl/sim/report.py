"""Running a comparison and reporting it: JSON rows, CSV files and PNG plots of the simulated policies.

`compare(...)` places every requested policy (`hexrl.sim.scenario`), draws one preemption trace for
all of them (so they face the same spot market), and simulates each over the same hours with the same
seed. The JSON row of a policy has stable camelCase keys (issue 7): `policy`, `tokensPerSecond`,
`samplesPerSecond`, `costPerHour`, `dollarsPerMillionTokens`, `trainerIdleFraction`,
`gpuHoursLostToPreemption`, `stalenessP50`, `stalenessMax`, plus `feasible`, `reason`,
`predictedTokensPerSecond`, `steadyTokensPerSecond`, `gpus`, `trainedSteps`, `preemptions`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from hexrl.api.models import RLJobSpec
from hexrl.sched import Cluster, PlannerSettings
from hexrl.sim.engine import SeriesPoint, SimResult, simulate
from hexrl.sim.scenario import build_policies
from hexrl.sim.settings import SimSettings
from hexrl.sim.trace import NodeEvent, poisson_trace


@dataclass(frozen=True)
class Outcome:
    """One policy's result, or why it could not run."""

    policy: str
    result: SimResult | None
    reason: str = ""


def compare(
    job: RLJobSpec,
    cluster: Cluster,
    policies: Sequence[str],
    hours: float,
    seed: int = 0,
    trace: tuple[NodeEvent, ...] | None = None,
    settings: SimSettings | None = None,
    planner_settings: PlannerSettings | None = None,
) -> list[Outcome]:
    """Simulate each policy on the same cluster, trace, hours and seed."""
    settings = settings or SimSettings()
    if trace is None:
        trace = poisson_trace(cluster, hours, seed, settings.mean_spot_outage_hours)
    out = []
    for ps in build_policies(policies, job, cluster, planner_settings):
        if ps.setup is None:
            out.append(Outcome(ps.policy, None, ps.reason))
        else:
            out.append(Outcome(ps.policy, simulate(ps.setup, trace, hours, seed, settings)))
    return out


def _num(x: float, nd: int) -> float | None:
    return None if not math.isfinite(x) else round(float(x), nd)


def row(o: Outcome) -> dict[str, Any]:
    """The JSON row of one outcome (see module doc)."""
    r = o.result
    if r is None:
        return {"policy": o.policy, "feasible": False, "reason": o.reason}
    return {
        "policy": o.policy,
        "feasible": True,
        "tokensPerSecond": _num(r.tokens_per_second, 1),
        "samplesPerSecond": _num(r.samples_per_second, 3),
        "costPerHour": _num(r.cost_per_hour, 2),
        "dollarsPerMillionTokens": _num(r.dollars_per_million_tokens, 4),
        "trainerIdleFraction": _num(r.trainer_idle_fraction, 4),
        "gpuHoursLostToPreemption": _num(r.gpu_hours_lost_to_preemption, 3),
        "stalenessP50": r.staleness_quantile(0.5),
        "stalenessMax": r.staleness_max,
        "stalenessMean": _num(r.staleness_mean, 3),
        "stalenessHistogram": {str(k): v for k, v in r.staleness_histogram.items()},
        "predictedTokensPerSecond": _num(r.predicted_tokens_per_second, 1),
        "steadyTokensPerSecond": _num(r.steady_tokens_per_second, 1),
        "gpus": r.gpus,
        "trainedSteps": r.trained_steps,
        "preemptions": r.preemptions,
        "droppedStaleSamples": r.dropped_stale_samples,
        "hours": r.hours,
        "seed": r.seed,
    }


_SUMMARY = (
    "policy", "feasible", "tokensPerSecond", "samplesPerSecond", "costPerHour", "dollarsPerMillionTokens",
    "trainerIdleFraction", "gpuHoursLostToPreemption", "stalenessP50", "stalenessMax", "stalenessMean",
    "predictedTokensPerSecond", "steadyTokensPerSecond", "gpus", "trainedSteps", "preemptions", "reason",
)


def write_csv(outcomes: Sequence[Outcome], out: Path) -> list[Path]:
    """summary.csv (one row per policy), timeseries.csv and staleness.csv (long format)."""
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.csv"
    with summary.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(_SUMMARY), extrasaction="ignore")
        w.writeheader()
        for o in outcomes:
            w.writerow(row(o))
    series = out / "timeseries.csv"
    names = [f.name for f in fields(SeriesPoint)]
    with series.open("w", newline="", encoding="utf-8") as f:
        w2 = csv.writer(f)
        w2.writerow(["policy", *names])
        for o in outcomes:
            for p in o.result.series if o.result else []:
                d = asdict(p)
                w2.writerow([o.policy, *(d[n] for n in names)])
    stale = out / "staleness.csv"
    with stale.open("w", newline="", encoding="utf-8") as f:
        w3 = csv.writer(f)
        w3.writerow(["policy", "lag", "samples"])
        for o in outcomes:
            for lag, n in (o.result.staleness_histogram.items() if o.result else ()):
                w3.writerow([o.policy, lag, n])
    return [summary, series, stale]


def write_plots(outcomes: Sequence[Outcome], out: Path) -> list[Path]:
    """PNG plots (matplotlib, Agg): throughput over time, cost efficiency, staleness distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    ran = [o for o in outcomes if o.result is not None]
    paths = []
    for name, draw in (("timeseries.png", _plot_timeseries), ("summary.png", _plot_summary),
                       ("staleness.png", _plot_staleness)):
        fig = draw(plt, ran)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        paths.append(out / name)
    return paths


def _plot_timeseries(plt: Any, ran: Sequence[Outcome]) -> Any:
    fig, axes = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    for o in ran:
        assert o.result is not None
        hrs = [p.time_s / 3600 for p in o.result.series]
        axes[0].plot(hrs, [p.tokens_per_second / 1e3 for p in o.result.series], label=o.policy, lw=1.2)
        axes[1].plot(hrs, [p.rollout_gpus_serving for p in o.result.series], label=o.policy, lw=1.2)
        axes[2].plot(hrs, [p.trainer_busy_fraction for p in o.result.series], label=o.policy, lw=1.2)
    axes[0].set_ylabel("trained k tokens/s")
    axes[1].set_ylabel("rollout GPUs serving")
    axes[2].set_ylabel("trainer busy fraction")
    axes[2].set_xlabel("hours")
    axes[0].legend(fontsize=8, ncol=3)
    axes[0].set_title("Simulated policies over time (same cluster, job, trace and seed)")
    return fig


def _plot_summary(plt: Any, ran: Sequence[Outcome]) -> Any:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    names = [o.policy for o in ran]
    a1.bar(names, [o.result.tokens_per_second / 1e3 for o in ran if o.result])
    a1.set_ylabel("k tokens/s (trained)")
    a1.set_title("Throughput")
    a2.bar(names, [o.result.dollars_per_million_tokens for o in ran if o.result], color="tab:orange")
    a2.set_ylabel("$ per million tokens")
    a2.set_title("Cost efficiency")
    for a in (a1, a2):
        a.tick_params(axis="x", rotation=30)
    return fig


def _plot_staleness(plt: Any, ran: Sequence[Outcome]) -> Any:
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(1, len(ran))
    for j, o in enumerate(ran):
        assert o.result is not None
        h = o.result.staleness_histogram
        total = sum(h.values()) or 1
        lags = sorted(h)
        ax.bar([lag + j * width for lag in lags], [h[lag] / total for lag in lags], width=width, label=o.policy)
    ax.set_xlabel("policy lag i − v of trained trajectories")
    ax.set_ylabel("fraction")
    ax.set_title("Staleness distribution")
    ax.legend(fontsize=8)
    return fig
