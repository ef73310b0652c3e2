"""The chart on a real control plane, watched by a real Prometheus.

One scenario, in order (each step depends on the previous one):

1. `helm install` into the local control plane (kube-apiserver with RBAC, kwok GPU nodes): the CRDs,
   the ServiceAccount, the least-privilege ClusterRole, the peering object, PriorityClasses, dashboards;
   the values add a GPU type (`gpuCatalog`) that the shipped catalog does not know.
2. The operator runs as a process with the chart's ServiceAccount token (`kubectl create token`) and the
   settings the chart's Deployment carries (its HEXRL_OPERATOR_* env), and reconciles an RLJob to Running;
   an RLJob too big for any GPU becomes Planned=False. The chart's probe paths answer on the health port.
3. The job's real worker processes (coordinator, trainer, rollout; `python -m hexrl_workers ROLE`, with
   the worker config the operator rendered into the job's ConfigMap) train on 127.0.0.1.
4. A node with that new GPU type joins (the operator recognises it from its GPU feature discovery product
   label only through the chart's `gpuCatalog`) and is then tainted for reclaim, so the pools dashboard's
   "GPUs going away" panel has non-zero data. A real Prometheus scrapes the operator and the three
   workers and evaluates the chart's rules; a spot node is deleted so the operator handles a preemption.
   Every PromQL expression of every dashboard panel and every recording rule must return data through
   the HTTP API (the going-away panel: the tainted node's GPUs), every alert expression must be valid,
   and every metric a dashboard uses must appear in the scraped metadata.
5. The RLJobs are deleted, `helm uninstall` runs, and nothing is left that was not there before —
   except the CRDs, which Helm never deletes.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import CHART, ROOT, Prometheus, free_port, run, tool_env

from clusters import running_cluster
from hexrl.devcluster import DevCluster
from hexrl.devcluster.inventory import node_manifests, parse

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

sys.path.insert(0, str(ROOT / "scripts"))
import dashboards  # noqa: E402

RELEASE = "hx"
CHART_NS = "hexrl-system"
JOB_NS = "research"
JOB = "chart-smoke"
BIG_JOB = "chart-too-big"
SA = f"{RELEASE}-hexrl"
INVENTORY = ROOT / "manifests" / "clusters" / "small.yaml"
HEXRL = Path(sys.executable).parent / "hexrl"
# Objects that come and go on their own (not left behind by the chart).
VOLATILE = ("events", "events.events.k8s.io", "leases.coordination.k8s.io", "endpoints", "endpointslices.discovery.k8s.io")

B300_PRODUCT = "NVIDIA-B300-SXM6-288GB"
"""The GPU feature discovery product label of a GPU type the shipped catalog does not know."""
B300_GPUS = 4
CHART_VALUES = {"gpuCatalog": {"B300": {
    "tflopsBf16": 2250, "hbmGB": 288, "hbmTBps": 8, "intraNodeGBps": 900, "interNodeGBps": 50,
    # Far above the test job's $20/h budget, so the new node never takes part in its plan.
    "priceOnDemand": 200, "priceSpot": 90, "aliases": [B300_PRODUCT],
}}}
"""Chart values for the install: the new GPU type, named by its product string as an alias."""
RECLAIM_TAINT = "hexrl.dev/reclaim=true:NoSchedule"


def b300_node() -> dict[str, Any]:
    """A kwok node with the new GPU type, labelled as GPU feature discovery would label it."""
    inventory = {"apiVersion": "hexrl.dev/v1alpha1", "kind": "ClusterInventory", "catalog": CHART_VALUES["gpuCatalog"],
                 "pools": [{"name": "b300-reclaim", "gpu": "B300", "gpusPerNode": B300_GPUS, "nodes": 1,
                            "spot": False, "zone": "zone-a"}]}
    (node,) = node_manifests(parse(inventory))
    node["metadata"]["labels"]["nvidia.com/gpu.product"] = B300_PRODUCT
    return node


def operator_gauge(port: int, name: str, **labels: str) -> float | None:
    """Sum of the operator's `name` samples with these labels, read from its /metrics (None: no sample)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    values = [s.value for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(values) if values else None


def panel_expr(dashboard_uid: str, title: str) -> str:
    """The (single) PromQL expression of a dashboard panel, as shipped."""
    (expr,) = [e for t, e in dashboards.expressions(dashboards.all_dashboards()[dashboard_uid]) if t == title]
    return concrete(expr)


def series_value(answer: dict[str, Any], **labels: str) -> float | None:
    """The value of the instant-query series with these labels (None when there is none)."""
    for r in answer.get("data", {}).get("result", []):
        if all(r["metric"].get(k) == v for k, v in labels.items()):
            return float(r["value"][1])
    return None


TINY_SPEC = """
model:
  name: tiny-random-llama
  source: {builtin: tiny-random}
  shape: {parameters: 1.0e5, layers: 2, hiddenSize: 64, kvHeads: 2, headDim: 16, attentionHeads: 4,
          intermediateSize: 128, vocab: 24, dtype: fp32}
algorithm: {name: grpo, groupSize: 8, promptsPerStep: 8, learningRate: 3.0e-3, clipEpsilon: 0.2,
            totalSteps: 100000, microBatchSize: 64, seed: 0}
generation: {promptTokens: 4, maxNewTokens: 3, meanNewTokens: 2, lengthDistribution: fixed}
staleness: {maxPolicyLag: 4}
budget: {maxCostPerHour: 20}
weightSync: {mode: pull, chunkMb: 1, relay: true, parallelChunks: 2}
checkpoint: {path: /tmp/hexrl-chart-smoke/checkpoints, everySteps: 2, keep: 2}
reward: {function: math-answer}
dataset: {name: arith-digits}
evaluation: {everySteps: 2, maxPrompts: 4, k: 2}
"""
"""The workers' tiny arithmetic job (manifests/examples/rljob-tiny.yaml) with a budget that buys the
small inventory's GPUs, frequent checkpoints, a small held-out evaluation (so every dashboard panel has
data), and no step limit (it runs until the test stops it)."""


def job_manifest(name: str, *, parameters: float = 1.0e5) -> dict[str, Any]:
    spec = yaml.safe_load(TINY_SPEC)
    spec["model"]["shape"]["parameters"] = parameters
    return {"apiVersion": "hexrl.dev/v1alpha1", "kind": "RLJob", "metadata": {"name": name, "namespace": JOB_NS},
            "spec": spec}


@pytest.fixture(scope="module")
def cluster() -> Iterator[DevCluster]:
    with running_cluster("hexrl-chart", INVENTORY) as c:
        yield c


def all_objects(cluster: DevCluster) -> set[str]:
    """`kind/namespace/name` of every listable object, volatile kinds left out."""
    kinds = cluster.kubectl("api-resources", "--verbs=list", "-o", "name").stdout.split()
    kinds = [k for k in kinds if k not in VOLATILE]
    out = cluster.kubectl("get", ",".join(kinds), "-A", "-o",
                          "jsonpath={range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}",
                          timeout=120).stdout
    return {line for line in out.splitlines() if line}


def sa_kubeconfig(cluster: DevCluster, token: str, path: Path) -> Path:
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "dev", "cluster": server}],
        "users": [{"name": SA, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "dev", "user": SA}}],
        "current-context": "sa",
    }))
    return path


def wait(what: str, check: Callable[[], Any], timeout: float = 120.0, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def get_json(cluster: DevCluster, *args: str) -> dict[str, Any]:
    proc = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except OSError:
        return 0


class Procs:
    """Processes this test started, stopped at the end whatever happens."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("wb")
        p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        self.procs[name] = p
        return p

    def log(self, name: str, lines: int = 40) -> str:
        path = self.folder / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def alive(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None

    def stop(self, name: str) -> None:
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.stop_all()


def concrete(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced as Grafana would for "All"."""
    return (expr.replace("$__rate_interval", "1m").replace('"$namespace"', '".*"').replace('"$job"', '".*"'))


@dataclass
class Install:
    """What the scenario's stages share: the cluster, helm's environment, the processes and their ports."""

    cluster: DevCluster
    helm: Path
    helm_env: dict[str, str]
    procs: Procs
    folder: Path
    metrics_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    coord_port: int = field(default_factory=free_port)
    weights_port: int = field(default_factory=free_port)
    relay_port: int = field(default_factory=free_port)
    trainer_port: int = field(default_factory=free_port)

    def fail_if_exited(self, name: str) -> None:
        if not self.procs.alive(name):
            pytest.fail(f"{name} exited:\n{self.procs.log(name)}")


def test_install_operate_scrape_uninstall(cluster: DevCluster, helm: Path, helm_home: dict[str, str], procs: Procs,
                                          start_prometheus: Callable[..., Prometheus], render: Any,
                                          tmp_path: Path) -> None:
    env = {**tool_env(helm), **helm_home, "KUBECONFIG": str(cluster.kubeconfig)}
    install = Install(cluster, helm, env, procs, tmp_path)
    for ns in (CHART_NS, JOB_NS):
        cluster.kubectl("create", "namespace", ns)
    before = all_objects(cluster)

    container = helm_install(install)                                   # 1.
    start_operator(install, container)                                  # 2.
    apply_jobs(install)
    start_workers(install)                                              # 3.
    (rule_obj,) = [o for o in render({"prometheusRule": {"enabled": True}}, extra=["--kube-version", "1.34.4"])
                   if o["kind"] == "PrometheusRule"]
    rollout_node, rollout_pool = spot_rollout_replica(install)          # 4.
    new_gpu_type_joins_then_goes_away(install)
    prom = scrape(install, start_prometheus, rollout_pool, rule_obj)
    prom.wait_for("hexrl_jobs", timeout=60)
    # A spot reclaim: the node that holds a rollout replica disappears; the operator replaces the pod.
    cluster.kubectl("delete", "node", rollout_node, "--wait=false")
    # Missing data is reported at the end, so the uninstall below is checked whatever happened here.
    problems = queries_without_data(install, prom, rule_obj) + pools_dashboard_problems(prom)
    assert_rules_healthy(prom, rule_obj)
    problems += unexported_dashboard_metrics(prom)
    uninstall_leaves_only_crds(install, before)                         # 5.
    assert not problems, "\n".join(dict.fromkeys(problems))


def helm_install(install: Install) -> dict[str, Any]:
    """`helm install` with the new GPU type in the values; the operator Deployment's container."""
    values = install.folder / "values.yaml"
    values.write_text(yaml.safe_dump(CHART_VALUES))
    run([install.helm, "install", RELEASE, CHART, "--namespace", CHART_NS, "--values", values, "--wait",
         "--timeout", "180s"], env=install.helm_env, timeout=240)
    deployment = get_json(install.cluster, "deployment", "-n", CHART_NS, SA)
    assert deployment["status"].get("availableReplicas") == 1, deployment["status"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert get_json(install.cluster, "clusterkopfpeering", "hexrl"), "the chart's peering object is missing"
    return dict(container)


def start_operator(install: Install, container: dict[str, Any]) -> None:
    """The operator as a process with the chart's ServiceAccount token and the Deployment's settings; its
    least-privilege RBAC checked, its probe paths answering."""
    cluster = install.cluster
    token = cluster.kubectl("create", "token", SA, "-n", CHART_NS, "--duration=2h").stdout.strip()
    kubeconfig = sa_kubeconfig(cluster, token, install.folder / "sa.kubeconfig")
    can_i = [cluster.kubectl("--kubeconfig", str(kubeconfig), "auth", "can-i", *q, check=False).stdout.strip()
             for q in (["create", "pods", "-n", JOB_NS], ["delete", "nodes"], ["list", "secrets", "-A"],
                       ["create", "clusterrolebindings"])]
    assert can_i == ["yes", "no", "no", "no"], f"chart RBAC is not least privilege: {can_i}"
    chart_env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    operator_env = {
        **os.environ, **chart_env,
        # Pods on kwok nodes do not run; the operator polls the coordinator this test runs on loopback.
        "HEXRL_OPERATOR_PROGRESS_URL_TEMPLATE": f"http://127.0.0.1:{install.coord_port}/v1/progress",
        "HEXRL_OPERATOR_SCALING_POLL_SECONDS": "3",
    }
    install.procs.start("operator", [str(HEXRL), "operator", "--kubeconfig", str(kubeconfig), "--all-namespaces",
                                     f"--metrics-port={install.metrics_port}", f"--health-port={install.health_port}"],
                        operator_env)
    probe = container["livenessProbe"]["httpGet"]["path"], container["readinessProbe"]["httpGet"]["path"]
    wait("the operator's liveness and readiness endpoints (the chart's probe paths)",
         lambda: all(http_status(f"http://127.0.0.1:{install.health_port}{p}") == 200 for p in probe)
         or install.fail_if_exited("operator"), timeout=120)


def apply_jobs(install: Install) -> None:
    """The tiny job reaches Running; one too big for any GPU becomes Planned=False."""
    cluster = install.cluster
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([job_manifest(JOB), job_manifest(BIG_JOB, parameters=1e13)]))

    def phase(name: str) -> str:
        return str((get_json(cluster, "rlj", "-n", JOB_NS, name).get("status") or {}).get("phase", ""))

    def planned(name: str) -> str | None:
        conditions = (get_json(cluster, "rlj", "-n", JOB_NS, name).get("status") or {}).get("conditions", [])
        return {c["type"]: c["status"] for c in conditions}.get("Planned")

    wait(f"RLJob {JOB} Running", lambda: phase(JOB) == "Running" or install.fail_if_exited("operator"), timeout=180)
    wait(f"RLJob {BIG_JOB} Planned=False", lambda: planned(BIG_JOB) == "False", timeout=60)


def start_workers(install: Install) -> None:
    """The job's real workers on loopback, with the worker config and tokens the operator rendered."""
    cluster, folder = install.cluster, install.folder
    config = yaml.safe_load(get_json(cluster, "configmap", "-n", JOB_NS, f"{JOB}-config")["data"]["config.yaml"])
    config["checkpointDir"] = str(folder / "checkpoints")
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    secret = get_json(cluster, "secret", "-n", JOB_NS, f"{JOB}-token")
    job_secret = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    worker_env = {
        **os.environ, "HEXRL_JOB": JOB, "HEXRL_CONFIG": str(folder / "config.yaml"),
        "HEXRL_TOKEN_DIGESTS": job_secret["digests"],
        "HEXRL_COORDINATOR_URL": f"http://127.0.0.1:{install.coord_port}",
        "HEXRL_WEIGHTS_URL": f"http://127.0.0.1:{install.weights_port}",
        "HEXRL_PORT": str(install.coord_port), "HEXRL_WEIGHTS_PORT": str(install.weights_port),
        "HEXRL_RELAY_PORT": str(install.relay_port), "HEXRL_TRAINER_METRICS_PORT": str(install.trainer_port),
        "HEXRL_POD_IP": "127.0.0.1", "OMP_NUM_THREADS": "1",
    }
    for role in ("coordinator", "trainer", "rollout"):
        own = {"HEXRL_TOKEN": job_secret[role]} if role != "coordinator" else {}  # each role its own token only
        install.procs.start(role, [sys.executable, "-m", "hexrl_workers", role], {**worker_env, **own, "HEXRL_ROLE": role})
        if role == "coordinator":
            wait("the coordinator's /healthz",
                 lambda: http_status(f"http://127.0.0.1:{install.coord_port}/healthz") == 200
                 or install.fail_if_exited("coordinator"), timeout=120)


def spot_rollout_replica(install: Install) -> tuple[str, str]:
    """The node and pool of a rollout replica the plan put on spot nodes (the one a reclaim will take)."""
    cluster = install.cluster
    spot_nodes = {n["metadata"]["name"] for n in get_json(cluster, "nodes", "-l", "hexrl.dev/spot=true")["items"]}
    rollout_pods = get_json(cluster, "pods", "-n", JOB_NS, "-l", f"hexrl.dev/job={JOB},hexrl.dev/role=rollout")["items"]
    on_spot = [p for p in rollout_pods if p["spec"].get("nodeName") in spot_nodes]
    assert on_spot, f"the plan put no rollout replica on spot nodes {sorted(spot_nodes)}"
    return on_spot[0]["spec"]["nodeName"], on_spot[0]["metadata"]["labels"].get("hexrl.dev/pool", "")


def new_gpu_type_joins_then_goes_away(install: Install) -> None:
    """A node of the new GPU type joins: counted (the chart's gpuCatalog names its product), not going away —
    until it is tainted for reclaim, before Prometheus' first scrape."""
    cluster, node = install.cluster, b300_node()
    cluster.api("POST", "/api/v1/nodes", node)
    # Allocatable GPUs are status: set them through the status subresource, as `hexrl cluster up` does.
    cluster.api("PATCH", f"/api/v1/nodes/{node['metadata']['name']}/status", {"status": node["status"]})
    cluster.wait_nodes_ready([node["metadata"]["name"]], timeout=60)

    def b300(metric: str) -> float | None:
        return operator_gauge(install.metrics_port, metric, gpu="B300")

    wait("the operator to count the B300 node's GPUs (its type is known only from the chart's gpuCatalog)",
         lambda: (b300("hexrl_cluster_gpus"), b300("hexrl_cluster_gpus_going_away")) == (B300_GPUS, 0), timeout=60)
    cluster.kubectl("taint", "node", node["metadata"]["name"], RECLAIM_TAINT)
    wait("the operator to count the tainted node's GPUs as going away",
         lambda: b300("hexrl_cluster_gpus_going_away") == B300_GPUS, timeout=60)


def scrape(install: Install, start_prometheus: Callable[..., Prometheus], rollout_pool: str,
           rule_obj: dict[str, Any]) -> Prometheus:
    """A real Prometheus scraping the operator and the three workers, labelled as the chart's monitors label
    them, evaluating the chart's rules."""
    rules = install.folder / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_obj["spec"]))

    def static(port: int, role: str, pool: str = "") -> dict[str, Any]:
        labels = {"namespace": JOB_NS, "role": role, "pod": f"{JOB}-{role}-0", **({"pool": pool} if pool else {})}
        return {"targets": [f"127.0.0.1:{port}"], "labels": labels}

    return start_prometheus([
        # The operator exports `namespace` and `job` (the RLJob) itself: keep them, as the ServiceMonitor does.
        {"job_name": "hexrl-operator", "honor_labels": True,
         "static_configs": [{"targets": [f"127.0.0.1:{install.metrics_port}"]}]},
        # Workers: `job` = the RLJob's name, as the PodMonitor's jobLabel sets it; role/pool/pod as its relabelings.
        {"job_name": JOB, "static_configs": [static(install.coord_port, "coordinator"),
                                             static(install.trainer_port, "trainer"),
                                             static(install.relay_port, "rollout", rollout_pool)]},
    ], rule_files=[rules])


def every_query(rule_obj: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard panel, every query variable and every recording rule."""
    exprs: list[tuple[str, str]] = []
    for uid, model in dashboards.all_dashboards().items():
        exprs += [(f"{uid} / {title}", concrete(e)) for title, e in dashboards.expressions(model)]
        for var in model["templating"]["list"]:
            if var["type"] == "query":
                metric = re.search(r"label_values\((.+), (\w+)\)", var["definition"])
                assert metric, var
                exprs.append((f"{uid} / variable {var['name']}", concrete(metric.group(1))))
    return exprs + [(f"record {r['record']}", r["expr"]) for g in rule_obj["spec"]["groups"] for r in g["rules"]
                    if "record" in r]


def queries_without_data(install: Install, prom: Prometheus, rule_obj: dict[str, Any]) -> list[str]:
    """Every query polled (valid PromQL asserted) until it returns data or 180 s pass; those still empty."""
    deadline = time.monotonic() + 180
    pending = every_query(rule_obj)
    while pending and time.monotonic() < deadline:
        still = []
        for where, expr in pending:
            answer = prom.query(expr)
            assert answer.get("status") == "success", f"{where}: `{expr}` is not valid PromQL: {answer}"
            # NaN (e.g. a quantile of a histogram nothing was observed into) is not data.
            values = [r["value"][1] for r in answer["data"]["result"]]
            if not any(v not in ("NaN", "+Inf", "-Inf") for v in values):
                still.append((where, expr))
        pending = still
        for name in ("operator", "coordinator", "trainer", "rollout"):
            assert install.procs.alive(name), f"{name} exited:\n{install.procs.log(name)}"
        if pending:
            time.sleep(3)
    return [f"no data for {w}: {e}" for w, e in pending]


def pools_dashboard_problems(prom: Prometheus) -> list[str]:
    """The pools dashboard on non-zero data: its panels' own PromQL shows the tainted node's GPUs."""
    problems = []
    for title, metric in (("GPUs going away", "hexrl_cluster_gpus_going_away"),
                          ("GPUs by type and capacity type", "hexrl_cluster_gpus")):
        got = series_value(prom.query(panel_expr("hexrl-pools", title)), gpu="B300", capacity_type="on-demand")
        if got != B300_GPUS:
            problems.append(f"hexrl-pools / {title}: B300 on-demand shows {got}, expected {B300_GPUS} ({metric})")
    return problems


def assert_rules_healthy(prom: Prometheus, rule_obj: dict[str, Any]) -> None:
    """Every alert expression is valid PromQL and Prometheus evaluates every rule without error."""
    for g in rule_obj["spec"]["groups"]:
        for r in g["rules"]:
            if "alert" in r:
                assert prom.query(r["expr"])["status"] == "success", r["alert"]
    assert prom.api("rules")["status"] == "success"
    health = {r["name"]: r["health"] for g in prom.api("rules")["data"]["groups"] for r in g["rules"]}
    assert set(health.values()) == {"ok"}, health


def unexported_dashboard_metrics(prom: Prometheus) -> list[str]:
    """Metrics a dashboard uses that no scraped process exports (neither scraped nor in the metadata)."""
    scraped = set(prom.api("label/__name__/values")["data"])
    metadata = prom.api("metadata")["data"]
    problems = []
    for uid, model in dashboards.all_dashboards().items():
        for title, expr in dashboards.expressions(model):
            for name in re.findall(r"\bhexrl_[a-z0-9_]+\b", expr):
                family = re.sub(r"_(bucket|sum|count|total)$", "", name)
                if not (name in scraped or family in metadata):
                    problems.append(f"{uid} / {title}: {name} is not exported by any scraped process")
    return problems


KEPT_BY_HELM = {"CustomResourceDefinition//rljobs.hexrl.dev", "CustomResourceDefinition//gpucalibrations.hexrl.dev",
                "CustomResourceDefinition//clusterkopfpeerings.kopf.dev",
                "CustomResourceDefinition//kopfpeerings.kopf.dev", "APIService//v1alpha1.hexrl.dev",
                "APIService//v1.kopf.dev"}
"""Helm never deletes CRDs; the API server registers an APIService per CRD group version, gone with the CRDs."""


def uninstall_leaves_only_crds(install: Install, before: set[str]) -> None:
    """Workers stopped, RLJobs deleted (their children garbage-collected), operator stopped, `helm uninstall`:
    nothing is left that was not there before but the CRDs."""
    cluster = install.cluster
    for name in ("rollout", "trainer", "coordinator"):
        install.procs.stop(name)
    cluster.kubectl("delete", "rlj", "--all", "-n", JOB_NS, "--timeout=120s", timeout=150)
    wait("the jobs' children to be garbage-collected",
         lambda: not cluster.kubectl("get", "pods,services,configmaps,secrets,deployments,poddisruptionbudgets",
                                     "-n", JOB_NS, "-l", "app.kubernetes.io/part-of=hexrl", "-o", "name").stdout.strip(),
         timeout=120)
    install.procs.stop("operator")
    run([install.helm, "uninstall", RELEASE, "--namespace", CHART_NS, "--wait", "--timeout", "120s"],
        env=install.helm_env, timeout=180)
    # Pods of the deleted Deployment and the deleted node's leftovers disappear asynchronously; a namespace's
    # `default` ServiceAccount and `kube-root-ca.crt` ConfigMap are made by controllers, not by the chart.
    left: set[str] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        left = {o for o in all_objects(cluster) - before if not o.startswith("Node/")
                and not o.endswith("/default") and not o.endswith("/kube-root-ca.crt")}
        if left <= KEPT_BY_HELM:
            break
        time.sleep(2)
    assert left <= KEPT_BY_HELM, f"helm uninstall left behind: {sorted(left - KEPT_BY_HELM)}"
    assert "CustomResourceDefinition//rljobs.hexrl.dev" in left, "Helm keeps CRDs; the RLJob CRD should still be there"
