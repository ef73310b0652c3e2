"""Calibration: per-(GPU type, phase) correction factors of the cost model, fitted from measurements.

The cost model (costmodel.py) predicts rates from first principles (a roofline with documented
efficiencies). Real kernels, drivers and engines land above or below it, differently per GPU type and
per phase. A *calibration profile* holds one multiplicative factor f per (GPU type, phase), phases
`decode` (the roofline step of a decode batch), `prefill` (the prompt pass) and `train` (on-device
training time: compute and optimizer); the cost model multiplies the predicted rate of that phase by f
(it divides the phase's time by f). No profile, or no entry, means f = 1: the catalog's prediction.

The fit (one cell c = (GPU type, phase) at a time; the cells are independent)
    Observation i of the cell: predicted rate p_i, observed rate o_i (same unit, e.g. tokens/s), and the
    seconds w_i it was observed over. Work in log space, where a factor is a shift and errors are
    relative:  y_i = ln(o_i / p_i),  θ = ln f,  y_i = θ + ε_i.
    Outliers (a preempted node, a cold cache, a mis-labelled GPU): with n ≥ `min_for_rejection`
    observations, m = median(y), s = 1.4826·median|y − m| (the MAD, scaled to σ for normal data),
    s* = max(s, `min_scale`); observation i is rejected when |y_i − m| > k·s* (k = `rejection_threshold`,
    Iglewicz & Hoaglin's 3.5). Fewer observations cannot tell an outlier from the truth: none is rejected.
    Noise of a kept observation: ε_i ~ N(0, σ_i²) with σ_i² = σ_b² + σ_1²·(1 s / w_i): a rate measured
    over w seconds averages w/(1 s) independent one-second windows of log-std σ_1 (`noise_sigma_1s`), and
    keeps a between-run part σ_b (`between_run_sigma`: another node of the same type, another day) that
    no single long run averages away.
    Prior from the catalog: θ ~ N(0, τ²) (τ = `prior_sigma`): the catalog is right up to a factor e^{±τ}.
    Posterior (normal–normal, conjugate):
        Λ = 1/τ² + Σ_i 1/σ_i²         θ̂ = (Σ_i y_i/σ_i²) / Λ        sd = Λ^{-1/2}
        factor = e^{θ̂},  interval = [e^{θ̂ − z·sd}, e^{θ̂ + z·sd}]  (z = `interval_z`, 1.96: 95 %),
        confidence = 1 − 1/(τ²·Λ) ∈ [0, 1): the share of the posterior precision that comes from data.
    So θ̂ = κ·ȳ with κ = confidence and ȳ the precision-weighted mean of the kept y_i: with little observed
    time κ ≈ 0 and the factor stays at the catalog's 1; it moves to the data as evidence accumulates
    (one observation of w seconds with σ_b = 0: κ = w / (w + w½), w½ = σ_1²/τ² · 1 s, 0.08 s by default;
    σ_b caps what one run can give at κ = τ²/(τ² + σ_b²), so only many runs make the factor certain).
    `ratio` = e^{ȳ} is the data-only (maximum-likelihood) factor, reported next to the fitted one.

Entry points: `fit_calibration(observations)` → `CalibrationFit` (one `FactorEstimate` per cell),
`calibration_profile(observations)` → the `CalibrationProfile` the planner takes (the seam for the
operator: observed rates in, profile out). `parse_profile` / `profile_document` convert the wire form
(kind CalibrationProfile, written by `hexrl calibrate`). Pure: no I/O, inputs never mutated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any, Literal, get_args

from hexrl.sched.catalog import Catalog

__all__ = [
    "API_VERSION",
    "KIND",
    "PHASES",
    "CalibrationError",
    "CalibrationFit",
    "CalibrationProfile",
    "CalibrationSettings",
    "FactorEstimate",
    "Observation",
    "Phase",
    "ProfileEntry",
    "calibration_profile",
    "fit_calibration",
    "fit_factor",
    "merge_profiles",
    "parse_profile",
    "profile_document",
]

API_VERSION = "hexrl.dev/v1alpha1"
KIND = "CalibrationProfile"

Phase = Literal["decode", "prefill", "train"]
PHASES: tuple[Phase, ...] = get_args(Phase)
"""The phases a factor can correct: decode (roofline step), prefill (prompt pass), train (on-device step)."""

_MAD_TO_SIGMA = 1.4826
"""1/Φ⁻¹(3/4): the MAD of normal data times this is its standard deviation."""


class CalibrationError(ValueError):
    """A calibration profile document is malformed; the message names the field and what to do."""


@dataclass(frozen=True)
class CalibrationSettings:
    """Constants of the fit (see the module docstring for where each enters)."""

    prior_sigma: float = 0.7
    """τ: standard deviation of the prior on ln f, dimensionless (default 0.7 ≈ ln 2: before any
    measurement the catalog's prediction is trusted to within a factor of 2 at one σ)."""
    noise_sigma_1s: float = 0.2
    """σ_1: standard deviation of ln(observed/predicted) for a rate measured over one second (default 0.2:
    one second of decode or a single training step jitters by ~20 %; longer windows average it down)."""
    between_run_sigma: float = 0.05
    """σ_b: standard deviation of ln(observed/predicted) between runs that no window length removes
    (another node of the type, clocks, neighbours), dimensionless (default 0.05, 5 %)."""
    rejection_threshold: float = 3.5
    """k: an observation further than k robust standard deviations from the median of its cell is rejected
    (default 3.5, Iglewicz & Hoaglin's modified z-score cut-off)."""
    min_scale: float = 0.1
    """Floor of the robust scale s*, in ln units (default 0.1, i.e. 10 %): observations that agree almost
    exactly (MAD ≈ 0) must not reject a neighbour a few per cent away."""
    min_for_rejection: int = 3
    """Fewest observations in a cell before any is rejected (default 3: with two, neither is the outlier)."""
    interval_z: float = 1.96
    """z of the reported interval on the factor (default 1.96: a central 95 % interval)."""


@dataclass(frozen=True)
class Observation:
    """One measured rate of one phase on one GPU type, next to the cost model's prediction for it."""

    gpu: str
    """GPU type (catalog name)."""
    phase: Phase
    predicted: float
    """The cost model's rate for what was measured (uncalibrated), e.g. tokens/s; positive."""
    observed: float
    """The measured rate, same unit; positive."""
    work_seconds: float
    """Seconds the rate was measured over (its evidence); positive."""

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"phase {self.phase!r} is not one of {', '.join(PHASES)}")
        for name in ("predicted", "observed", "work_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"Observation.{name} must be a positive finite number, got {value!r}")

    @property
    def log_ratio(self) -> float:
        """y = ln(observed / predicted)."""
        return math.log(self.observed / self.predicted)


@dataclass(frozen=True)
class FactorEstimate:
    """The fitted factor of one (GPU type, phase) cell."""

    gpu: str
    phase: Phase
    factor: float
    """e^{θ̂}: the posterior factor (1 with no evidence)."""
    low: float
    """Lower end of the interval on the factor (`interval_z`)."""
    high: float
    """Upper end of the interval on the factor."""
    confidence: float
    """Share of the posterior precision from data, 0 (prior only) to → 1 (data dominate)."""
    ratio: float
    """Data-only factor e^{ȳ} over the kept observations (1 when none is kept)."""
    evidence_seconds: float
    """Seconds of observation kept."""
    used: int
    """Observations kept."""
    rejected: int
    """Observations rejected as outliers."""


@dataclass(frozen=True)
class ProfileEntry:
    """One factor of a profile."""

    gpu: str
    phase: Phase
    factor: float


@dataclass(frozen=True)
class CalibrationProfile:
    """Factors per (GPU type, phase) that multiply the cost model's predicted rates; empty = the catalog."""

    entries: tuple[ProfileEntry, ...] = ()

    def __post_init__(self) -> None:
        seen: set[tuple[str, str]] = set()
        for e in self.entries:
            if not (math.isfinite(e.factor) and e.factor > 0):
                raise ValueError(f"factor of {e.gpu}/{e.phase} must be positive and finite, got {e.factor!r}")
            if (e.gpu, e.phase) in seen:
                raise ValueError(f"two factors for {e.gpu}/{e.phase}")
            seen.add((e.gpu, e.phase))

    @classmethod
    def of(cls, factors: Mapping[tuple[str, Phase], float]) -> CalibrationProfile:
        """A profile from {(gpu, phase): factor}, in a stable order."""
        return cls(tuple(ProfileEntry(g, p, f) for (g, p), f in sorted(factors.items())))

    def factor(self, gpu: str, phase: Phase) -> float:
        """The factor of `phase` on `gpu` (a catalog name), 1.0 when the profile has none."""
        for e in self.entries:
            if e.gpu == gpu and e.phase == phase:
                return e.factor
        return 1.0

    def __bool__(self) -> bool:
        return bool(self.entries)


@dataclass(frozen=True)
class CalibrationFit:
    """The fit of every cell that had observations."""

    estimates: tuple[FactorEstimate, ...]
    settings: CalibrationSettings = field(default_factory=CalibrationSettings)

    def profile(self) -> CalibrationProfile:
        """The profile of the fitted factors (what the planner takes)."""
        return CalibrationProfile(tuple(ProfileEntry(e.gpu, e.phase, e.factor) for e in self.estimates))

    def get(self, gpu: str, phase: Phase) -> FactorEstimate | None:
        return next((e for e in self.estimates if e.gpu == gpu and e.phase == phase), None)


# ------------------------------------------------------------------------------------------ fit


def _kept(obs: Sequence[Observation], s: CalibrationSettings) -> list[Observation]:
    """The observations within k robust standard deviations of the cell's median log ratio."""
    if len(obs) < s.min_for_rejection:
        return list(obs)
    ys = [o.log_ratio for o in obs]
    m = median(ys)
    scale = max(_MAD_TO_SIGMA * median(abs(y - m) for y in ys), s.min_scale)
    return [o for o, y in zip(obs, ys, strict=True) if abs(y - m) <= s.rejection_threshold * scale]


def fit_factor(gpu: str, phase: Phase, obs: Sequence[Observation], s: CalibrationSettings) -> FactorEstimate:
    """The posterior factor of one cell from its observations (the module docstring's mathematics)."""
    kept = _kept(obs, s)
    prior_precision = 1.0 / s.prior_sigma**2
    data_precision = 0.0
    weighted = 0.0
    for o in kept:
        var = s.between_run_sigma**2 + s.noise_sigma_1s**2 / o.work_seconds
        data_precision += 1.0 / var
        weighted += o.log_ratio / var
    precision = prior_precision + data_precision
    theta = weighted / precision
    sd = 1.0 / math.sqrt(precision)
    return FactorEstimate(
        gpu=gpu,
        phase=phase,
        factor=math.exp(theta),
        low=math.exp(theta - s.interval_z * sd),
        high=math.exp(theta + s.interval_z * sd),
        confidence=data_precision / precision,
        ratio=math.exp(weighted / data_precision) if data_precision > 0 else 1.0,
        evidence_seconds=sum(o.work_seconds for o in kept),
        used=len(kept),
        rejected=len(obs) - len(kept),
    )


def fit_calibration(observations: Iterable[Observation], settings: CalibrationSettings | None = None) -> CalibrationFit:
    """One `FactorEstimate` per (GPU type, phase) that has observations, sorted by GPU type and phase."""
    s = settings or CalibrationSettings()
    cells: dict[tuple[str, Phase], list[Observation]] = {}
    for o in observations:
        cells.setdefault((o.gpu, o.phase), []).append(o)
    return CalibrationFit(tuple(fit_factor(g, p, cells[(g, p)], s) for g, p in sorted(cells)), s)


def calibration_profile(
    observations: Iterable[Observation], settings: CalibrationSettings | None = None
) -> CalibrationProfile:
    """The seam for the operator: observed rates next to the planner's predictions in, a profile out."""
    return fit_calibration(observations, settings).profile()


def merge_profiles(profiles: Iterable[CalibrationProfile]) -> CalibrationProfile:
    """One profile holding the entries of all; a (GPU type, phase) given twice raises ValueError."""
    return CalibrationProfile(tuple(e for p in profiles for e in p.entries))


# ------------------------------------------------------------------------------------ wire form


def profile_document(fit: CalibrationFit, benchmark: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The wire form of a fit (kind CalibrationProfile; camelCase), with what was measured when given."""
    factors = [
        {
            "gpu": e.gpu,
            "phase": e.phase,
            "factor": e.factor,
            "interval": [e.low, e.high],
            "confidence": e.confidence,
            "ratio": e.ratio,
            "evidenceSeconds": e.evidence_seconds,
            "observations": e.used,
            "rejected": e.rejected,
        }
        for e in fit.estimates
    ]
    doc: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND}
    if benchmark is not None:
        doc["benchmark"] = dict(benchmark)
    doc["factors"] = factors
    return doc


def _entry(raw: Any, where: str, catalog: Catalog) -> ProfileEntry:
    if not isinstance(raw, Mapping):
        raise CalibrationError(f"{where} must be a mapping with gpu, phase and factor")
    gpu, phase, factor = raw.get("gpu"), raw.get("phase"), raw.get("factor")
    if not isinstance(gpu, str) or not gpu:
        raise CalibrationError(f"{where}.gpu must be a GPU type name, e.g. H100")
    name = catalog.canonical(gpu)
    if name is None:
        raise CalibrationError(
            f"{where}.gpu {gpu!r} is not in the GPU catalog; known types: {', '.join(catalog.names)}"
        )
    if phase not in PHASES:
        raise CalibrationError(f"{where}.phase must be one of {', '.join(PHASES)}, got {phase!r}")
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not (math.isfinite(factor) and factor > 0):
        raise CalibrationError(f"{where}.factor must be a positive number, got {factor!r}")
    return ProfileEntry(name, phase, float(factor))


def parse_profile(data: Mapping[str, Any], catalog: Catalog) -> CalibrationProfile:
    """A parsed CalibrationProfile document → `CalibrationProfile` (GPU names made canonical through
    `catalog`); apiVersion/kind are the caller's check. Only `factors[*].{gpu,phase,factor}` are read."""
    raw = data.get("factors")
    if not isinstance(raw, list):
        raise CalibrationError("factors must be a list of {gpu, phase, factor} entries")
    entries = [_entry(item, f"factors[{i}]", catalog) for i, item in enumerate(raw)]
    seen: dict[tuple[str, str], int] = {}
    for i, e in enumerate(entries):
        if (e.gpu, e.phase) in seen:
            raise CalibrationError(
                f"factors[{i}] repeats {e.gpu}/{e.phase} (also factors[{seen[(e.gpu, e.phase)]}]); keep one"
            )
        seen[(e.gpu, e.phase)] = i
    return CalibrationProfile(tuple(entries))
