"""A real run recorded and replayed: `hexrl run --record` on the tiny CPU job, then `hexrl simulate --replay`.

The recording says the processes stand in for L4 GPUs, so the catalog's prediction is that of an L4 while the
work is done by this machine's CPU: the per-phase rates must be off by a large factor. A profile fitted from the
same recording's observedWork (what the operator's online calibration would fit) must bring the simulated
throughput within ±25 % of the observed one. No cluster: the job runs as local processes on loopback (~1 min).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hexrl.sched.calibration import fit_calibration
from hexrl.sim.recording import load_recording
from hexrl.sim.replay import recording_observations, replay
from hexrl.sim.replay_result import format_change

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TINY_JOB = ROOT / "manifests/examples/rljob-tiny.yaml"
STEPS = 80
"""Enough steps for several windows after start-up (about 3 steps/s on 2 busy cores, after ~10-20 s of start)."""


def _record(tmp_path: Path) -> Path:
    record = tmp_path / "tiny.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "hexrl.cli", "run", str(TINY_JOB), "--steps", str(STEPS), "--quiet",
         "--checkpoint-dir", str(tmp_path / "ck"), "--record", str(record), "--record-every", "1",
         "--record-gpu", "L4"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["steps"] == STEPS
    assert f"samples to {record}" in proc.stderr
    return record


def test_a_recorded_local_run_replays_off_by_the_catalog_and_close_once_calibrated(tmp_path: Path) -> None:
    rec = load_recording(_record(tmp_path))
    h = rec.header
    assert h.plan_source == "local-layout" and h.plan.trainer.gpu == "L4" and len(h.plan.replicas) == 2
    assert h.job.algorithm.total_steps == STEPS and h.job.model.name == yaml.safe_load(TINY_JOB.read_text())[
        "spec"]["model"]["name"]
    assert h.max_sequences_per_replica == 2 * h.job.algorithm.group_size  # the workers' 2 groups per batch
    assert rec.samples[-1].trained_steps == STEPS and rec.samples[-1].done
    assert {(w.gpu, w.phase) for w in rec.samples[-1].observed_work} == {("L4", "decode"), ("L4", "train")}

    catalog = replay(rec)
    assert catalog.steady_windows >= 3, [(w.start_seconds, w.steady) for w in catalog.windows]
    assert {(p.gpu, p.phase) for p in catalog.phases} == {("L4", "decode"), ("L4", "train")}
    for p in catalog.phases:  # a CPU is not an L4: each phase is off by far more than an order of magnitude
        assert p.errors.ratio is not None and p.errors.ratio < 0.1, p

    fitted = fit_calibration(recording_observations(rec)).profile()
    calibrated = replay(rec, fitted)
    print(f"\ncatalog:    {catalog.verdict}; phases "
          + ", ".join(f"{p.phase} {format_change(p.errors.overall_error)}" for p in catalog.phases)
          + f"\ncalibrated: {calibrated.verdict}; phases "
          + ", ".join(f"{p.phase} {format_change(p.errors.overall_error)} (busy {p.busy_fraction:.0%})"
                      for p in calibrated.phases)
          + f"\nstaleness observed {calibrated.staleness_observed}, simulated {calibrated.staleness_simulated}")
    assert calibrated.throughput.overall_error is not None
    assert abs(calibrated.throughput.overall_error) <= 0.25, calibrated.verdict
    assert abs(calibrated.steps.overall_error or 0.0) <= 0.25
    for p in calibrated.phases:
        assert abs(p.errors.overall_error or 0.0) <= 0.25, p

    proc = subprocess.run([sys.executable, "-m", "hexrl.cli", "simulate", "--replay", str(tmp_path / "tiny.jsonl"),
                           "--format", "json"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verdict"] == catalog.verdict  # the command prints the same replay
