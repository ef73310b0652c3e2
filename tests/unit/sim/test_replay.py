"""Replay of recorded jobs (hexrl.sim.replay) on recordings built by the simulator itself (recording_builders).

The observed series of these recordings is the engine's own run of the recorded plan, optionally scaled; so the
expected errors follow from the scale and nothing here is a recorded number: a replay of the simulator's own
series must agree with it, a series at half the rates must show −50 %, and a profile that says "half" (given, or
fitted from the recording's own work reports) must bring the error back to about 0.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from recording_builders import planned_job, simulated_recording
from typer.testing import CliRunner

from hexrl.cli import app
from hexrl.sched.calibration import CalibrationProfile, fit_calibration
from hexrl.sched.catalog import DEFAULT_CATALOG
from hexrl.sched.costmodel import CostModelSettings, Workload, training_tokens_per_second
from hexrl.sched.onlinecalibration import predicted_work_rates
from hexrl.sim.recording import parse_recording
from hexrl.sim.replay import _rescored_plan, recording_observations, replay
from hexrl.sim.replay_result import ReplaySettings, format_change, replay_document

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
HALF = CalibrationProfile.of({("H100", "decode"): 0.5, ("H100", "prefill"): 0.5, ("H100", "train"): 0.5})


@pytest.fixture(scope="module")
def planned():  # type: ignore[no-untyped-def]
    return planned_job()


def _recording(planned, **kw):  # type: ignore[no-untyped-def]
    return parse_recording(simulated_recording(*planned, **kw), "test.jsonl")


def test_the_simulators_own_series_replays_within_a_small_error(planned) -> None:  # type: ignore[no-untyped-def]
    result = replay(_recording(planned))
    assert result.steady_windows >= 8
    assert abs(result.throughput.overall_error) < 0.01
    assert abs(result.throughput.median) < 0.02 and abs(result.throughput.worst) < 0.05
    assert abs(result.steps.overall_error) < 0.02
    assert abs(result.staleness_observed - result.staleness_simulated) < 0.5
    assert {(p.gpu, p.phase) for p in result.phases} == {("H100", "decode"), ("H100", "train")}
    assert all(abs(p.errors.overall_error) < 1e-6 for p in result.phases)
    assert result.verdict.startswith(f"simulated {result.simulated_tokens_per_second:,.0f} tok/s vs observed")
    assert "(+0.0 %)" in result.verdict or "(−0.0 %)" in result.verdict


def test_a_job_at_half_the_rates_replays_at_minus_fifty_percent(planned) -> None:  # type: ignore[no-untyped-def]
    result = replay(_recording(planned, rate_scale=0.5, phase_scale=0.5))
    assert result.throughput.overall_error == pytest.approx(-0.5, abs=0.02)
    assert result.throughput.median == pytest.approx(-0.5, abs=0.03)
    assert result.steps.overall_error == pytest.approx(-0.5, abs=0.05)
    for p in result.phases:
        assert p.errors.overall_error == pytest.approx(-0.5, abs=1e-6)
        assert p.errors.median == pytest.approx(-0.5, abs=1e-6)
    assert "(−5" in result.verdict or "(−4" in result.verdict


def test_a_profile_that_corrects_the_factor_brings_the_error_back_near_zero(planned) -> None:  # type: ignore[no-untyped-def]
    rec = _recording(planned, rate_scale=0.5, phase_scale=0.5)
    catalog, corrected = replay(rec), replay(rec, HALF)
    assert corrected.profile_source == "given" and catalog.profile_source == "recorded"
    assert abs(corrected.throughput.overall_error) < 0.05 < abs(catalog.throughput.overall_error)
    assert corrected.simulated_tokens_per_second == pytest.approx(catalog.simulated_tokens_per_second / 2, rel=0.05)
    assert corrected.planned_tokens_per_second < catalog.planned_tokens_per_second
    assert all(abs(p.errors.overall_error) < 1e-6 for p in corrected.phases)


def test_a_profile_fitted_from_the_recordings_own_work_corrects_the_replay(planned) -> None:  # type: ignore[no-untyped-def]
    rec = _recording(planned, rate_scale=0.5, phase_scale=0.5)
    observations = recording_observations(rec)
    assert {(o.gpu, o.phase) for o in observations} == {("H100", "decode"), ("H100", "train")}
    fitted = fit_calibration(observations).profile()
    assert fitted.factor("H100", "decode") == pytest.approx(0.5, rel=0.02)
    result = replay(rec, fitted)
    assert abs(result.throughput.overall_error) < 0.1
    assert all(abs(p.errors.overall_error) < 0.03 for p in result.phases)


def test_the_trainer_is_re_predicted_as_the_cost_model_predicts_it_under_the_profile(planned) -> None:  # type: ignore[no-untyped-def]
    job, cluster, plan = planned
    rec = _recording(planned, seconds=300)
    predicted = predicted_work_rates(job, cluster, plan, CostModelSettings())
    same = _rescored_plan(rec, CalibrationProfile(), predicted)
    assert same.trainer.tokens_per_second == pytest.approx(plan.trainer.tokens_per_second, rel=1e-9)
    t = plan.trainer
    direct = training_tokens_per_second(DEFAULT_CATALOG.get(t.gpu), Workload.from_spec(job), t.data_parallel,
                                        t.tensor_parallel, t.pipeline_parallel, t.fsdp,
                                        CostModelSettings(calibration=HALF), 8)
    assert direct is not None
    halved = _rescored_plan(rec, HALF, predicted)
    assert halved.trainer.tokens_per_second == pytest.approx(direct.tokens_per_second, rel=1e-9)


def test_windows_cover_the_recording_and_warm_up_is_not_steady(planned) -> None:  # type: ignore[no-untyped-def]
    rec = _recording(planned, seconds=1800, period=30)
    result = replay(rec, settings=ReplaySettings(windows=6))
    assert len(result.windows) == 6
    assert result.windows[0].start_seconds == 0 and result.windows[-1].end_seconds == pytest.approx(1800)
    assert all(a.end_seconds == b.start_seconds for a, b in zip(result.windows, result.windows[1:], strict=False))
    assert not result.windows[0].steady  # nothing trained before t = 0


def test_the_json_document_holds_the_result(planned) -> None:  # type: ignore[no-untyped-def]
    result = replay(_recording(planned, rate_scale=0.5, phase_scale=0.5))
    doc = json.loads(json.dumps(replay_document(result)))
    assert doc["verdict"] == result.verdict
    assert doc["throughput"]["overallError"] == pytest.approx(result.throughput.overall_error)
    assert len(doc["windows"]) == len(result.windows) and "startSeconds" in doc["windows"][0]
    assert doc["phases"][0]["errors"]["overallError"] == pytest.approx(-0.5)


@pytest.mark.parametrize(("error", "text"), [(-0.072, "−7.2 %"), (0.12, "+12.0 %"), (-0.9997, "×0.0003"),
                                             (34.0, "×35"), (None, "n/a"), (math.nan, "n/a")])
def test_changes_are_written_as_the_verdict_writes_them(error: float | None, text: str) -> None:
    assert format_change(error) == text


# ------------------------------------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def half_file(planned, tmp_path_factory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("rec") / "half.jsonl"
    path.write_text("\n".join(simulated_recording(*planned, rate_scale=0.5, phase_scale=0.5)) + "\n")
    return path


def test_simulate_replay_json_prints_the_document_and_nothing_else(half_file: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "hexrl.cli", "simulate", "--replay", str(half_file), "-f", "json"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # fails on any banner or log line around the document
    assert doc["throughput"]["overallError"] == pytest.approx(-0.5, abs=0.02)


def test_simulate_replay_with_a_profile_and_out(half_file: Path, tmp_path: Path) -> None:
    profile = tmp_path / "half.yaml"
    profile.write_text("apiVersion: hexrl.dev/v1alpha1\nkind: CalibrationProfile\nfactors:\n"
                       + "".join(f"  - {{gpu: H100, phase: {p}, factor: 0.5}}\n" for p in ("decode", "prefill", "train")))
    res = CliRunner().invoke(app, ["simulate", "--replay", str(half_file), "--profile", str(profile),
                                   "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    verdict = res.output.strip().splitlines()[-2]  # the verdict, then the files written
    assert verdict.startswith("simulated ") and "the given profile" in res.output
    doc = json.loads((tmp_path / "out" / "replay.json").read_text())
    assert abs(doc["throughput"]["overallError"]) < 0.05 and doc["verdict"] == verdict
    assert (tmp_path / "out" / "replay-windows.csv").read_text().startswith("startSeconds,")


def test_simulate_replay_refuses_what_the_recording_already_says(half_file: Path) -> None:
    res = CliRunner().invoke(app, ["simulate", "--replay", str(half_file), "--job", "x.yaml"])
    assert res.exit_code == 1 and "drop --inventory, --job and --trace" in res.output
    res = CliRunner().invoke(app, ["simulate"])
    assert res.exit_code == 1 and "--inventory and --job are required" in res.output


def test_busy_fractions_follow_the_reported_gpu_seconds(planned) -> None:  # type: ignore[no-untyped-def]
    full = {(p.gpu, p.phase): p.busy_fraction for p in replay(_recording(planned)).phases}
    slow = {(p.gpu, p.phase): p.busy_fraction for p in replay(_recording(planned, phase_scale=0.5)).phases}
    for cell, busy in full.items():
        assert busy is not None and busy > 0
        # the same tokens at half the own-term rate: more GPU-seconds, at most twice as many
        assert 1 < (slow[cell] or 0) / busy <= 2
