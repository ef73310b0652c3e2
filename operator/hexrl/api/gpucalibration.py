"""The GPUCalibration API (group hexrl.dev, cluster-scoped, one object named `default`).

What the operator learned about the cost model from running jobs, per (GPU type, phase): the factor the
planner multiplies the catalog's predicted rate by (hexrl.sched.calibration), with its interval, confidence
and evidence, and a bounded window of the recent observations the fit uses — so the fit survives an operator
restart (the operator reads the object back when it starts). A platform team reads it with
`kubectl get gpucalibration` and steers it through the spec:

    apiVersion: hexrl.dev/v1alpha1
    kind: GPUCalibration
    metadata: {name: default}
    spec:
      learning: true                 # false freezes the fitted factors (observations are still recorded)
      pinned:                        # fixed by the platform team: used as is, never re-fitted
        - {gpu: H20, phase: decode, factor: 0.62, reason: "vLLM 0.9 on our H20s"}
    status:
      factors:
        - {gpu: H20, phase: decode, factor: 0.62, pinned: true, fitted: 0.6, interval: [0.55, 0.66], ...}
      summary: "H20 decode 0.62 (pinned)"

The operator creates the object when it is missing and writes its status (one patch per progress poll cycle
at most); it never writes the spec. Pure models: no I/O.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from hexrl.api.models import API_VERSION, GROUP, ObjectMeta, _Model

__all__ = [
    "DEFAULT_NAME",
    "KIND",
    "PLURAL",
    "CalibrationObservation",
    "FactorStatus",
    "GPUCalibration",
    "GPUCalibrationSpec",
    "GPUCalibrationStatus",
    "PinnedFactor",
]

KIND = "GPUCalibration"
PLURAL = "gpucalibrations"
SINGULAR = "gpucalibration"
SHORT_NAMES = ["gpucal"]
DEFAULT_NAME = "default"
"""The one object the operator reads and writes."""
CRD_NAME = f"{PLURAL}.{GROUP}"

PhaseName = Literal["decode", "prefill", "train"]


class PinnedFactor(_Model):
    """A factor a platform team fixes for one (GPU type, phase)."""

    gpu: str = Field(..., min_length=1, max_length=63, description="GPU type (a catalog name, e.g. H20).")
    phase: PhaseName = Field(..., description="decode | prefill | train.")
    factor: float = Field(..., gt=0, le=1000, description="Multiplies the catalog's predicted rate of the phase.")
    reason: str | None = Field(None, max_length=256, description="Why (for the next reader).")


class GPUCalibrationSpec(_Model):
    """What a platform team controls."""

    learning: bool = Field(True, description="Fit factors from running jobs; false freezes the fitted factors.")
    pinned: list[PinnedFactor] = Field(
        default_factory=list, max_length=64,
        description="Factors used as given and never re-fitted; one per (gpu, phase).")

    cel_rules: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "!has(self.pinned) || self.pinned.all(a, self.pinned.exists_one(b, b.gpu == a.gpu && b.phase == a.phase))",
            "message": "spec.pinned holds one entry per (gpu, phase); remove the duplicate",
        }
    ]


class CalibrationObservation(_Model):
    """One observed rate of a running job next to the catalog's prediction (tokens per GPU-second)."""

    predicted: float = Field(..., gt=0, description="The uncalibrated cost model's rate.")
    observed: float = Field(..., gt=0, description="Measured: Δtokens / ΔGPU-seconds between two progress polls.")
    seconds: float = Field(..., gt=0, description="GPU-seconds of work it was measured over (its weight).")
    job: str = Field("", max_length=128, description="namespace/name of the RLJob it came from.")
    time: str = Field("", max_length=32, description="When it was taken (RFC 3339).")


class FactorStatus(_Model):
    """The factor of one (GPU type, phase) and the evidence behind it."""

    gpu: str
    phase: PhaseName
    factor: float = Field(..., description="The factor the planner uses: the pinned one, else the fitted one.")
    pinned: bool = Field(False, description="spec.pinned sets this cell.")
    fitted: float = Field(1.0, description="The fit's posterior factor (1 without evidence).")
    interval: list[float] = Field(default_factory=list, description="95 % interval on the fitted factor.")
    confidence: float = Field(0.0, description="Share of the fit's precision from data, 0 (catalog) to 1.")
    ratio: float = Field(1.0, description="Data-only factor: observed/predicted over the kept observations.")
    observed_seconds: float = Field(0.0, description="GPU-seconds of the kept observations.")
    used: int = Field(0, description="Observations kept by the fit.")
    rejected: int = Field(0, description="Observations rejected as outliers.")
    updated: str = Field("", description="When the fit last changed (RFC 3339).")
    recent: list[CalibrationObservation] = Field(
        default_factory=list, description="The most recent observations (a bounded window): what the fit uses.")


class GPUCalibrationStatus(_Model):
    """Written by the operator."""

    factors: list[FactorStatus] = Field(default_factory=list)
    summary: str = Field("", description="One line per the printer column, e.g. 'L4 decode 0.012 (0.93)'.")
    cells: int = Field(0, description="(GPU type, phase) cells with a factor.")
    learning: bool = Field(True, description="Whether the fitted factors follow new observations.")
    updated: str = Field("", description="Last status write (RFC 3339).")


class GPUCalibration(_Model):
    """Per-(GPU type, phase) correction factors of the planner's cost model, learned from running jobs."""

    api_version: str = Field(API_VERSION, alias="apiVersion")
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: GPUCalibrationSpec = Field(default_factory=GPUCalibrationSpec)
    status: GPUCalibrationStatus | None = None
