"""A dataset with a finite number of epochs ends the job: when its prompts run out the trainer takes the last
batch that can form, checkpoints it and exits, `hexrl run` reports done — it does not wait for totalSteps."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from workers_builders import PYTHON, REPO, TINY_JOB

pytestmark = [pytest.mark.workers, pytest.mark.slow]


def test_the_job_ends_when_the_datasets_epochs_run_out(tmp_path: Path) -> None:
    data = tmp_path / "six.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{a}+{b}=", "answer": str(a + b)}) + "\n"
                            for a, b in [(1, 2), (2, 2), (0, 3), (3, 1), (1, 1), (2, 0)]))
    raw = yaml.safe_load(TINY_JOB.read_text())
    raw["spec"]["algorithm"].update({"promptsPerStep": 2, "groupSize": 2, "totalSteps": 50})
    raw["spec"]["dataset"] = {"path": str(data), "epochs": 1}
    raw["spec"]["checkpoint"] = {"path": str(tmp_path / "ck"), "everySteps": 50}
    raw["spec"]["export"] = {"atEnd": False}
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(raw))
    out = subprocess.run([PYTHON, "-m", "hexrl.cli", "run", str(job), "--quiet", "--workers", "1"],
                         capture_output=True, text=True, timeout=300, cwd=REPO,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 3, summary  # 6 prompts, 2 per step, one epoch
    assert (tmp_path / "ck" / "step-00000003" / "meta.json").is_file(), sorted(os.listdir(tmp_path / "ck"))
