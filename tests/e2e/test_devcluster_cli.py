"""`hexrl cluster …` as a user runs it, in separate processes: up with an inventory, kubectl, down.

Uses its own cluster (not the session one) because it checks that `down` leaves no process, port or
folder behind.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hexrl.devcluster import procs

ROOT = Path(__file__).resolve().parents[2]
HEXRL = str(Path(sys.executable).parent / "hexrl")
NAME = "hexrl-e2e-cli"

pytestmark = pytest.mark.slow


def hexrl(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HEXRL, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_up_kubectl_kubeconfig_down_leaves_nothing() -> None:
    hexrl("cluster", "down", "--name", NAME)  # leftovers of an interrupted earlier run
    up = hexrl("cluster", "up", "--name", NAME, "--inventory", "manifests/clusters/hetero-3pool.yaml")
    try:
        assert up.returncode == 0, up.stderr
        kubeconfig = hexrl("cluster", "kubeconfig", "--name", NAME)
        assert kubeconfig.returncode == 0
        path = Path(kubeconfig.stdout.strip())
        assert path.is_file() and "client-certificate-data" in path.read_text()
        state = json.loads((path.parent / "state.json").read_text())

        nodes = hexrl("cluster", "kubectl", "--name", NAME, "--", "get", "nodes", "-L", "nvidia.com/gpu.product")
        assert nodes.returncode == 0, nodes.stderr
        rows = [line.split() for line in nodes.stdout.splitlines()[1:]]
        assert len(rows) == 8
        products = {r[0]: r[-1] for r in rows}
        assert products["h800-ondemand-2"] == "H800" and products["h20-spot-0"] == "H20"
        assert products["l40s-ondemand-1"] == "L40S"
        assert all(r[1] == "Ready" for r in rows), nodes.stdout

        status = hexrl("cluster", "status", "--name", NAME, "--json")
        info = json.loads(status.stdout)
        assert info["running"] and info["gpus"] == 64 and info["nodes"] == 8
    finally:
        down = hexrl("cluster", "down", "--name", NAME)
    assert down.returncode == 0, down.stderr
    for component, pid in state["pids"].items():
        assert not procs.alive(pid, component), f"{component} (pid {pid}) survived down"
    assert not [p for p in state["ports"].values() if procs.port_open(p)]
    assert not path.parent.exists(), "the work folder must be removed"
    after = hexrl("cluster", "kubeconfig", "--name", NAME)
    assert after.returncode == 1 and "not running" in after.stderr and "Traceback" not in after.stderr


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = hexrl("cluster", "up", "--name", "hexrl-e2e-busy", "--port", str(port))
    assert proc.returncode == 1
    assert f"port {port}" in proc.stderr and "already in use" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (Path(os.environ.get("HEXRL_CACHE_DIR", Path.home() / ".cache/hexrl")) / "clusters" / "hexrl-e2e-busy").exists()


def test_bad_inventory_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "inv.yaml"
    bad.write_text("apiVersion: hexrl.dev/v1alpha1\nkind: ClusterInventory\npools:\n- {name: a, gpu: H100, gpusPerNode: -1, nodes: 1}\n")
    proc = hexrl("cluster", "up", "--name", "hexrl-e2e-badinv", "--inventory", str(bad))
    try:
        assert proc.returncode == 1
        assert "pools[0].gpusPerNode" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        hexrl("cluster", "down", "--name", "hexrl-e2e-badinv")


def test_demo_shows_pools_and_job_then_cleans_up() -> None:
    """`make run` (for now): hetero-3pool nodes, the CRD, the example RLJob — then everything is gone."""
    name = "hexrl-e2e-demo"
    proc = hexrl("cluster", "demo", "--name", name)
    assert proc.returncode == 0, proc.stderr
    for product in ("H800", "H20", "L40S"):
        assert product in proc.stdout
    assert "rljob.hexrl.dev/qwen-math-grpo created" in proc.stdout
    assert re.search(r"NAME\s+PHASE\s+GPUS\s+TOKENS/S\s+\$/H\s+STALENESS\s+REWARD\s+AGE", proc.stdout), proc.stdout
    assert not (Path(os.environ.get("HEXRL_CACHE_DIR", Path.home() / ".cache/hexrl")) / "clusters" / name).exists()
