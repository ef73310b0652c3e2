"""`hexrl calibrate` writes a profile that `hexrl plan --profile` and `hexrl simulate --profile` accept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hexrl.cli import app
from hexrl.commands._inputs import EXIT_BAD_INPUT

ROOT = Path(__file__).resolve().parents[1].parent
INVENTORY = ROOT / "manifests" / "clusters" / "small.yaml"
TINY_JOB = ROOT / "manifests" / "examples" / "rljob-tiny.yaml"
# A very small shape and no timed seconds beyond the minimum repetitions: a few seconds on a busy CPU.
TINY = ["--layers", "1", "--hidden-size", "16", "--heads", "2", "--kv-heads", "1", "--intermediate-size", "32",
        "--vocab", "64", "--batch", "2", "--prompt-tokens", "8", "--new-tokens", "4", "--seconds", "0"]


def invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args}: raised {type(result.exception).__name__}: {result.exception}")
    return result


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("calib") / "l4.yaml"
    result = invoke(["calibrate", "--gpu", "nvidia-l4", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    return out


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny example job with a budget that affords the small cluster's H100 trainer and L4 rollout."""
    doc = yaml.safe_load(TINY_JOB.read_text())
    doc["spec"]["budget"] = {"maxCostPerHour": 20}
    path = tmp_path_factory.mktemp("job") / "tiny.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_calibrate_writes_measured_and_predicted_rates_and_factors(profile: Path) -> None:
    doc = yaml.safe_load(profile.read_text())
    assert doc["apiVersion"] == "hexrl.dev/v1alpha1" and doc["kind"] == "CalibrationProfile"
    assert doc["benchmark"]["device"] == "cpu" and doc["benchmark"]["shape"]["hiddenSize"] == 16
    assert {m["phase"] for m in doc["benchmark"]["measurements"]} == {"decode", "prefill", "train"}
    by_phase = {e["phase"]: e for e in doc["factors"]}
    assert set(by_phase) == {"decode", "prefill", "train"}
    for e in by_phase.values():
        assert e["gpu"] == "L4"  # the catalog's name for nvidia-l4
        assert e["measuredTokensPerSecond"] > 0 and e["predictedTokensPerSecond"] > 0
        assert e["interval"][0] <= e["factor"] <= e["interval"][1]
        assert e["observations"] + e["rejected"] >= 3
        # a CPU is far slower than the L4 it stands in for: the factor is below 1, pulled towards 1 by the prior
        assert e["ratio"] <= e["factor"] < 1.0


def test_plan_accepts_the_profile_and_its_rates_change(profile: Path, job: Path) -> None:
    base = invoke(["plan", "-i", str(INVENTORY), "-j", str(job), "-o", "json"])
    calibrated = invoke(["plan", "-i", str(INVENTORY), "-j", str(job), "-o", "json", "--profile", str(profile)])
    assert base.exit_code == 0 and calibrated.exit_code == 0, calibrated.output
    b, c = json.loads(base.stdout), json.loads(calibrated.stdout)
    assert b["feasible"] and c["feasible"]
    def l4(plan: dict) -> float:
        return sum(g["tokensPerSecond"] for g in plan["rollout"] if g["gpu"] == "L4")

    assert 0 < l4(c) < l4(b)  # this CPU, standing in for an L4, decodes far slower than the catalog's L4
    assert c["tokensPerSecond"] < b["tokensPerSecond"]


def test_simulate_accepts_the_profile(profile: Path, job: Path) -> None:
    result = invoke(["simulate", "-i", str(INVENTORY), "-j", str(job), "--hours", "0.05", "-p", "hexrl",
                     "-f", "json", "--profile", str(profile)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["feasible"]


def test_the_same_factor_in_two_profiles_is_one_sentence(profile: Path) -> None:
    result = invoke(["plan", "-i", str(INVENTORY), "-j", str(TINY_JOB), "--profile", str(profile),
                     "--profile", str(profile)])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "the L4 decode factor is also in" in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args,says", [
    (["--gpu", "Z9000"], "--gpu 'Z9000' is not in the GPU catalog"),
    (["--gpu", "L4", "--hidden-size", "30", "--heads", "4"], "--hidden-size 30 must be a multiple of --heads 4"),
    (["--gpu", "L4", "--kv-heads", "3"], "--kv-heads 3 must divide --heads 4"),
    (["--gpu", "L4", "--dtype", "int4"], "--dtype must be one of fp32, bf16, fp16"),
    (["--gpu", "L4", "--device", "tpu"], "--device must be cpu or cuda[:N]"),
])
def test_bad_calibrate_options_are_one_sentence_before_any_benchmark(tmp_path: Path, args: list[str], says: str) -> None:
    result = invoke(["calibrate", "--out", str(tmp_path / "p.yaml"), *args])
    assert result.exit_code == EXIT_BAD_INPUT and says in result.output, result.output
    assert not (tmp_path / "p.yaml").exists()
