"""What `hexrl run` leaves behind: checkpoints where the RLJob says (a rerun resumes there), the final Hugging
Face export, and training curves readable with TensorBoard's, W&B's (offline run file) and MLflow's own readers."""

from __future__ import annotations

import glob
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from tracking_readers import tensorboard_steps, wandb_history
from workers_builders import PYTHON, REPO, TINY_JOB

pytestmark = [pytest.mark.workers, pytest.mark.slow]


def _job(tmp_path: Path, checkpoint: dict, tracking: dict | None = None) -> Path:
    raw = yaml.safe_load(TINY_JOB.read_text())
    raw["spec"]["algorithm"].update({"promptsPerStep": 4, "groupSize": 2})
    raw["spec"]["checkpoint"] = checkpoint
    if tracking is not None:
        raw["spec"]["tracking"] = tracking
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(raw))
    return job


def _run(job: Path, steps: int, summary: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([PYTHON, "-m", "hexrl.cli", "run", str(job), "--steps", str(steps), "--quiet",
                           "--workers", "1", "--summary", str(summary)],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=env)


def test_checkpoint_path_is_honoured_a_rerun_resumes_and_the_outputs_are_readable(tmp_path):
    ck = tmp_path / "ck"
    tracking = {"wandb": {"project": "hexrl-test", "mode": "offline"}, "mlflow": {"experiment": "tiny"}}
    job = _job(tmp_path, {"path": str(ck), "everySteps": 1, "keep": 2}, tracking)
    first = _run(job, 2, tmp_path / "s1.json")
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"checkpoints in {ck} (spec.checkpoint.path)" in first.stderr
    summary = json.loads((tmp_path / "s1.json").read_text())
    assert summary["steps"] == 2 and summary["checkpointDir"] == str(ck)
    assert (ck / "step-00000002").is_dir() and summary["exportedPath"] == str(ck / "hf-final")

    second = _run(job, 4, tmp_path / "s2.json")  # the same file again, a larger budget: it continues
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming from step-00000002" in second.stderr
    assert json.loads((tmp_path / "s2.json").read_text())["steps"] == 2  # steps 3 and 4, not 1..4 again
    assert sorted(p.name for p in ck.glob("step-*")) == ["step-00000003", "step-00000004"]  # keep: 2

    from transformers import AutoModelForCausalLM, AutoTokenizer

    export = ck / "hf-final"
    assert json.loads((export / "hexrl_export.json").read_text())["step"] == 4
    model = AutoModelForCausalLM.from_pretrained(export, local_files_only=True)
    assert model.config.vocab_size == 24 and AutoTokenizer.from_pretrained(export, local_files_only=True)("1+2=")

    assert tensorboard_steps(ck / "tensorboard", "train/loss") == [1, 2, 3, 4]
    assert tensorboard_steps(ck / "tensorboard", "train/learning_rate") == [1, 2, 3, 4]

    runs = sorted(glob.glob(str(ck / "wandb-runs" / "wandb" / "offline-run-*" / "run-*.wandb")))
    assert len(runs) == 2  # one offline run per trainer process
    history = wandb_history(runs[1])
    assert [int(row["_step"]) for row in history] == [3, 4] and all("train/reward" in row for row in history)

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(ck / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("tiny")
    found = client.search_runs([experiment.experiment_id])
    assert len(found) == 2 and {r.info.run_name for r in found} == {"tiny-arith"}
    steps = sorted(m.step for r in found for m in client.get_metric_history(r.info.run_id, "train/loss"))
    assert steps == [1, 2, 3, 4]
    assert all(r.data.params["model.name"] == "tiny-random-llama" and r.info.status == "FINISHED" for r in found)


def test_unwritable_checkpoint_path_is_exit_1_with_a_sentence(tmp_path):
    (tmp_path / "a-file").write_text("")
    job = _job(tmp_path, {"path": str(tmp_path / "a-file" / "ck")})
    out = _run(job, 1, tmp_path / "s.json")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "cannot write checkpoints to" in out.stderr and "spec.checkpoint.path" in out.stderr
