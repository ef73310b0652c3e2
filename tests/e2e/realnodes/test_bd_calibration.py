"""Online calibration on real nodes: the tiny job runs in pods on CPU nodes that advertise L4 GPUs, so the
rates its workers observe are orders of magnitude below the catalog's; the operator learns per-(GPU type, phase)
factors from what the job's workers measure, and afterwards its prediction for the same job is within ±25 %
of what the job then measures — said by status.calibration and a Calibrated Event.

The host operator polls progress every 5 s here (the default 15 s works the same, only slower).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
from real_harness import RealCluster, wait_for
from test_b_tiny_job import Job, pvc, run_with_host_operator, tiny_job

from hexrl.api import reasons
from hexrl.api.crd import calibration_crd_yaml
from hexrl.api.gpucalibration import CRD_NAME as CALIBRATION_CRD_NAME

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NS = "calib"
JOB = "tiny-arith"
POLL = "HEXRL_OPERATOR_SCALING_POLL_SECONDS"
TOLERANCE = 0.25
"""The issue's claim: after calibration the prediction is within ±25 % of the measured rate."""


@pytest.fixture(scope="module")
def job(realcluster: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Job]:
    realcluster.kubectl("apply", "-f", "-", input=calibration_crd_yaml())
    realcluster.cluster.wait_established(CALIBRATION_CRD_NAME)
    realcluster.kubectl("delete", "gpucalibration", "default", "--ignore-not-found", check=False)  # learn afresh
    before = os.environ.get(POLL)
    os.environ[POLL] = "5"  # the host operator inherits the environment
    try:
        yield from run_with_host_operator(realcluster, tmp_path_factory.mktemp("operator"), NS, JOB,
                                          [pvc(NS), tiny_job(NS, total_steps=100000)], calibration=True)
    finally:
        if before is None:
            os.environ.pop(POLL, None)
        else:
            os.environ[POLL] = before
        realcluster.kubectl("delete", "gpucalibration", "default", "--ignore-not-found", check=False)


def calibration(job: Job) -> dict[str, Any]:
    return dict(job.status().get("calibration") or {})


def calibrated_events(job: Job) -> list[dict[str, Any]]:
    items = job.rc.json("get", "events", "-n", NS, "--field-selector",
                        f"involvedObject.name={JOB},involvedObject.kind=RLJob")["items"]
    return [e for e in items if e["reason"] == reasons.CALIBRATED]


def gpucalibration(job: Job) -> dict[tuple[str, str], dict[str, Any]]:
    proc = job.rc.cluster.kubectl("get", "gpucalibration", "default", "-o", "json", check=False)
    if proc.returncode != 0:  # the operator creates it when it starts; not yet
        return {}
    status = json.loads(proc.stdout).get("status") or {}
    return {(f["gpu"], f["phase"]): f for f in status.get("factors", [])}


def test_the_observed_rates_are_an_order_of_magnitude_off_the_catalog_on_these_nodes(job: Job) -> None:
    """What the workers measure per (GPU type, phase) — decode and training tokens per busy GPU-second — is
    far below what the catalog predicts for an L4 (the data-only ratio observed/predicted of each cell)."""
    cells = wait_for(lambda: (c := gpucalibration(job)) and all(c.get(("L4", p), {}).get("used") for p in
                                                                ("decode", "train")) and c,
                     600, "observations of L4 decode and train in the GPUCalibration", interval=5)
    ratios = {phase: cells[("L4", phase)]["ratio"] for phase in ("decode", "train")}
    c = calibration(job)
    print(f"observed/catalog per phase: {ratios}; job: catalog {c.get('catalogTokensPerSecond')} tokens/s, "
          f"observed {c.get('observedTokensPerSecond')}")
    assert all(r <= 0.1 for r in ratios.values()), ratios


def test_after_calibration_the_prediction_is_within_25_percent_of_the_measurement(job: Job) -> None:
    event = wait_for(lambda: calibrated_events(job), 600, "a Calibrated Event", interval=5)[0]
    print("event:", event["message"])
    assert "L4 " in event["message"] and "× the catalog" in event["message"]
    time.sleep(60)  # let a re-plan's new pods start and the factors settle with more evidence
    errors, samples = [], []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(errors) < 12:
        c = calibration(job)
        if c.get("predictionError") is not None:
            errors.append(c["predictionError"])
            samples.append((c["predictedTokensPerSecond"], c["observedTokensPerSecond"]))
        time.sleep(10)
    assert len(errors) >= 6, f"too few measurements: {samples}"
    typical = statistics.median(errors)
    print(f"predicted vs observed tokens/s: {samples}; median error {typical:+.1%}")
    factors = {(f["gpu"], f["phase"]): f["factor"] for f in calibration(job)["factors"]}
    print("factors:", factors)
    assert ("L4", "decode") in factors and factors[("L4", "decode")] < 0.5
    assert abs(typical) <= TOLERANCE, f"the calibrated prediction is {typical:+.1%} off (samples {samples})"
    assert calibration(job)["message"].startswith("Calibrated: ")
