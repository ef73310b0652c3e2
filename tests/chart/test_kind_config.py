"""The kind path (`make kind-up`, issue #6 item 6) checked as far as a machine without Docker allows.

kind itself cannot run here (no Docker engine). What can fail without it is checked: the node labels of
`deploy/kind/kind-config.yaml` read by the operator's own snapshot code give the three pools the README
promises, the example job plans onto them, and `kind-up.sh` parses and refuses a missing Docker with a
sentence.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import ROOT

from hexrl.api.models import RLJobSpec
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import build_cluster, node_view
from hexrl.sched import plan
from hexrl.sched.types import Plan

pytestmark = pytest.mark.unit

KIND = ROOT / "deploy" / "kind"
SETTINGS = OperatorSettings()


def kind_nodes() -> list[dict[str, Any]]:
    """The kind workers as Nodes look once kind-up.sh advertised their GPUs (count from `nvidia.com/gpu.count`)."""
    config = yaml.safe_load((KIND / "kind-config.yaml").read_text())
    nodes = []
    for i, n in enumerate(config["nodes"]):
        labels = n.get("labels") or {}
        if n["role"] != "worker" or "nvidia.com/gpu.product" not in labels:
            continue
        gpus = labels["nvidia.com/gpu.count"]
        nodes.append({
            "metadata": {"name": f"hexrl-worker{i}", "labels": labels},
            "spec": {},
            "status": {"allocatable": {"nvidia.com/gpu": gpus}, "conditions": [{"type": "Ready", "status": "True"}]},
        })
    return nodes


def test_kind_nodes_are_the_pools_the_readme_promises() -> None:
    snap = build_cluster([node_view(n, SETTINGS) for n in kind_nodes()], [], None, SETTINGS)
    assert not snap.warnings, snap.warnings
    pools = {p.name: (p.gpu, p.spot, sum(n.gpus for n in snap.cluster.nodes if n.pool == p.name))
             for p in snap.cluster.pools}
    assert pools == {"h800-ondemand": ("H800", False, 8), "h20-spot": ("H20", True, 16),
                     "l40s-ondemand": ("L40S", False, 8)}


def test_the_example_job_plans_onto_the_kind_cluster() -> None:
    """What kind-up.sh tells the user to apply next must be feasible there."""
    snap = build_cluster([node_view(n, SETTINGS) for n in kind_nodes()], [], None, SETTINGS)
    job = yaml.safe_load((ROOT / "manifests" / "examples" / "rljob.yaml").read_text())
    result = plan(RLJobSpec.model_validate(job["spec"]), snap.cluster)
    assert isinstance(result, Plan), result
    assert result.replicas and result.tokens_per_second > 0


def test_kind_up_script_parses() -> None:
    bash = shutil.which("bash")
    assert bash
    proc = subprocess.run([bash, "-n", str(KIND / "kind-up.sh")], capture_output=True, text=True, timeout=30,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def test_kind_up_without_docker_says_what_to_do(tmp_path: Path) -> None:
    """No `docker` on PATH: exit 1 with a sentence pointing at `make run`, before touching anything."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "env"):  # what the script needs before its Docker check
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    bash = shutil.which("bash")
    assert bash
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "LANG": os.environ.get("LANG", "C.UTF-8")}
    proc = subprocess.run([bash, str(KIND / "kind-up.sh")], capture_output=True, text=True, env=env, timeout=30,
                          check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "'docker' is not on PATH" in proc.stderr and "make run" in proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout
