"""Builders of recordings for the replay tests: a real plan of a GPU job, and an observed series made by the
simulator itself, optionally slowed down.

    job, cluster, plan = planned_job()
    lines = simulated_recording(job, cluster, plan, seconds=1800, rate_scale=0.5, phase_scale=0.5)
    rec = parse_recording(lines)

`rate_scale` multiplies the observed trained tokens and steps (the job did that share of what the model
predicts); `phase_scale` multiplies the workers' observed per-GPU-second rate of every phase's own term (their
reported busy seconds are what the cost model's split says they take at that rate).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from hexrl.api.models import RLJob, RLJobSpec
from hexrl.sched import Cluster, Plan, PlannerSettings, parse_inventory, plan
from hexrl.sched.calibration import CalibrationProfile
from hexrl.sched.costmodel import CostModelSettings, Workload
from hexrl.sched.onlinecalibration import predicted_work_rates
from hexrl.sim.engine import simulate
from hexrl.sim.recording import RecordingHeader, RecordingSample, WorkTotal, header_line, sample_line
from hexrl.sim.scenario import setup_from_plan
from hexrl.sim.settings import SimSettings

ROOT = Path(__file__).resolve().parents[3]
JOB_FILE = ROOT / "manifests/examples/rljob.yaml"

H100_POOL = {"name": "h100", "gpu": "H100", "gpusPerNode": 8, "nodes": 2}


def planned_job(eta: int = 4, profile: CalibrationProfile | None = None) -> tuple[RLJobSpec, Cluster, Plan]:
    """The example 1.5B GRPO job planned by the planner on two 8×H100 nodes (under `profile`)."""
    spec = RLJob.model_validate(yaml.safe_load(JOB_FILE.read_text())).spec.model_copy(deep=True)
    spec.budget.max_cost_per_hour = 1000
    spec.placement.gpu_types = None
    spec.staleness.max_policy_lag = eta
    cluster = parse_inventory({"apiVersion": "hexrl.dev/v1alpha1", "kind": "ClusterInventory", "pools": [H100_POOL]})
    settings = PlannerSettings(cost=CostModelSettings(calibration=profile or CalibrationProfile()),
                               compute_baselines=False)
    result = plan(spec, cluster, settings)
    assert isinstance(result, Plan), result
    return spec, cluster, result


def header(job: RLJobSpec, cluster: Cluster, p: Plan, profile: CalibrationProfile | None = None, seed: int = 0,
           period: float = 30.0) -> RecordingHeader:
    return RecordingHeader(job=job, cluster=cluster, plan=p, plan_source="operator",
                           profile=profile or CalibrationProfile(), seed=seed, sample_period_seconds=period,
                           recorded_by="tests")


def _work(job: RLJobSpec, cluster: Cluster, p: Plan, trained: float, phase_scale: float) -> tuple[WorkTotal, ...]:
    """Cumulative work of every cell the plan runs after `trained` tokens were trained: decode generated the
    response share of them, train trained them; seconds = tokens · (1/(phase_scale · rate) + other)."""
    w = Workload.from_spec(job)
    tokens = {"decode": trained * w.mean_new_tokens / w.tokens_per_sample, "train": trained}
    out = []
    for (gpu, phase), pred in sorted(predicted_work_rates(job, cluster, p, CostModelSettings()).items()):
        n = tokens[phase]
        out.append(WorkTotal(gpu=gpu, phase=phase, tokens=n,
                             seconds=n * (1.0 / (phase_scale * pred.rate) + pred.other_seconds_per_token)))
    return tuple(out)


def simulated_recording(
    job: RLJobSpec, cluster: Cluster, p: Plan, *, seconds: float = 1800.0, period: float = 30.0, seed: int = 0,
    rate_scale: float = 1.0, phase_scale: float = 1.0, profile: CalibrationProfile | None = None,
) -> list[str]:
    """The lines of a recording whose samples are the simulator's own run of `p` (under `profile`), every
    `period` seconds, with the observed rates scaled (module docstring)."""
    profile = profile or CalibrationProfile()
    setup = setup_from_plan("observed", p, job, cluster, PlannerSettings(cost=CostModelSettings(calibration=profile)))
    points = round(seconds / period)
    result = simulate(setup, (), seconds / 3600.0, seed, SimSettings(samples_per_series=points, warmup_fraction=0.0))
    lines = [header_line(header(job, cluster, p, profile, seed, period))]
    trained = staleness = 0.0
    lines.append(sample_line(RecordingSample(t=0.0, trained_steps=0, policy_version=0, trained_tokens=0.0)))
    previous = 0.0
    for point in result.series:
        trained += point.tokens_per_second * (point.time_s - previous) * rate_scale
        previous = point.time_s
        steps = math.floor(point.policy_version * rate_scale)
        # The coordinator reports the last batch's lag until the next batch: an interval without one keeps it.
        staleness = point.staleness_mean if math.isfinite(point.staleness_mean) else staleness
        lines.append(sample_line(RecordingSample(
            t=point.time_s, trained_steps=steps, policy_version=steps, trained_tokens=trained,
            tokens_per_second=point.tokens_per_second * rate_scale, observed_staleness=staleness,
            observed_work=_work(job, cluster, p, trained, phase_scale),
        )))
    return lines


def sample_doc(**fields: Any) -> dict[str, Any]:
    """A valid sample line's JSON object with `fields` (camelCase) changed."""
    doc: dict[str, Any] = {"t": 1.0, "trainedSteps": 0, "policyVersion": 0, "trainedTokens": 0.0, "observedWork": []}
    doc.update(fields)
    return doc
