"""Real nodes: they register with the labels of a simulated node and advertise their GPUs, and pods on
them talk across nodes through a Service name, as in any cluster (CNI bridges + routing, kube-proxy's
iptables rules, CoreDNS); `kubectl logs` reaches the kubelet."""

from __future__ import annotations

import pytest
from real_harness import RealCluster, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NS = "net-check"


def _pod(name: str, node: str, image: str, command: list[str], labels: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "nodeName": node, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never", "command": command,
                            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}}}],
        },
    }  # fmt: skip


def test_real_nodes_are_ready_labelled_and_advertise_gpus(realcluster: RealCluster) -> None:
    nodes = {n["metadata"]["name"]: n for n in realcluster.json("get", "nodes", "-l", "hexrl.dev/real=true")["items"]}
    assert sorted(nodes) == ["cpu-ondemand-0", "cpu-spot-0", "cpu-spot-1"]
    for name, node in nodes.items():
        labels = node["metadata"]["labels"]
        assert labels["nvidia.com/gpu.product"] == "L4"
        assert labels["hexrl.dev/pool"] == name.rsplit("-", 1)[0]
        assert labels["karpenter.sh/capacity-type"] == ("spot" if "spot" in name else "on-demand")
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "2"
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True"
        addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
        assert not addresses["InternalIP"].startswith("127.")


def test_pods_reach_a_service_on_the_other_node_by_dns_name(realcluster: RealCluster) -> None:
    image = realcluster.cluster.images()["workers"]
    realcluster.kubectl("create", "namespace", NS)
    try:
        server = _pod("server", "cpu-ondemand-0", image, ["python", "-m", "http.server", "8080"], {"app": "server"})
        # Ready only once it listens, so the Service gets its endpoint only then (Running is not listening)
        server["spec"]["containers"][0]["readinessProbe"] = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
        service = {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": NS},
            "spec": {"selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }  # fmt: skip
        # The client resolves the Service through CoreDNS and connects through kube-proxy's ClusterIP rules,
        # from the other node's bridge: every piece of pod networking is on the path.
        # a few tries: kube-proxy syncs its rules on its own schedule after the endpoint appears
        fetch = ("import urllib.request, socket, time\n"
                 "print('resolved', socket.gethostbyname('echo.net-check.svc.cluster.local'))\n"
                 "for attempt in range(30):\n"
                 "    try:\n"
                 "        print('status', urllib.request.urlopen('http://echo.net-check.svc/', timeout=10).status); break\n"
                 "    except OSError as exc:\n"
                 "        print('retry', attempt, exc); time.sleep(1)\n")
        client = _pod("client", "cpu-spot-0", image, ["python", "-c", fetch], {"app": "client"})
        realcluster.apply([server, service])
        wait_for(lambda: _ready(realcluster, "server"), 120, "the server pod Ready (listening)")
        # kube-proxy programs the ClusterIP rules after the endpoint appears; until then it rejects
        wait_for(lambda: _endpoints(realcluster, "echo"), 60, "the Service's endpoint")
        realcluster.apply(client)
        phase = wait_for(lambda: _phase(realcluster, "client") in ("Succeeded", "Failed") and _phase(realcluster, "client"),
                         120, "the client pod to finish")
        logs = realcluster.kubectl("logs", "-n", NS, "client")
        assert phase == "Succeeded", logs
        cluster_ip = realcluster.json("get", "service", "-n", NS, "echo")["spec"]["clusterIP"]
        assert f"resolved {cluster_ip}" in logs
        assert "status 200" in logs
        pod_ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in realcluster.pods(NS)}
        assert pod_ips["server"].split(".")[2] != pod_ips["client"].split(".")[2], "pods on different node subnets"
    finally:
        realcluster.kubectl("delete", "namespace", NS, "--wait=true", "--timeout=90s", check=False)


def _ready(rc: RealCluster, name: str) -> bool:
    pods = [p for p in rc.pods(NS) if p["metadata"]["name"] == name]
    conds = {c["type"]: c["status"] for c in (pods[0].get("status", {}).get("conditions") or [])} if pods else {}
    return conds.get("Ready") == "True"


def _endpoints(rc: RealCluster, service: str) -> bool:
    slices = rc.json("get", "endpointslices", "-n", NS, "-l", f"kubernetes.io/service-name={service}")["items"]
    return any(e.get("conditions", {}).get("ready") for s in slices for e in s.get("endpoints") or [])


def _phase(rc: RealCluster, name: str) -> str:
    pods = [p for p in rc.pods(NS) if p["metadata"]["name"] == name]
    return pods[0]["status"].get("phase", "") if pods else ""
