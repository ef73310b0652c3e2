"""`hexrl cluster down` leaves nothing behind: no process, container, mount, network namespace, bridge,
iptables rule or cgroup of the real nodes, and the kernel settings they changed are restored. Runs last
in this folder (it stops the shared cluster; the session fixture's own teardown is then a no-op)."""

from __future__ import annotations

import json

import pytest
from real_harness import RealCluster, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_down_removes_every_trace(realcluster: RealCluster) -> None:
    image = realcluster.cluster.images()["workers"]
    # A pod running on each node while the cluster goes down: its sandbox, netns, veth and mounts exist.
    pods = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"sleeper-{i}", "namespace": "default"},
         "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                  "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never",
                                  "command": ["sleep", "3600"],
                                  "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}]}}
        for i, node in enumerate(("cpu-ondemand-0", "cpu-spot-0"))
    ]  # fmt: skip
    realcluster.apply(pods)
    wait_for(lambda: all(p["status"].get("phase") == "Running" for p in realcluster.pods("default")
                         if p["metadata"]["name"].startswith("sleeper")) and len(realcluster.pods("default")) >= 2,
             120, "both sleeper pods Running")
    containers = realcluster.containers_on_nodes()
    assert containers["cpu-ondemand-0"] and containers["cpu-spot-0"], containers
    state = json.loads((realcluster.cluster.workdir / "state.json").read_text())
    realcluster.cluster.down()
    leftovers = realcluster.cluster.real_leftovers(state)
    assert leftovers == {k: [] for k in leftovers}, leftovers
    assert not realcluster.cluster.workdir.exists()
