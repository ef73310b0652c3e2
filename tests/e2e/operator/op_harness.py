"""e2e harness for the operator (fixtures re-exported by conftest.py): a real control plane with a 3-pool GPU inventory, the operator running as
a subprocess (`hexrl operator`) with the ServiceAccount token of manifests/operator/rbac.yaml, held to the
chart's ValidatingAdmissionPolicy (so every test also proves the policy admits what the operator does), and a
fresh namespace per test. The CRD and the PriorityClasses come from `bootstrap.install_yaml` (what an admin
installs without the chart; the operator may not create PriorityClasses).

The cluster is this suite's own (`hexrl-op-<pid>`, or `hexrl-op` kept with HEXRL_KEEP_TEST_CLUSTER=1; manifests/clusters/hetero-3pool.yaml: 3×8 H800 on-demand,
3×8 H20 spot, 2×8 L40S) because the tests delete, taint and re-add nodes; it is started once per session
and stopped at the end. Every test restores the inventory it changed.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusters import keep_requested, running_cluster
from hexrl.api.crd import CRD_NAME
from hexrl.api.gpucalibration import CRD_NAME as CALIBRATION_CRD_NAME
from hexrl.devcluster import DevCluster, DevClusterError
from hexrl.k8s.bootstrap import install_yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests"))
INVENTORY = ROOT / "manifests" / "clusters" / "hetero-3pool.yaml"
RBAC = ROOT / "manifests" / "operator" / "rbac.yaml"
PEERING = ROOT / "manifests" / "operator" / "peering.yaml"
HEXRL = str(Path(sys.executable).parent / "hexrl")
SA = "system:serviceaccount:hexrl-system:hexrl-operator"


def wait_for(fn: Callable[[], Any], timeout: float = 60.0, interval: float = 0.5, what: str = "condition") -> Any:
    """Poll `fn` until it returns something truthy; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (DevClusterError, KeyError, IndexError, ValueError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {str(last)[:500]})", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def opcluster() -> Iterator[DevCluster]:
    # One cluster per pytest session (several sessions may run at once on a shared machine); a stable
    # name when the cluster is kept for re-runs.
    keep = keep_requested()
    with running_cluster("hexrl-op" if keep else f"hexrl-op-{os.getpid()}", INVENTORY, install_operator_objects,
                         keep=keep) as cluster:
        yield cluster


def install_operator_objects(cluster: DevCluster) -> None:
    """What `hexrl operator --prepare` and the chart install: CRDs, the peering object, the operator's RBAC and
    the chart's admission policy."""
    cluster.kubectl("apply", "-f", "-", input=install_yaml())
    cluster.kubectl("apply", "-f", str(PEERING), check=False)  # the CRDs; the object needs them Established
    cluster.wait_established(CRD_NAME, CALIBRATION_CRD_NAME, "clusterkopfpeerings.kopf.dev")
    cluster.kubectl("apply", "-f", str(PEERING))
    cluster.kubectl("create", "namespace", "hexrl-system", check=False)
    cluster.kubectl("apply", "-f", str(RBAC))
    cluster.kubectl("apply", "-f", "-", input=admission_policy())


def admission_policy() -> str:
    """The chart's ValidatingAdmissionPolicy and binding, rendered by the pinned helm for the ServiceAccount of
    manifests/operator/rbac.yaml (hexrl-system/hexrl-operator)."""
    from hexrl.devcluster.tools import ensure_tool

    return subprocess.run([str(ensure_tool("helm")), "template", "hexrl", str(ROOT / "charts" / "hexrl"),
                           "--namespace", "hexrl-system", "--kube-version", "1.34.4",
                           "--set", "serviceAccount.name=hexrl-operator",
                           "--show-only", "templates/admissionpolicy.yaml"],
                          capture_output=True, text=True, timeout=120, check=True).stdout


@pytest.fixture(scope="session")
def sa_kubeconfig(opcluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig holding a token of the operator's ServiceAccount (RBAC of manifests/operator/rbac.yaml)."""
    token = opcluster.kubectl("create", "token", "hexrl-operator", "-n", "hexrl-system", "--duration=2h").stdout.strip()
    admin = yaml.safe_load(opcluster.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "hexrl-operator", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "hexrl-operator"}}],
        "current-context": "sa",
    }
    path = tmp_path_factory.mktemp("sa") / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return path


class OperatorProcess:
    """`hexrl operator` as a subprocess: start, kill, restart, read its log and metrics."""

    def __init__(self, kubeconfig: Path, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.env = env or {}
        self.args: list[str] = ["--peering", "hexrl"]
        """Flags after `--kubeconfig` (default: the suite's peering object; e.g. --namespace NS --standalone)."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.progress_port = free_port()
        """Every job's coordinator progress is read from 127.0.0.1:<progress_port> (kwok pods do not run)."""
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"operator-{self.starts}.log"

    def start(self, wait: bool = True) -> None:
        self.starts += 1
        env = {
            **os.environ,
            "HEXRL_OPERATOR_DEBOUNCE_SECONDS": "0.5",
            "HEXRL_OPERATOR_DEBOUNCE_MAX_SECONDS": "2",
            "HEXRL_OPERATOR_SCALING_POLL_SECONDS": "2",
            "HEXRL_OPERATOR_SCALING_COOLDOWN_SECONDS": "0",
            "HEXRL_OPERATOR_PROGRESS_URL_TEMPLATE": f"http://127.0.0.1:{self.progress_port}/v1/progress",
            **self.env,
        }
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [HEXRL, "operator", "--kubeconfig", str(self.kubeconfig), *self.args,
             "--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        if wait:
            wait_for(self.ready, 60, what=f"operator readiness (log: {self.log_path})")

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"operator exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def metrics(self) -> dict[str, float]:
        """Samples of the hexrl_ metrics, keyed by `name{labels}`."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("hexrl_"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("operator-*.log")))


@pytest.fixture(scope="session")
def operator(sa_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    op = OperatorProcess(sa_kubeconfig, tmp_path_factory.mktemp("operator-logs"))
    op.start()
    try:
        yield op
    finally:
        op.kill(signal.SIGTERM)


class Kube:
    """kubectl against the test cluster, in one namespace, returning parsed JSON."""

    def __init__(self, cluster: DevCluster, namespace: str) -> None:
        self.cluster = cluster
        self.ns = namespace

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self.cluster.kubectl("-n", self.ns, *args, input=input, check=check).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self("get", *args, "-o", "json"))

    def apply(self, obj: dict[str, Any]) -> None:
        self("apply", "-f", "-", input=yaml.safe_dump(obj))

    def apply_all(self, objs: list[dict[str, Any]]) -> None:
        self("apply", "-f", "-", input=yaml.safe_dump_all(objs))

    def job(self, name: str) -> dict[str, Any]:
        return self.json("rljob", name)

    def status(self, name: str) -> dict[str, Any]:
        return self.job(name).get("status") or {}

    def condition(self, name: str, ctype: str) -> dict[str, Any]:
        return next((c for c in self.status(name).get("conditions", []) if c["type"] == ctype), {})

    def pods(self, job: str, role: str | None = None, live: bool = True) -> list[dict[str, Any]]:
        sel = f"hexrl.dev/job={job}" + (f",hexrl.dev/role={role}" if role else "")
        items = self.json("pods", "-l", sel)["items"]
        if live:
            items = [p for p in items if not p["metadata"].get("deletionTimestamp")
                     and p["status"].get("phase") not in ("Succeeded", "Failed")]
        return items

    def events(self, job: str, reason: str | None = None) -> list[dict[str, Any]]:
        items = self.json("events", "--field-selector", f"involvedObject.name={job},involvedObject.kind=RLJob")["items"]
        return [e for e in items if reason is None or e["reason"] == reason]

    def node_pool(self) -> dict[str, str]:
        nodes = json.loads(self.cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        return {n["metadata"]["name"]: n["metadata"]["labels"].get("hexrl.dev/pool", "") for n in nodes}


_NS = itertools.count()


@pytest.fixture
def kube(opcluster: DevCluster, operator: OperatorProcess, request: pytest.FixtureRequest) -> Iterator[Kube]:
    """A fresh namespace for one test; deleted afterwards (its RLJobs first, so their pods free the GPUs)."""
    ns = f"t{next(_NS)}-" + request.node.name.replace("_", "-").replace("[", "-").lower()[5:40].strip("-[]")
    ns = ns.strip("-")
    opcluster.kubectl("create", "namespace", ns)
    k = Kube(opcluster, ns)
    try:
        yield k
    finally:
        k("delete", "rljobs", "--all", "--wait=false", check=False)
        wait_for(lambda: not k.json("pods")["items"], 90, what=f"pods of namespace {ns} to go away")
        opcluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        restore_inventory(opcluster)


def restore_inventory(cluster: DevCluster) -> None:
    """Re-create deleted nodes and remove test taints."""
    cluster.apply_inventory(INVENTORY)
    for n in json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]:
        if n["spec"].get("taints") or n["spec"].get("unschedulable"):
            cluster.api("PATCH", f"/api/v1/nodes/{n['metadata']['name']}",
                        {"spec": {"taints": None, "unschedulable": None}})


def hostpath_pvc(namespace: str, claim: str) -> list[dict[str, Any]]:
    """A PersistentVolumeClaim bound to a hostPath PersistentVolume made for it (as `make run` provisions them)."""
    pv = f"{namespace}-{claim}"
    return [
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "",
                  "persistentVolumeReclaimPolicy": "Delete", "hostPath": {"path": f"/tmp/{pv}"},
                  "claimRef": {"namespace": namespace, "name": claim}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": namespace},
         "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": pv,
                  "resources": {"requests": {"storage": "1Gi"}}}},
    ]


def small_job(name: str = "math", **overrides: Any) -> dict[str, Any]:
    """An RLJob (1.5B, GRPO) whose plan fits hetero-3pool with room to spare: H800 trainer, H20 spot rollout."""
    from builders import rljob

    base = {
        "model__source": {"uri": "s3://models/qwen2.5-1.5b-instruct"},
        "budget__maxCostPerHour": 30,
        "placement__gpuTypes": ["H800", "H20"],
    }
    base.update(overrides)
    return rljob(name, **base)
