"""What a replay reports (replay.py computes it): its settings, the per-window and summary results, and their
JSON document and verdict formatting. Pure data; no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Literal

from pydantic.alias_generators import to_camel

from hexrl.sched.calibration import CalibrationProfile, Phase

__all__ = [
    "ErrorSummary",
    "PhaseRate",
    "PhaseSummary",
    "ReplayResult",
    "ReplaySettings",
    "ReplayWindow",
    "format_change",
    "replay_document",
]


@dataclass(frozen=True)
class ReplaySettings:
    """How a replay cuts and resolves the comparison."""

    windows: int = 12
    """Comparison windows over the recording (n in the module docstring); fewer when it has fewer samples."""
    min_phase_seconds: float = 1.0
    """GPU-seconds of work a window needs before its per-phase rate is compared (less says nothing)."""
    series_points_per_sample: int = 4
    """Simulated series points per recorded sampling period (the engine's time resolution for the windows)."""
    max_series_points: int = 50_000
    """Cap on the simulated series' points (a month-long recording at a 5 s period stays cheap)."""

    def __post_init__(self) -> None:
        if self.windows < 1 or self.series_points_per_sample < 1 or self.max_series_points < 2:
            raise ValueError("ReplaySettings: windows and series_points_per_sample ≥ 1, max_series_points ≥ 2")
        if self.min_phase_seconds < 0:
            raise ValueError("ReplaySettings.min_phase_seconds must be non-negative")


@dataclass(frozen=True)
class PhaseRate:
    """One (GPU type, phase) over one window."""

    gpu: str
    phase: Phase
    observed: float
    """Tokens per GPU-second of the phase's own term, from the workers' reported work."""
    predicted: float
    """The cost model's rate of the same at the plan's operating point, under the profile (f·rate)."""
    error: float
    """observed / predicted − 1."""
    work_seconds: float
    """GPU-seconds of work the observation rests on."""


@dataclass(frozen=True)
class ReplayWindow:
    """One window [start, end] of the recording, observed next to simulated."""

    start_seconds: float
    end_seconds: float
    steady: bool
    """Both pipelines full at the start and the job not yet done at the end (module docstring)."""
    observed_tokens_per_second: float
    simulated_tokens_per_second: float
    throughput_error: float | None
    """observed / simulated − 1 (None when the simulation trained nothing in the window)."""
    observed_steps: int
    simulated_steps: float
    """Steps the engine trained in the window (fractional: interpolated between series points)."""
    steps_error: float | None
    observed_staleness: float | None
    """Mean lag of the batches trained in the window (None: none was)."""
    simulated_staleness: float | None
    phases: tuple[PhaseRate, ...] = ()


@dataclass(frozen=True)
class ErrorSummary:
    """Errors (observed / predicted − 1) over the steady windows."""

    median: float | None
    worst: float | None
    """The error of largest magnitude, with its sign."""
    ratio: float | None
    """Σ observed / Σ predicted over the steady windows (None when nothing was predicted)."""

    @property
    def overall_error(self) -> float | None:
        return None if self.ratio is None else self.ratio - 1.0


@dataclass(frozen=True)
class PhaseSummary:
    """One (GPU type, phase) over the steady windows and over the whole recording."""

    gpu: str
    phase: Phase
    observed: float
    """Rate over the whole recording (first to last sample), tokens per GPU-second of the phase's own term."""
    predicted: float
    """f·rate: the cost model's rate under the profile."""
    errors: ErrorSummary
    """Window errors; `ratio` is observed / predicted over the whole recording."""
    busy_fraction: float | None = None
    """Share of the steady windows' wall time the plan's GPUs of this cell were busy (reported GPU-seconds /
    (seconds × GPUs)). The engine keeps a replica busy whenever the gate has admitted work for it, so a
    rollout busy well below 1 shows time the real workers lose between batches, which the simulation does not."""


@dataclass(frozen=True)
class ReplayResult:
    """The comparison of one replay."""

    source: str
    duration_seconds: float
    seed: int
    profile_source: Literal["recorded", "given"]
    profile: CalibrationProfile
    observed_tokens_per_second: float
    """Trained tokens/s over the steady windows (all windows when none is steady)."""
    simulated_tokens_per_second: float
    planned_tokens_per_second: float
    """The plan's own prediction re-scored under the profile (the planner's steady-state number)."""
    throughput: ErrorSummary
    steps: ErrorSummary
    staleness_observed: float | None
    staleness_simulated: float | None
    staleness_worst_difference: float | None
    """Largest |observed − simulated| mean lag of a steady window, versions."""
    phases: tuple[PhaseSummary, ...]
    windows: tuple[ReplayWindow, ...]
    steady_windows: int
    verdict: str
    notes: tuple[str, ...] = ()


def format_change(error: float | None) -> str:
    """An error as the verdict writes it: "−7.2 %", "+12.0 %"; beyond a factor of 10 either way as the ratio,
    "×0.00029" or "×35" (a percentage near −100 % hides how far off it is); "n/a" when unknown."""
    if error is None or not math.isfinite(error):
        return "n/a"
    ratio = 1.0 + error
    if 0 < ratio < 0.1 or ratio > 10:
        return f"×{ratio:.2g}"
    sign = "−" if error < 0 else "+"
    return f"{sign}{abs(error) * 100:.1f} %"


def _wire(value: Any) -> Any:
    """A result's value in JSON form: dataclasses as camelCase objects, tuples as lists, non-finite as null."""
    if is_dataclass(value) and not isinstance(value, type):
        return {to_camel(f.name): _wire(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_wire(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def replay_document(result: ReplayResult) -> dict[str, Any]:
    """The result as one JSON document: the fields of `ReplayResult` with camelCase keys, plus `overallError`
    (ratio − 1) next to every `ratio`."""
    doc: dict[str, Any] = _wire(result)
    for key in ("throughput", "steps"):
        doc[key]["overallError"] = getattr(result, key).overall_error
    for phase, summary in zip(doc["phases"], result.phases, strict=True):
        phase["errors"]["overallError"] = summary.errors.overall_error
    return doc
