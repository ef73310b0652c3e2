"""Fixtures of the real-node suite: one dev cluster with two real kubelet nodes for the whole module set.

`realcluster` starts `hexrl cluster up` on manifests/clusters/real-cpu.yaml (one on-demand and one spot
real node: containerd + runc, CNI bridges, kube-proxy, CoreDNS) with the locally built images loaded.
It is shared by every test in this folder (session scope: starting it costs ~1 min once the images are
cached) and torn down at the end; `test_zz_teardown.py` then checks that nothing was left on the machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hexrl.api.crd import CRD_NAME, crd_yaml
from hexrl.devcluster import DevCluster

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "chart"))
from chartlib import Prometheus, ensure_prometheus  # noqa: E402

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
    # A kept cluster is reused across runs while developing, with the images it started with (importing a
    # changed 6-GB worker image into every node would cost minutes and ~13 GB per node; restart it instead).
    if not (keep and cluster.is_running()):
        cluster.down(quiet=True)  # leftovers of an interrupted run
        cluster.up(inventory=REAL_INVENTORY)
    rc = RealCluster(cluster)
    try:
        rc.kubectl("apply", "-f", "-", input=crd_yaml())
        cluster.wait_established(CRD_NAME)
    except BaseException:  # a failed set-up leaves nothing running either
        if not keep:
            cluster.down(quiet=True)
        raise
    try:
        yield rc
    finally:
        if not keep:
            state = cluster.workdir / "state.json"
            if state.exists():
                rc.state_before_down = json.loads(state.read_text())
            cluster.down(quiet=True)


# ------------------------------------------------------------------------------------------ Prometheus

WORKER_METRICS = re.compile(r"\b(hexrl_(?!job_|operator_|pool_|cluster_)[a-z_]+)")
"""Series the worker pods export (the operator's own are hexrl_job_*, hexrl_operator_*, hexrl_pool_*)."""


def render_podmonitor() -> dict[str, Any]:
    """The chart's worker PodMonitor, rendered by the pinned helm."""
    from hexrl.devcluster.tools import ensure_tool

    helm = ensure_tool("helm")
    out = subprocess.run([str(helm), "template", "hx", str(ROOT / "charts" / "hexrl"), "--namespace", "hexrl-system",
                          "--kube-version", "1.34.4",
                          "--set", "metrics.podMonitor.enabled=true", "--set", "metrics.podMonitor.interval=2s",
                          "--set", "metrics.podMonitor.scrapeTimeout=2s"],
                         capture_output=True, text=True, timeout=120, check=True).stdout  # fmt: skip
    import yaml

    return next(d for d in yaml.safe_load_all(out) if d and d.get("kind") == "PodMonitor")


def podmonitor_targets(pm: dict[str, Any], rc: RealCluster) -> list[dict[str, Any]]:
    """The scrape targets the Prometheus operator would derive from the PodMonitor: Running pods matching its
    selector in the namespaces it selects, one target per container port whose name it lists, labelled by its
    `jobLabel` and its relabelings. (Debian's Prometheus is built without Kubernetes service discovery, so
    this discovery is done here and handed to Prometheus through file_sd; the scraping is Prometheus's.)"""
    spec = pm["spec"]
    ports = {ep["port"] for ep in spec["podMetricsEndpoints"]}
    relabelings = spec["podMetricsEndpoints"][0].get("relabelings", [])
    namespaces = spec.get("namespaceSelector", {}).get("matchNames")
    groups = []
    for pod in rc.json("get", "pods", "--all-namespaces")["items"]:
        labels = pod["metadata"].get("labels", {})
        if pod["status"].get("phase") != "Running" or not pod["status"].get("podIP"):
            continue
        if namespaces and pod["metadata"]["namespace"] not in namespaces:
            continue
        if not all(_matches(expr, labels) for expr in spec["selector"].get("matchExpressions", [])):
            continue
        meta = {f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v for k, v in labels.items()}
        meta |= {"__meta_kubernetes_namespace": pod["metadata"]["namespace"],
                 "__meta_kubernetes_pod_name": pod["metadata"]["name"]}
        out = {"job": labels.get(spec["jobLabel"], "")}
        for r in relabelings:
            out[r["targetLabel"]] = ";".join(meta.get(src, "") for src in r["sourceLabels"])
        for c in pod["spec"]["containers"]:
            for port in c.get("ports", []):
                if port.get("name") in ports:
                    groups.append({"targets": [f"{pod['status']['podIP']}:{port['containerPort']}"], "labels": out})
    return groups


def _matches(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    value = labels.get(expr["key"])
    if expr["operator"] == "In":
        return value in expr["values"]
    if expr["operator"] == "NotIn":
        return value not in expr["values"]
    if expr["operator"] == "Exists":
        return value is not None
    return value is None  # DoesNotExist


def podmonitor_scrape_config(pm: dict[str, Any], targets_file: Path) -> dict[str, Any]:
    return {
        "job_name": f"podMonitor/{pm['metadata']['namespace']}/{pm['metadata']['name']}",
        "metrics_path": pm["spec"]["podMetricsEndpoints"][0]["path"],
        "honor_labels": False,
        "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "2s"}],
    }


def start_prometheus(tmp: Path, scrape_configs: list[dict[str, Any]]) -> Prometheus:
    """Debian's Prometheus on a free loopback port, scraping every 2 s."""
    import yaml

    prom_bin, _ = ensure_prometheus()
    port = free_port()
    cfg = tmp / "prometheus.yml"
    cfg.write_text(yaml.safe_dump({"global": {"scrape_interval": "2s", "scrape_timeout": "2s"},
                                   "scrape_configs": scrape_configs}))  # fmt: skip
    log = tmp / "prometheus.log"
    proc = subprocess.Popen([str(prom_bin), f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
    prom = Prometheus(url=f"http://127.0.0.1:{port}", proc=proc, log=log)

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    wait_for(ready, 60, "Prometheus ready")
    return prom


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dashboard_queries(files: tuple[str, ...], namespace: str = "tiny", job: str = "tiny-arith") -> list[str]:
    """Every panel query of the dashboards that reads only worker metrics, with the variables filled in."""
    out = []
    for name in files:
        board = json.loads((ROOT / "charts" / "hexrl" / "dashboards" / name).read_text())
        for panel in board.get("panels", []):
            for target in panel.get("targets", []):
                expr = target.get("expr", "")
                names = WORKER_METRICS.findall(expr)
                if not names or len(names) != len(re.findall(r"\bhexrl_[a-z_]+", expr)):
                    continue  # panels that join the operator's series are checked by the chart suite
                expr = (expr.replace("$namespace", namespace).replace("$job", job)
                        .replace("$__rate_interval", "30s").replace("$__range", "5m"))
                out.append(expr)
    return out
