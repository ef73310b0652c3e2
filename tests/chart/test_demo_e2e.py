"""`hexrl demo` (what `make run` runs) end to end on the real local control plane: it plans, shows the pods
on their pools, survives a spot reclaim, prints its summary and leaves nothing running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from chartlib import ROOT

from hexrl.devcluster import DevCluster

NAME = "hexrl-demo-test"


@pytest.mark.e2e
@pytest.mark.slow
def test_demo_runs_and_cleans_up(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "160", "HOME": os.environ.get("HOME", str(tmp_path))}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "hexrl"), "demo", "--name", NAME, "--reclaim", "1"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=900, check=False,
    )
    out = proc.stdout + proc.stderr
    try:
        assert proc.returncode == 0, out[-6000:]
        for step in ("1/6", "2/6", "3/6", "4/6", "5/6", "6/6"):
            assert step in out, f"step {step} missing:\n{out[-4000:]}"
        assert "best homogeneous plan at the same budget" in out
        assert "the provider reclaims 1 spot node(s)" in out
        assert "Re-plan after losing 1 node(s)" in out
        assert "the trainer was " in out  # whether the re-plan kept it is the operator's call (see its e2e tests)
        assert "nothing is left running" in out
    finally:
        cluster = DevCluster(name=NAME)
        running = cluster.is_running()
        cluster.down(quiet=True)
    assert not running, "the demo left its cluster running"
    pid_file = Path(env["HOME"]) / ".cache" / "hexrl" / "demo" / "operator.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        assert not Path(f"/proc/{pid}").exists() or "hexrl" not in Path(f"/proc/{pid}/cmdline").read_text(errors="ignore"), (
            "the demo left its operator running")


@pytest.mark.unit
def test_demo_with_a_missing_file_says_so() -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "hexrl"), "demo", "--job", "no/such/job.yaml", "--name", NAME],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 1
    assert "the RLJob file no/such/job.yaml does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
