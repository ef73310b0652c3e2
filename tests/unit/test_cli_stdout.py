"""`hexrl plan --format json` run as a real process prints JSON and nothing else on its stdout.

In-process CLI tests (typer's CliRunner) capture Python's sys.stdout only; a native library writing to the
process's file descriptor 1 — HiGHS 1.16 prints its banner there when a solver object is created — slips past
them and breaks `hexrl plan --format json | jq`. This test runs the command as users do.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_plan_json_stdout_is_only_json() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hexrl.cli", "plan", "--inventory", str(ROOT / "manifests/clusters/h800-h20.yaml"),
         "--job", str(ROOT / "manifests/examples/rljob-7b.yaml"), "--format", "json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)  # fails on any banner or log line before or after the document
    assert plan["feasible"] and plan["solverStatus"] == "Optimal"
