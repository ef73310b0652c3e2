"""The local control plane itself: simulated GPU nodes, scheduling onto them, RBAC, inventory updates."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from builders import gpu_pod, inventory, pool
from hexrl.devcluster import DevCluster


def _nodes(c: DevCluster) -> dict[str, dict[str, Any]]:
    items = json.loads(c.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return {n["metadata"]["name"]: n for n in items}


def _wait_pod(c: DevCluster, name: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    pod: dict[str, Any] = {}
    while time.monotonic() < deadline:
        pod = json.loads(c.kubectl("get", "pod", name, "-o", "json").stdout)
        if pod["status"].get("phase") == "Running":
            return pod
        time.sleep(0.5)
    return pod


def test_small_inventory_nodes_have_gpu_labels_and_allocatable(devcluster: DevCluster) -> None:
    nodes = _nodes(devcluster)
    assert {"h100-ondemand-0", "l4-spot-0", "l4-spot-1"} <= nodes.keys()
    h100 = nodes["h100-ondemand-0"]
    labels = h100["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "H100"
    assert labels["hexrl.dev/pool"] == "h100-ondemand"
    assert labels["karpenter.sh/capacity-type"] == "on-demand" and labels["hexrl.dev/spot"] == "false"
    assert labels["topology.kubernetes.io/zone"] == "zone-a"
    assert int(labels["nvidia.com/gpu.memory"]) > 70_000  # 80 GB in MiB
    assert h100["status"]["allocatable"]["nvidia.com/gpu"] == "2"
    spot = nodes["l4-spot-1"]["metadata"]["labels"]
    assert spot["karpenter.sh/capacity-type"] == "spot" and spot["hexrl.dev/price-per-gpu-hour"] == "0.35"
    for n in nodes.values():
        ready = {c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"]
        assert ready == "True", n["metadata"]["name"]


def test_gpu_pod_binds_to_matching_node_and_runs(devcluster: DevCluster) -> None:
    pod = gpu_pod("gpu-h100", gpus=2, node_selector={"nvidia.com/gpu.product": "H100"})
    devcluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    try:
        got = _wait_pod(devcluster, "gpu-h100")
        assert got["spec"].get("nodeName") == "h100-ondemand-0"
        assert got["status"]["phase"] == "Running", got["status"]
        assert got["status"].get("podIP"), "kwok assigns a pod IP"
    finally:
        devcluster.kubectl("delete", "pod", "gpu-h100", "--wait=true", "--grace-period=0", "--force")


def test_pod_asking_more_gpus_than_any_node_stays_pending(devcluster: DevCluster) -> None:
    devcluster.kubectl("apply", "-f", "-", input=json.dumps(gpu_pod("gpu-too-big", gpus=3)))
    try:
        deadline = time.monotonic() + 30
        message = ""
        while time.monotonic() < deadline and "nvidia.com/gpu" not in message:
            pod = json.loads(devcluster.kubectl("get", "pod", "gpu-too-big", "-o", "json").stdout)
            conds = {c["type"]: c for c in pod["status"].get("conditions", [])}
            message = conds.get("PodScheduled", {}).get("message", "")
            time.sleep(0.5)
        assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
        assert "Insufficient nvidia.com/gpu" in message, message
    finally:
        devcluster.kubectl("delete", "pod", "gpu-too-big", "--wait=true", "--grace-period=0", "--force")


def test_rbac_is_enforced(devcluster: DevCluster) -> None:
    sa = "system:serviceaccount:default:default"
    assert devcluster.kubectl("auth", "can-i", "list", "nodes", f"--as={sa}", check=False).stdout.strip() == "no"
    assert devcluster.kubectl("auth", "can-i", "list", "nodes").stdout.strip() == "yes"


def test_apply_inventory_creates_and_updates_nodes(devcluster: DevCluster) -> None:
    names = devcluster.apply_inventory(inventory(pool("extra-h20", "H20", gpus_per_node=4, nodes=1, spot=True)))
    try:
        assert names == ["extra-h20-0"]
        assert _nodes(devcluster)["extra-h20-0"]["status"]["allocatable"]["nvidia.com/gpu"] == "4"
        devcluster.apply_inventory(inventory(pool("extra-h20", "H20", gpus_per_node=6, nodes=1, spot=True)))
        node = _nodes(devcluster)["extra-h20-0"]
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "6"
        assert node["metadata"]["labels"]["nvidia.com/gpu.count"] == "6"
    finally:
        devcluster.kubectl("delete", "node", "extra-h20-0", "--wait=true")


def test_status_reports_components_nodes_and_gpus(devcluster: DevCluster) -> None:
    status = devcluster.status()
    assert status["running"] is True
    assert set(status["components"]) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
    assert status["nodes"] >= 3 and status["gpus"] >= 4


def test_kubeconfig_works_with_the_python_client_and_kopf_login(
    devcluster: DevCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kopf
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(devcluster.kubeconfig)))
    names = {n.metadata.name for n in api.list_node().items}
    assert "h100-ondemand-0" in names

    monkeypatch.setenv("KUBECONFIG", str(devcluster.kubeconfig))
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    assert info is not None and info.server == devcluster.server
    assert info.certificate_data and info.private_key_data and info.ca_data
