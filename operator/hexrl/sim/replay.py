"""Replay: the simulator runs a recorded job's plan and is compared with what the job really did.

Given a `Recording` (recording.py) and the calibration profile to judge (the recorded one by default, or
another), `replay` runs the discrete-event engine on the recorded plan — every rate from the cost model
under that profile — for the recorded duration with the recorded seed, and compares the two runs window by
window. The mathematics:

Windows
    The recording's span [t₀, t_N] is cut at the samples nearest to t₀ + k·(t_N − t₀)/n (k = 1 … n − 1,
    n = `ReplaySettings.windows`): observed cumulative counters are known only at samples. A window is
    *steady* when, at its start, both the observed and the simulated job have trained at least one step
    (the pipeline is full: pod start-up, model loading and the first batch are left out, and they differ
    between a simulator that starts serving at t = 0 and a job whose processes start then), and its end
    sample is not `done` (the job had not run out of steps). Summaries are over the steady windows.
Throughput, steps
    Observed rate of window [a, b]: (C(b) − C(a)) / (b − a), C the recorded cumulative trained tokens;
    simulated: the same of the engine's cumulative trained tokens, its series integrated and interpolated
    linearly at a and b (the series has `series_points_per_sample` points per sampling period). Steps likewise.
    Error e = observed / simulated − 1 (−50 %: the job did half of what the model predicted).
    Summary: median and worst (largest |e|) window error, and the overall ratio
    ρ = Σ observed tokens / Σ simulated tokens over the steady windows (the verdict's number is ρ − 1).
Staleness
    Observed: the coordinator's mean lag of its last batch, at the samples of the window where the step count
    rose (weighted by the new steps). Simulated: the mean over the engine's series intervals in the window that
    took a batch of their batches' mean lag.
    Compared as a difference in versions (a lag of 0 has no ratio).
Per-phase rates
    For each (GPU type, phase) the recording reports, the workers' work between two samples becomes an
    observed rate of the phase's own term exactly as the operator's online calibration makes it
    (`hexrl.sched.onlinecalibration.observations_between`: Δtokens / (ΔGPU-seconds − other·Δtokens)), and is
    compared with the cost model's rate at the plan's operating point under the profile, f·rate
    (`predicted_work_rates`, f the profile's factor): e = observed / (f·rate) − 1. A profile fitted from the
    same recording (`recording_observations` → `hexrl.sched.calibration.fit_calibration`) makes e ≈ 0.
Re-scoring the plan under the profile
    The engine takes the rollout's rates from the cost model (`setup_from_plan`) but the trainer's from the
    plan, so the trainer's rate is re-predicted from the same split: with (rate, other) of the train cell,
    T = g / (1/(f·rate) + other) tokens/s for the trainer's g GPUs (exactly the cost model's training rate
    with factor f). The plan's predicted throughput is re-scored with `rescored_tokens_per_second`.

Pure: no I/O; the recording is never mutated. The result types and their JSON document are in
replay_result.py (re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from statistics import median
from typing import Literal

import numpy as np

from hexrl.sched.calibration import CalibrationProfile, Observation
from hexrl.sched.costmodel import CostModelSettings
from hexrl.sched.onlinecalibration import (
    Cell,
    PhasePrediction,
    WorkSum,
    advance_base,
    observations_between,
    predicted_work_rates,
    rescored_tokens_per_second,
)
from hexrl.sched.settings import PlannerSettings
from hexrl.sched.types import Plan
from hexrl.sim.engine import simulate
from hexrl.sim.model import SimResult
from hexrl.sim.recording import Recording, RecordingError, RecordingSample
from hexrl.sim.replay_result import (
    ErrorSummary,
    PhaseRate,
    PhaseSummary,
    ReplayResult,
    ReplaySettings,
    ReplayWindow,
    format_change,
)
from hexrl.sim.scenario import setup_from_plan
from hexrl.sim.settings import SimSettings

__all__ = ["recording_observations", "replay"]


# ----------------------------------------------------------------------------------- the model side


def _cost(recording: Recording, profile: CalibrationProfile) -> CostModelSettings:
    """The cost model as the job ran: `profile`, and the rollout engine's sequence cap when the run had one."""
    cap = recording.header.max_sequences_per_replica
    base = CostModelSettings(calibration=profile)
    return base if cap is None else replace(base, max_sequences_per_replica=cap)


def _rescored_plan(recording: Recording, profile: CalibrationProfile, predicted: Mapping[Cell, PhasePrediction]) -> Plan:
    """The recorded plan with the trainer's rate and the plan's throughput predicted under `profile`."""
    h = recording.header
    plan, trainer = h.plan, h.plan.trainer
    train = predicted.get((trainer.gpu, "train"))
    rate = trainer.tokens_per_second
    if train is not None and train.rate > 0:
        f = profile.factor(trainer.gpu, "train")
        rate = trainer.gpus / (1.0 / (f * train.rate) + train.other_seconds_per_token)
    tokens = rescored_tokens_per_second(h.job, h.cluster, plan, _cost(recording, h.profile), _cost(recording, profile))
    return replace(plan, trainer=replace(trainer, tokens_per_second=rate), tokens_per_second=tokens,
                   training_tokens_per_second=rate)


def _simulate(recording: Recording, plan: Plan, profile: CalibrationProfile, s: ReplaySettings) -> SimResult:
    """The engine on the recorded plan for the recorded duration, seed and cluster."""
    h = recording.header
    setup = setup_from_plan("replay", plan, h.job, h.cluster, PlannerSettings(cost=_cost(recording, profile)))
    period = recording.duration_seconds / max(1, len(recording.samples) - 1)
    points = math.ceil(recording.duration_seconds / period * s.series_points_per_sample) if period > 0 else 2
    settings = SimSettings(samples_per_series=int(min(max(points, 2), s.max_series_points)), warmup_fraction=0.0)
    return simulate(setup, (), recording.duration_seconds / 3600.0, h.seed, settings)


@dataclass(frozen=True)
class _SimSeries:
    """The engine's series as cumulative curves at its sampling times (t = 0 included)."""

    times: np.ndarray
    tokens: np.ndarray
    steps: np.ndarray
    lag_sum: np.ndarray
    """Cumulative Σ mean lag of the intervals that took a batch (the engine records a batch's lags when the
    step starts, its tokens when it ends: the intervals' lags are averaged, not weighted by samples)."""
    lag_weight: np.ndarray
    """Cumulative count of the intervals that took a batch."""

    @classmethod
    def of(cls, result: SimResult) -> _SimSeries:
        times = np.array([0.0] + [p.time_s for p in result.series])
        dt = np.diff(times)
        tps = np.array([p.tokens_per_second for p in result.series])
        lag = np.array([p.staleness_mean for p in result.series])
        known = np.isfinite(lag)
        return cls(
            times=times,
            tokens=np.concatenate([[0.0], np.cumsum(tps * dt)]),
            steps=np.array([0.0] + [float(p.policy_version) for p in result.series]),
            lag_sum=np.concatenate([[0.0], np.cumsum(np.where(known, lag, 0.0))]),
            lag_weight=np.concatenate([[0.0], np.cumsum(known.astype(float))]),
        )

    def at(self, curve: np.ndarray, t: float) -> float:
        return float(np.interp(t, self.times, curve))

    def between(self, curve: np.ndarray, a: float, b: float) -> float:
        return self.at(curve, b) - self.at(curve, a)


# ----------------------------------------------------------------------------------- the observed side


def _sums(sample: RecordingSample) -> dict[Cell, WorkSum]:
    return {(w.gpu, w.phase): WorkSum(w.gpu, w.phase, w.tokens, w.seconds) for w in sample.observed_work}


def recording_observations(recording: Recording, min_seconds: float = 1.0) -> list[Observation]:
    """The calibration observations the operator would have made from these samples, read one after the
    other (`observations_between`, with `advance_base` carrying slow cells over): what
    `hexrl.sched.calibration.fit_calibration` fits a profile from."""
    h = recording.header
    predicted = predicted_work_rates(h.job, h.cluster, h.plan, _cost(recording, h.profile))
    out: list[Observation] = []
    base = _sums(recording.samples[0])
    for sample in recording.samples[1:]:
        now = _sums(sample)
        out.extend(observations_between(base, now, predicted, min_seconds))
        base = advance_base(base, now, min_seconds)
    return out


def _boundaries(samples: Sequence[RecordingSample], windows: int) -> list[int]:
    """Indices of the samples that cut the span into about `windows` equal windows (module docstring)."""
    times = np.array([x.t for x in samples])
    targets = times[0] + (times[-1] - times[0]) * np.arange(windows + 1) / windows
    picked = sorted({int(np.abs(times - t).argmin()) for t in targets} | {0, len(samples) - 1})
    return picked


def _observed_staleness(samples: Sequence[RecordingSample], i: int, j: int) -> float | None:
    """Mean lag of the batches trained between samples i and j, weighted by the new steps of each read."""
    total = weight = 0.0
    for k in range(i + 1, j + 1):
        new = samples[k].trained_steps - samples[k - 1].trained_steps
        if new > 0:
            total += samples[k].observed_staleness * new
            weight += new
    return total / weight if weight > 0 else None


def _phase_rates(before: Mapping[Cell, WorkSum], after: Mapping[Cell, WorkSum],
                 predicted: Mapping[Cell, PhasePrediction], profile: CalibrationProfile,
                 min_seconds: float) -> tuple[PhaseRate, ...]:
    """Observed own-term rate of each cell between two reads next to f·rate (module docstring)."""
    out = []
    for o in observations_between(before, after, predicted, min_seconds):
        expected = o.predicted * profile.factor(o.gpu, o.phase)
        out.append(PhaseRate(o.gpu, o.phase, o.observed, expected, o.observed / expected - 1.0, o.work_seconds))
    return tuple(out)


# ----------------------------------------------------------------------------------- windows


def _ratio_error(observed: float, predicted: float) -> float | None:
    return observed / predicted - 1.0 if predicted > 0 else None


@dataclass(frozen=True)
class _Context:
    samples: tuple[RecordingSample, ...]
    plan: Plan
    sim: _SimSeries
    predicted: Mapping[Cell, PhasePrediction]
    profile: CalibrationProfile
    settings: ReplaySettings


def _window(c: _Context, i: int, j: int) -> ReplayWindow:
    a, b = c.samples[i], c.samples[j]
    dt = b.t - a.t
    sim, lag_w = c.sim, c.sim.between(c.sim.lag_weight, a.t, b.t)
    obs_tps = (b.trained_tokens - a.trained_tokens) / dt
    sim_tps = sim.between(sim.tokens, a.t, b.t) / dt
    obs_steps, sim_steps = b.trained_steps - a.trained_steps, sim.between(sim.steps, a.t, b.t)
    return ReplayWindow(
        start_seconds=a.t,
        end_seconds=b.t,
        steady=a.trained_steps >= 1 and sim.at(sim.steps, a.t) >= 1 and not b.done,
        observed_tokens_per_second=obs_tps,
        simulated_tokens_per_second=sim_tps,
        throughput_error=_ratio_error(obs_tps, sim_tps),
        observed_steps=obs_steps,
        simulated_steps=sim_steps,
        steps_error=_ratio_error(obs_steps, sim_steps),
        observed_staleness=_observed_staleness(c.samples, i, j),
        simulated_staleness=sim.between(sim.lag_sum, a.t, b.t) / lag_w if lag_w > 0 else None,
        phases=_phase_rates(_sums(a), _sums(b), c.predicted, c.profile, c.settings.min_phase_seconds),
    )


def _summary(errors: Sequence[float | None], observed: float, predicted: float) -> ErrorSummary:
    known = [e for e in errors if e is not None]
    return ErrorSummary(
        median=median(known) if known else None,
        worst=max(known, key=abs) if known else None,
        ratio=observed / predicted if predicted > 0 else None,
    )


def _first_sums(samples: Sequence[RecordingSample]) -> dict[Cell, WorkSum]:
    """Each cell's sums at the first sample that reports it (a cell appears once its worker first reported)."""
    out: dict[Cell, WorkSum] = {}
    for sample in samples:
        for cell, sums in _sums(sample).items():
            out.setdefault(cell, sums)
    return out


def _phase_summaries(c: _Context, used: Sequence[ReplayWindow]) -> tuple[PhaseSummary, ...]:
    """Per cell: the rate from its first report to the last sample, and its window errors."""
    whole = _phase_rates(_first_sums(c.samples), _sums(c.samples[-1]), c.predicted, c.profile,
                         c.settings.min_phase_seconds)
    out = []
    for p in whole:
        errors = [r.error for w in used for r in w.phases if (r.gpu, r.phase) == (p.gpu, p.phase)]
        summary = _summary(errors, p.observed, p.predicted)
        out.append(PhaseSummary(p.gpu, p.phase, p.observed, p.predicted, summary, _busy(c, used, (p.gpu, p.phase))))
    return tuple(out)


def _busy(c: _Context, used: Sequence[ReplayWindow], cell: Cell) -> float | None:
    """The cell's busy GPU-seconds over the windows / (their seconds × the plan's GPUs of the cell)."""
    plan = c.plan
    gpus = (sum(r.gpus for r in plan.replicas if r.gpu == cell[0]) if cell[1] == "decode"
            else plan.trainer.gpus if cell == (plan.trainer.gpu, "train") else 0)
    at = {x.t: _sums(x) for x in c.samples}
    busy = span = 0.0
    for w in used:
        before, after = at[w.start_seconds].get(cell), at[w.end_seconds].get(cell)
        if before is not None and after is not None:
            busy += after.seconds - before.seconds
            span += w.end_seconds - w.start_seconds
    return busy / (span * gpus) if span > 0 and gpus > 0 else None


def _staleness(used: Sequence[ReplayWindow]) -> tuple[float | None, float | None, float | None]:
    """(observed mean, simulated mean, worst |difference|) over windows that trained batches on both sides."""
    pairs = [(w.observed_staleness, w.simulated_staleness) for w in used
             if w.observed_staleness is not None and w.simulated_staleness is not None]
    if not pairs:
        return None, None, None
    obs = [float(o) for o, _ in pairs]
    sim = [float(s) for _, s in pairs]
    worst = max(abs(o - s) for o, s in zip(obs, sim, strict=True))
    return sum(obs) / len(obs), sum(sim) / len(sim), worst


# ----------------------------------------------------------------------------------- the replay


def _verdict(observed: float, simulated: float, error: float | None, steady: int) -> str:
    span = f"{steady} steady window{'s' if steady != 1 else ''}" if steady else "all windows (none steady)"
    return f"simulated {simulated:,.0f} tok/s vs observed {observed:,.0f} ({format_change(error)}) over {span}"


def _notes(recording: Recording, steady: int, profile_source: str) -> tuple[str, ...]:
    notes = []
    if not steady:
        notes.append("no window is steady (the job never trained a step before the last window, or was done): "
                     "the summary is over every window, start-up included")
    if not recording.header.profile and profile_source == "recorded":
        notes.append("the recording holds no calibration profile: this is the catalog's prediction")
    if not any(x.observed_work for x in recording.samples):
        notes.append("the workers reported no observedWork (no GPU type given to them): no per-phase rates")
    return tuple(notes)


def replay(
    recording: Recording, profile: CalibrationProfile | None = None, settings: ReplaySettings | None = None
) -> ReplayResult:
    """Simulate the recorded plan under `profile` (None: the recorded one) and compare (module docstring).
    `RecordingError` when the recording has fewer than two samples."""
    s = settings or ReplaySettings()
    if len(recording.samples) < 2:
        raise RecordingError(f"{recording.source} has one sample; a replay compares windows between at least two")
    h = recording.header
    chosen = h.profile if profile is None else profile
    predicted = predicted_work_rates(h.job, h.cluster, h.plan, _cost(recording, h.profile))
    plan = _rescored_plan(recording, chosen, predicted)
    c = _Context(recording.samples, h.plan, _SimSeries.of(_simulate(recording, plan, chosen, s)), predicted,
                 chosen, s)
    cuts = _boundaries(recording.samples, min(s.windows, len(recording.samples) - 1))
    windows = tuple(_window(c, i, j) for i, j in pairwise(cuts))
    used = [w for w in windows if w.steady] or list(windows)
    span = sum(w.end_seconds - w.start_seconds for w in used)
    observed = sum(w.observed_tokens_per_second * (w.end_seconds - w.start_seconds) for w in used) / span
    simulated = sum(w.simulated_tokens_per_second * (w.end_seconds - w.start_seconds) for w in used) / span
    throughput = _summary([w.throughput_error for w in used], observed, simulated)
    steps = _summary([w.steps_error for w in used], sum(w.observed_steps for w in used),
                     sum(w.simulated_steps for w in used))
    stale_obs, stale_sim, stale_worst = _staleness(used)
    steady = sum(w.steady for w in windows)
    source: Literal["recorded", "given"] = "recorded" if profile is None else "given"
    return ReplayResult(
        source=recording.source, duration_seconds=recording.duration_seconds, seed=h.seed,
        profile_source=source, profile=chosen, observed_tokens_per_second=observed,
        simulated_tokens_per_second=simulated, planned_tokens_per_second=plan.tokens_per_second,
        throughput=throughput, steps=steps, staleness_observed=stale_obs, staleness_simulated=stale_sim,
        staleness_worst_difference=stale_worst, phases=_phase_summaries(c, used), windows=windows,
        steady_windows=steady, verdict=_verdict(observed, simulated, throughput.overall_error, steady),
        notes=_notes(recording, steady, source),
    )
