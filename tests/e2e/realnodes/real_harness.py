"""Fixtures of the real-node suite: one dev cluster with two real kubelet nodes for the whole module set.

`realcluster` starts `hexrl cluster up` on manifests/clusters/real-cpu.yaml (one on-demand and one spot
real node: containerd + runc, CNI bridges, kube-proxy, CoreDNS) with the locally built images loaded.
It is shared by every test in this folder (session scope: starting it costs ~1 min once the images are
cached) and torn down at the end; `test_zz_teardown.py` then checks that nothing was left on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hexrl.api.crd import CRD_NAME, crd_yaml
from hexrl.devcluster import DevCluster

ROOT = Path(__file__).resolve().parents[3]
REAL_INVENTORY = ROOT / "manifests" / "clusters" / "real-cpu.yaml"
CLUSTER_NAME = os.environ.get("HEXRL_REAL_TEST_CLUSTER", "hexrl-real")


def wait_for(fn: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    """Poll `fn` until it returns something truthy; fail naming `what` (bounded)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {str(last)[:500]})")


class RealCluster:
    """The running cluster plus kubectl helpers."""

    def __init__(self, cluster: DevCluster) -> None:
        self.cluster = cluster
        self.state_before_down: dict[str, Any] | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
        return self.cluster.kubectl(*args, input=input, check=check, timeout=timeout).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def apply(self, obj: dict[str, Any] | list[dict[str, Any]]) -> None:
        items = obj if isinstance(obj, list) else [obj]
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", "pods", "-n", namespace] + (["-l", selector] if selector else [])
        return list(self.json(*args)["items"])

    def containers_on_nodes(self) -> dict[str, list[str]]:
        """Container ids in each real node's containerd (namespace k8s.io)."""
        state = json.loads((self.cluster.workdir / "state.json").read_text())
        out = {}
        for n in state["real_nodes"]:
            sock = Path(n["dir"]) / "containerd.sock"
            proc = subprocess.run(["ctr", "--address", str(sock), "-n", "k8s.io", "containers", "list", "-q"],
                                  capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
            out[n["name"]] = proc.stdout.split()
        return out


@pytest.fixture(scope="session")
def realcluster() -> Iterator[RealCluster]:
    cluster = DevCluster(name=CLUSTER_NAME)
    keep = os.environ.get("HEXRL_KEEP_TEST_CLUSTER") == "1"
    if keep and cluster.is_running():  # a kept cluster is reused across runs while developing
        for role in ("workers", "operator"):
            cluster.load_image(role)  # the checkout may have changed since it started
    else:
        cluster.down(quiet=True)  # leftovers of an interrupted run
        cluster.up(inventory=REAL_INVENTORY)
    rc = RealCluster(cluster)
    rc.kubectl("apply", "-f", "-", input=crd_yaml())
    rc.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    try:
        yield rc
    finally:
        if not keep:
            state = cluster.workdir / "state.json"
            if state.exists():
                rc.state_before_down = json.loads(state.read_text())
            cluster.down(quiet=True)
