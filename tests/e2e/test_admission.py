"""The operator's privilege, against the real API server: the chart's RBAC and ValidatingAdmissionPolicy
installed (rendered by the pinned helm), then every escalation its RBAC alone would allow is tried with a real
token of the operator's ServiceAccount (TokenRequest API) — and refused; and the operator, running on the host
with that same token, still gives an RLJob all its children and a plan.

The escalations (issue #13 "Privilege"): a `kubernetes.io/service-account-token` Secret for another
ServiceAccount (whose token the PATCH response would then carry), a pod as another ServiceAccount or in
another namespace, a privileged / hostPath / hostNetwork pod, a ConfigMap in kube-system patched, a
PriorityClass created, a foreign Secret patched (labels and owner added to take it over). Each refusal must
come from the policy or RBAC, and a control shows the same request admitted when the binding only warns — so
these tests fail when the policy stops denying.

Uses the session's `devcluster` (release `hxadm` in its own namespace, so nothing collides with other tests);
everything it installs is removed at the end except the PriorityClasses (cluster-wide, shared, harmless).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from builders import rljob
from hexrl.api import reasons
from hexrl.devcluster import DevCluster

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "hexrl"
RELEASE, RELEASE_NS = "hxadm", "hexrl-adm"
SA_NAME = f"{RELEASE}-hexrl"
SA_USER = f"system:serviceaccount:{RELEASE_NS}:{SA_NAME}"
POLICY = f"{RELEASE}-hexrl-operator"
HEXRL = str(Path(sys.executable).parent / "hexrl")
JOBS_NS, OTHER_NS = "adm-jobs", "adm-other"


def wait_for(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `fn` until truthy; fail naming `what` (and the last value) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {str(last)[:800]})", pytrace=False)


@dataclass
class Operator:
    """kubectl as the operator's ServiceAccount: a kubeconfig holding a TokenRequest token of it."""

    cluster: DevCluster
    kubeconfig: Path

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        kubectl = str(self.cluster.builder.path("kubectl"))
        return subprocess.run([kubectl, f"--kubeconfig={self.kubeconfig}", *args], input=input, capture_output=True,
                              text=True, timeout=60, check=False)

    def apply(self, obj: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
        """Server-side apply, as the operator writes (the response would carry the stored object)."""
        return self.kubectl("apply", "--server-side", "--field-manager=hexrl-operator", "--force-conflicts",
                            "-o", "json", *extra, "-f", "-", input=json.dumps(obj))


def _helm() -> Path:
    from hexrl.devcluster.tools import ensure_tool

    return ensure_tool("helm")


def render_chart(*sets: str) -> list[dict[str, Any]]:
    """The chart's objects as `helm template` renders them for the test release (CRDs excluded: the session
    cluster has them)."""
    args = [str(_helm()), "template", RELEASE, str(CHART), "--namespace", RELEASE_NS, "--kube-version", "1.34.4"]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    # The operator runs on the host in this test (its pod would not act on kwok nodes); the rest is installed.
    return [d for d in yaml.safe_load_all(out) if d and d["kind"] != "Deployment"]


def _sa_kubeconfig(cluster: DevCluster, folder: Path) -> Path:
    token = cluster.kubectl("create", "token", SA_NAME, "-n", RELEASE_NS, "--duration=2h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    c = admin["clusters"][0]
    cfg = {"apiVersion": "v1", "kind": "Config", "clusters": [c],
           "users": [{"name": SA_NAME, "user": {"token": token}}],
           "contexts": [{"name": "operator", "context": {"cluster": c["name"], "user": SA_NAME}}],
           "current-context": "operator"}
    path = folder / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def installed(devcluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    objs = render_chart("leaderElection.enabled=false")  # no kopf peering CRDs on the session cluster
    for ns in (RELEASE_NS, JOBS_NS, OTHER_NS):
        # a kept cluster may still be removing the namespace of an earlier run
        wait_for(lambda n=ns: devcluster.kubectl("get", "namespace", n, check=False).returncode != 0
                 or not json.loads(devcluster.kubectl("get", "namespace", n, "-o", "json").stdout)["metadata"]
                 .get("deletionTimestamp"), 120, f"namespace {ns} of an earlier run to go away")
        devcluster.kubectl("create", "namespace", ns, check=False)
    devcluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs))
    op = Operator(devcluster, _sa_kubeconfig(devcluster, tmp_path_factory.mktemp("adm")))
    # The API server loads new policies asynchronously: wait until an unlabelled ConfigMap is refused.
    wait_for(lambda: "ValidatingAdmissionPolicy" in op.apply(_configmap("probe", JOBS_NS), "--dry-run=server").stderr,
             30, "the admission policy to take effect")
    try:
        yield op
    finally:
        # an RLJob left by a failed test keeps the operator's finalizer (no operator runs now): release it
        for name in devcluster.kubectl("get", "rlj", "-n", JOBS_NS, "-o", "name", check=False).stdout.split():
            devcluster.kubectl("patch", name, "-n", JOBS_NS, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                               check=False)
        for ns in (JOBS_NS, OTHER_NS, RELEASE_NS):
            devcluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        devcluster.kubectl("delete", "configmap", "adm-victim", "-n", "kube-system", "--ignore-not-found", check=False)
        devcluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", check=False,
                           input=yaml.safe_dump_all(o for o in objs if o["kind"] != "PriorityClass"
                                                    and o["metadata"].get("namespace") != RELEASE_NS))


# --------------------------------------------------------------------------------------------- objects


def _owner(job: str) -> list[dict[str, Any]]:
    # An RLJob that need not exist: admission cannot tell, which is why namespaces and kinds are limited too.
    return [{"apiVersion": "hexrl.dev/v1alpha1", "kind": "RLJob", "name": job, "uid": "0b7c4a52-0000-4000-8000-000000000001",
             "controller": True}]


def _child_meta(name: str, namespace: str, job: str = "evil") -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": {"hexrl.dev/job": job}, "ownerReferences": _owner(job)}


def _configmap(name: str, namespace: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta or {"name": name, "namespace": namespace},
            "data": {"k": "v"}}


def _pod(name: str, namespace: str, job: str = "evil", sa: str | None = None, **spec: Any) -> dict[str, Any]:
    container = {"name": "c", "image": "busybox", **spec.pop("container", {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _child_meta(name, namespace, job),
            "spec": {"serviceAccountName": sa or f"{job}-workers", "automountServiceAccountToken": False,
                     "containers": [container], **spec}}


def denied(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """The request failed, with each of `words` in the API server's answer; returns that answer."""
    assert proc.returncode != 0, f"the API server admitted it:\n{proc.stdout[:1500]}"
    for w in words:
        assert w in proc.stderr, proc.stderr
    return proc.stderr


def by_policy(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    return denied(proc, "ValidatingAdmissionPolicy", POLICY, *words)


# ------------------------------------------------------------------------------------------ escalations


def test_a_service_account_token_secret_is_refused(installed: Operator, devcluster: DevCluster) -> None:
    """The path to cluster-admin: a token Secret for a powerful ServiceAccount, read back from the response."""
    for ns, why in ((JOBS_NS, "only Secrets of type Opaque"), ("kube-system", "protected namespace")):
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                  "metadata": {**_child_meta("sa-token", ns),
                               "annotations": {"kubernetes.io/service-account.name": "default"}}}
        by_policy(installed.apply(secret), why)
        # and a plain create, without labels
        bare = {**secret, "metadata": {"name": "sa-token2", "namespace": ns,
                                       "annotations": {"kubernetes.io/service-account.name": "default"}}}
        by_policy(installed.apply(bare))
        assert devcluster.kubectl("get", "secret", "sa-token", "sa-token2", "-n", ns, check=False).returncode != 0
    # Reading any Secret back is RBAC's refusal (only the key Secret, by name, is readable).
    denied(installed.kubectl("get", "secret", "-n", "kube-system"), "Forbidden")


def test_pods_as_another_service_account_or_elsewhere_are_refused(installed: Operator, devcluster: DevCluster) -> None:
    devcluster.kubectl("create", "serviceaccount", "evil-workers", "-n", JOBS_NS, check=False)
    # Another ServiceAccount in the job's namespace (here: default; the same for any powerful one).
    by_policy(installed.apply(_pod("as-default", JOBS_NS, sa="default")), "evil-workers", "not default")
    # Another namespace, another ServiceAccount, no job label: not a child of any RLJob.
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare", "namespace": OTHER_NS},
            "spec": {"serviceAccountName": "default", "containers": [{"name": "c", "image": "busybox"}]}}
    by_policy(installed.apply(bare), "child of an RLJob")
    # A ServiceAccount of kube-system that happens to end in -workers: protected namespace.
    devcluster.kubectl("create", "serviceaccount", "adm-node-workers", "-n", "kube-system", check=False)
    try:
        by_policy(installed.apply(_pod("sys", "kube-system", job="adm-node")), "protected namespace kube-system")
    finally:
        devcluster.kubectl("delete", "serviceaccount", "adm-node-workers", "-n", "kube-system", check=False)
    # Deleting someone else's pod: RBAC allows delete, the policy does not.
    # (retried: a fresh namespace's default ServiceAccount appears a moment after the namespace)
    wait_for(lambda: devcluster.kubectl("run", "tenant", "-n", OTHER_NS, "--image=busybox", "--restart=Never",
                                        check=False).returncode == 0
             or devcluster.kubectl("get", "pod", "tenant", "-n", OTHER_NS, check=False).returncode == 0,
             30, "a tenant's pod")
    by_policy(installed.kubectl("delete", "pod", "tenant", "-n", OTHER_NS, "--wait=false"), "child of an RLJob")


@pytest.mark.parametrize(("spec", "words"), [
    ({"container": {"securityContext": {"privileged": True}}}, ("privileged", "container c")),
    ({"container": {"securityContext": {"allowPrivilegeEscalation": True}}}, ("privilege escalation",)),
    ({"container": {"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}}, ("capabilities",)),
    ({"volumes": [{"name": "root", "hostPath": {"path": "/"}}],
      "container": {"volumeMounts": [{"name": "root", "mountPath": "/host"}]}}, ("hostPath",)),
    ({"hostNetwork": True}, ("host's network",)),
    ({"hostPID": True}, ("PID",)),
    # A tenant's Secret in the job's namespace, read through the pod (the operator may not read Secrets itself).
    ({"volumes": [{"name": "db", "secret": {"secretName": "tenant-db"}}],
      "container": {"volumeMounts": [{"name": "db", "mountPath": "/db"}]}}, ("own Secret evil-token",)),
    ({"container": {"env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "tenant-db", "key": "p"}}}]}},
     ("own Secret evil-token",)),
    ({"container": {"envFrom": [{"secretRef": {"name": "tenant-db"}}]}}, ("own Secret evil-token",)),
], ids=["privileged", "escalation", "cap-add", "hostpath", "hostnetwork", "hostpid", "secret-volume", "secret-env",
        "secret-envfrom"])
def test_privileged_and_host_pods_are_refused(installed: Operator, devcluster: DevCluster, spec: dict[str, Any],
                                              words: tuple[str, ...]) -> None:
    devcluster.kubectl("create", "serviceaccount", "evil-workers", "-n", JOBS_NS, check=False)
    by_policy(installed.apply(_pod("priv", JOBS_NS, **spec), "--dry-run=server"), *words)
    # ... and the same in a Deployment's pod template
    pod = _pod("priv", JOBS_NS, **spec)
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": pod["metadata"],
           "spec": {"selector": {"matchLabels": {"app": "x"}},
                    "template": {"metadata": {"labels": {"app": "x"}}, "spec": pod["spec"]}}}
    by_policy(installed.apply(dep, "--dry-run=server"), *words)


def test_a_pod_like_the_operators_is_admitted(installed: Operator, devcluster: DevCluster) -> None:
    """The control for the refusals above: the job's own ServiceAccount, restricted, job label and owner."""
    devcluster.kubectl("create", "serviceaccount", "evil-workers", "-n", JOBS_NS, check=False)
    ok = installed.apply(_pod("fine", JOBS_NS, container={"securityContext": {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "env": [{"name": "HEXRL_TOKEN", "valueFrom": {"secretKeyRef": {"name": "evil-token", "key": "rollout"}}}]}),
        "--dry-run=server")
    assert ok.returncode == 0, ok.stderr


def test_configmaps_in_kube_system_and_foreign_secrets_cannot_be_taken_over(installed: Operator,
                                                                             devcluster: DevCluster) -> None:
    devcluster.kubectl("create", "configmap", "adm-victim", "-n", "kube-system", "--from-literal=k=v", check=False)
    patch = json.dumps({"data": {"k": "owned"}})
    by_policy(installed.kubectl("patch", "configmap", "adm-victim", "-n", "kube-system", "-p", patch),
              "stored object")
    # Patching the job's labels and owner onto it does not make it ours (the stored object is checked too).
    takeover = json.dumps({"metadata": _child_meta("adm-victim", "kube-system"), "data": {"k": "owned"}})
    by_policy(installed.kubectl("patch", "configmap", "adm-victim", "-n", "kube-system", "-p", takeover))
    by_policy(installed.apply(_configmap("new", "kube-system", _child_meta("new", "kube-system"))), "protected")
    # A tenant's Secret (Opaque, in a job namespace): same.
    devcluster.kubectl("create", "secret", "generic", "tenant-db", "-n", JOBS_NS, "--from-literal=password=p",
                       check=False)
    # (server-side apply: one PATCH, no GET first, which RBAC would refuse; its response would carry the data)
    takeover = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": _child_meta("tenant-db", JOBS_NS),
                "stringData": {"password": "mine"}}
    by_policy(installed.apply(takeover), "stored object")
    stored = json.loads(devcluster.kubectl("get", "configmap", "adm-victim", "-n", "kube-system", "-o", "json").stdout)
    assert stored["data"] == {"k": "v"} and "hexrl.dev/job" not in (stored["metadata"].get("labels") or {})


@pytest.mark.parametrize("spec", [{"type": "NodePort"}, {"type": "LoadBalancer"}, {"externalIPs": ["10.0.0.9"]}],
                         ids=["nodeport", "loadbalancer", "externalips"])
def test_services_that_expose_or_intercept_are_refused(installed: Operator, spec: dict[str, Any]) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": _child_meta("exposed", JOBS_NS),
           "spec": {"selector": {"app": "tenant-db"}, "ports": [{"port": 5432}], **spec}}
    by_policy(installed.apply(svc, "--dry-run=server"), "ClusterIP")


def test_rljobs_cannot_be_created_or_changed(installed: Operator, devcluster: DevCluster) -> None:
    """A tenant's RLJob with another image would have the operator run that image on the tenant's data."""
    job = rljob("tenant-job", namespace=OTHER_NS, model__source={"uri": "s3://models/qwen2.5-1.5b-instruct"},
                placement__gpuTypes=["H100", "L4"], budget__maxCostPerHour=20)
    denied(installed.apply(job, "--dry-run=server"), "Forbidden")  # RBAC: no create (the policy refuses it too)
    devcluster.kubectl("apply", "-f", "-", input=json.dumps(job))  # (no operator watches adm-other)
    changed = json.dumps({"spec": {"images": {"rollout": "attacker.example/miner:1"}}})
    by_policy(installed.kubectl("patch", "rlj", "tenant-job", "-n", OTHER_NS, "--type=merge", "-p", changed),
              "changes their spec")
    # Its metadata (kopf's finalizer and annotations) stays writable.
    note = json.dumps({"metadata": {"annotations": {"hexrl.dev/probe": "1"}}})
    ok = installed.kubectl("patch", "rlj", "tenant-job", "-n", OTHER_NS, "--type=merge", "-p", note)
    assert ok.returncode == 0, ok.stderr


def test_priority_classes_and_other_kinds_are_refused(installed: Operator, devcluster: DevCluster) -> None:
    pc = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "adm-preempt-all"},
          "value": 1_000_000_000, "preemptionPolicy": "PreemptLowerPriority"}
    denied(installed.apply(pc), "Forbidden", "priorityclasses")  # RBAC: get only
    assert devcluster.kubectl("get", "priorityclass", "adm-preempt-all", check=False).returncode != 0
    # The PriorityClasses the job pods name are there, installed by the chart, and readable by the operator.
    names = installed.kubectl("get", "priorityclass", "hexrl-trainer", "hexrl-rollout", "hexrl-rollout-spot")
    assert names.returncode == 0, names.stderr


def test_without_the_policy_the_same_escalation_succeeds(installed: Operator, devcluster: DevCluster) -> None:
    """Control: with the binding set to warn only, a token Secret for another ServiceAccount is created (RBAC
    alone allows it) — so the refusals above are the policy's doing, and these tests fail without it."""
    binding = f"{POLICY}"
    warn = json.dumps({"spec": {"validationActions": ["Warn"]}})
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
              "metadata": {"name": "control-token", "namespace": OTHER_NS,
                           "annotations": {"kubernetes.io/service-account.name": "default"}}}
    devcluster.kubectl("patch", "validatingadmissionpolicybinding", binding, "--type=merge", "-p", warn)
    try:
        made = wait_for(lambda: (p := installed.apply(secret)).returncode == 0 and p, 30,
                        "the warn-only binding to take effect")
        assert "ValidatingAdmissionPolicy" in made.stderr  # a warning, not a refusal
    finally:
        devcluster.kubectl("patch", "validatingadmissionpolicybinding", binding, "--type=merge",
                           "-p", json.dumps({"spec": {"validationActions": ["Deny"]}}))
        devcluster.kubectl("delete", "secret", "control-token", "-n", OTHER_NS, "--ignore-not-found", check=False)
    wait_for(lambda: installed.apply({**secret, "metadata": {**secret["metadata"], "name": "control-2"}},
                                     "--dry-run=server").returncode != 0, 30, "the policy to deny again")


# ------------------------------------------------------------------------------- the operator still works


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def host_operator(installed: Operator, tmp_path: Path) -> Iterator[Path]:
    """`hexrl operator` on the host with the ServiceAccount's token, watching the jobs' namespace; its log."""
    log = tmp_path / "operator.log"
    health = _free_port()
    env = {**os.environ, "HEXRL_OPERATOR_KEY_NAMESPACE": RELEASE_NS,
           "HEXRL_OPERATOR_PROGRESS_URL_TEMPLATE": f"http://127.0.0.1:{_free_port()}/v1/progress"}
    with log.open("wb") as out:
        proc = subprocess.Popen([HEXRL, "operator", "--kubeconfig", str(installed.kubeconfig), "--namespace", JOBS_NS,
                                 "--standalone", "--metrics-port", "0", "--health-port", str(health)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"the operator exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(ready, 90, f"the operator's readiness (log {log})")
        yield log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


def test_the_operator_under_the_policy_creates_every_child(installed: Operator, devcluster: DevCluster,
                                                            host_operator: Path) -> None:
    job = rljob("adm", namespace=JOBS_NS, model__source={"uri": "s3://models/qwen2.5-1.5b-instruct"},
                placement__gpuTypes=["H100", "L4"], budget__maxCostPerHour=20)
    devcluster.kubectl("apply", "-f", "-", input=json.dumps(job))

    def planned() -> dict[str, Any] | None:
        got = json.loads(devcluster.kubectl("get", "rlj", "adm", "-n", JOBS_NS, "-o", "json").stdout)
        cond = next((c for c in (got.get("status") or {}).get("conditions", []) if c["type"] == reasons.PLANNED), None)
        return got["status"] if cond and cond["status"] == "True" else None

    status = wait_for(planned, 90, f"the RLJob to be Planned (operator log {host_operator})")
    assert status["plan"]["gpus"] > 0
    want = {"secret": "adm-token", "configmap": "adm-config", "deployment": "adm-coordinator",
            "service": "adm-coordinator", "serviceaccount": "adm-workers", "networkpolicy": "adm"}

    def children() -> dict[str, Any]:
        got = {k: devcluster.kubectl("get", k, n, "-n", JOBS_NS, "-o", "json", check=False) for k, n in want.items()}
        pods = json.loads(devcluster.kubectl("get", "pods", "-n", JOBS_NS, "-l", "hexrl.dev/job=adm", "-o",
                                             "json").stdout)["items"]
        return {"pods": pods, **{k: json.loads(p.stdout) for k, p in got.items() if p.returncode == 0}}

    found = wait_for(lambda: (c := children()) and len(c) == len(want) + 1 and c["pods"] and c, 90,
                     f"every child of the RLJob (operator log {host_operator})")
    assert found["secret"]["type"] == "Opaque"
    assert {p["spec"]["serviceAccountName"] for p in found["pods"]} == {"adm-workers"}
    roles = {p["metadata"]["labels"].get("hexrl.dev/role") for p in found["pods"]}
    assert "rollout" in roles, roles
    # Deleting the RLJob: the operator (still running) releases its finalizer; the garbage collector does the rest.
    devcluster.kubectl("delete", "rlj", "adm", "-n", JOBS_NS, "--wait=false")
    wait_for(lambda: devcluster.kubectl("get", "rlj", "adm", "-n", JOBS_NS, check=False).returncode != 0, 60,
             f"the RLJob to be deleted (operator log {host_operator})")
    log = host_operator.read_text()
    assert "ValidatingAdmissionPolicy" not in log, log[-3000:]  # nothing the operator renders was refused


def test_the_operator_cannot_make_its_missing_priority_classes(installed: Operator) -> None:
    """Under its own identity the operator cannot create a PriorityClass, not even through `--prepare`: it
    refuses to start with one sentence naming what an admin installs."""
    env = {**os.environ, "HEXRL_OPERATOR_KEY_NAMESPACE": RELEASE_NS, "HEXRL_OPERATOR_PRIORITY_CLASS_PREFIX": "adm-none"}
    proc = subprocess.run([HEXRL, "operator", "--kubeconfig", str(installed.kubeconfig), "--namespace", JOBS_NS,
                           "--standalone", "--metrics-port", "0", "--health-port", "0"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "PriorityClass adm-none-trainer: 403" in proc.stderr, proc.stderr
    assert "hexrl crds print --priority-classes | kubectl apply -f -" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert installed.kubectl("get", "priorityclass", "adm-none-trainer").returncode != 0
