"""The tiny default job really learns, through `hexrl run` (Ray local, coordinator, workers, trainer)."""

from __future__ import annotations

import json
import subprocess

import pytest
from workers_builders import PYTHON, REPO, TINY_JOB

pytestmark = [pytest.mark.workers, pytest.mark.slow]


def test_tiny_job_learns_to_above_0_9(tmp_path):
    summary = tmp_path / "summary.json"
    out = subprocess.run(
        [PYTHON, "-m", "hexrl.cli", "run", str(TINY_JOB), "--steps", "300", "--quiet", "--summary", str(summary),
         "--checkpoint-dir", str(tmp_path / "ck")],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(summary.read_text())
    last_line = json.loads(out.stdout.strip().splitlines()[-1])
    assert last_line == result
    print("learning summary:", result)
    assert set(result) >= {"steps", "trainedSamples", "initialReward", "finalReward", "tokensPerSecond",
                           "maxObservedStaleness", "wallSeconds"}
    assert result["steps"] == 300 and result["trainedSamples"] == 300 * 32 * 8
    assert result["initialReward"] < 0.3  # a random model rarely answers right
    assert result["finalReward"] >= 0.9
    assert result["maxObservedStaleness"] <= 4  # the example job's η
    assert result["tokensPerSecond"] > 0
