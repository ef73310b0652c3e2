"""Job pods are least-privileged: their own ServiceAccount without a token, the Pod Security Standard
`restricted` on every pod and container, writable emptyDirs only where the workers write, CPU and memory
limits everywhere, and a NetworkPolicy whose selectors admit exactly the job's own pods (plus the metrics
scrapers and the operator, on their ports only).

The `restricted` rules are checked here as the Pod Security Standards state them (the real API server's
PodSecurity admission enforces them in tests/e2e/realnodes/test_b_tiny_job.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from k8s_helpers import hetero_nodes, make_plan, rljob

from hexrl.api.models import RLJobSpec
from hexrl.k8s import render
from hexrl.k8s.render_parts import SCRATCH_DIRS, SCRATCH_ENV
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import build_cluster, node_view

pytestmark = pytest.mark.unit
S = OperatorSettings()
JOB = render.JobRef("math", "research", "0000-uid", 3)
OTHER = render.JobRef("math-2", "research", "1111-uid", 1)

RESTRICTED_VOLUME_KINDS = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                           "projected", "secret"}
"""Volume types the `restricted` profile allows (Pod Security Standards, "Volume Types")."""


def _spec(**kw: Any) -> RLJobSpec:
    return RLJobSpec.model_validate(rljob(**kw)["spec"])


def _children(ref: render.JobRef = JOB, sp: RLJobSpec | None = None,
              settings: OperatorSettings = S) -> list[dict[str, Any]]:
    plan = make_plan(trainer_nodes=("h800-ondemand-0", "h800-ondemand-1"))
    sp = sp or _spec()
    snap = build_cluster([node_view(n, settings) for n in hetero_nodes()], [], None, settings)
    static = render.render_static(ref, sp, plan, {"gpus": plan.gpus}, 4, {"trainerEpoch": 0},
                                  {"trainer": "t", "rollout": "r", "operator": "o"}, settings)
    trainer = render.render_trainer_pods(ref, sp, plan, snap, 0, settings)
    rollout = [render.render_rollout_pod(ref, sp, s, 0, snap, settings) for s in render.rollout_slots(plan)]
    return static + trainer + rollout


def _pod_specs(children: list[dict[str, Any]]) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """(labels, pod spec) of every pod the job runs: its pods and the coordinator Deployment's template."""
    out = [(c["metadata"]["labels"], c["spec"]) for c in children if c["kind"] == "Pod"]
    out += [(c["spec"]["template"]["metadata"]["labels"], c["spec"]["template"]["spec"])
            for c in children if c["kind"] == "Deployment"]
    return out


def _one(children: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [c for c in children if c["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def test_the_pods_service_account_holds_no_token_and_every_pod_uses_it():
    children = _children()
    sa = _one(children, "ServiceAccount")
    assert sa["metadata"]["name"] == "math-workers" == render.names(JOB)["serviceaccount"]
    assert sa["automountServiceAccountToken"] is False
    assert sa["metadata"]["ownerReferences"] == [render.owner_ref(JOB)]
    assert sa["metadata"]["labels"]["hexrl.dev/job"] == "math"
    pods = _pod_specs(children)
    assert {labels["hexrl.dev/role"] for labels, _ in pods} == {"coordinator", "trainer", "rollout"}
    for _, pod in pods:
        assert pod["serviceAccountName"] == "math-workers"
        assert pod["automountServiceAccountToken"] is False


def test_service_account_and_network_policy_come_first():
    """The applier writes them in a round before the rest (render.FIRST_KINDS): the Deployment's pods need
    the ServiceAccount, and no pod of the job runs before its NetworkPolicy exists."""
    kinds = [c["kind"] for c in _children() if c["kind"] != "Pod"]
    assert kinds[:2] == ["ServiceAccount", "NetworkPolicy"]
    assert set(render.FIRST_KINDS) == {"ServiceAccount", "NetworkPolicy"}


def _restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What in `pod` (a pod spec) the Pod Security Standard `restricted` (and `baseline`, which it includes)
    forbids; [] when it passes."""
    bad = []
    psc = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            bad.append(flag)
    for vol in pod.get("volumes", []):
        kinds = set(vol) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_KINDS:
            bad.append(f"volume {vol['name']}: {kinds}")
    if psc.get("runAsUser") == 0:
        bad.append("pod runAsUser 0")
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation not false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in caps.get("drop", []):
            bad.append(f"{name}: capabilities not dropping ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: capabilities added")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            bad.append(f"{name}: runAsNonRoot not true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            bad.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile {seccomp}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            bad.append(f"{name}: hostPort")
    return bad


def test_every_job_pod_passes_the_restricted_pod_security_standard():
    for sp in (_spec(), _spec(checkpoint={"pvc": "ckpt", "path": "/checkpoints"},
                              model__source={"pvc": "models", "path": "/models/m"})):
        for labels, pod in _pod_specs(_children(sp=sp)):
            assert _restricted_violations(pod) == [], labels["hexrl.dev/role"]
            assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == 10001
            assert pod["securityContext"]["fsGroup"] == 10001


def test_the_checker_can_fail():
    """The rules above catch what a careless edit would bring back."""
    pod = {"securityContext": {}, "hostNetwork": True, "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
           "containers": [{"name": "c", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]}
    bad = _restricted_violations(pod)
    assert "hostNetwork" in bad and any("volume h" in b for b in bad) and "c: capabilities added" in bad
    assert "c: runAsNonRoot not true" in bad and "c: seccompProfile None" in bad


def test_root_filesystem_is_read_only_with_scratch_dirs_where_the_workers_write():
    for labels, pod in _pod_specs(_children()):
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            for name, path in SCRATCH_DIRS.items():
                assert mounts[path] == name and volumes[name] == {"name": name, "emptyDir": {}}
            env = {e["name"]: e.get("value") for e in c["env"]}
            # every cache and home variable points into a writable directory
            for key, value in SCRATCH_ENV:
                assert env[key] == value
                if value.startswith("/"):
                    assert any(value == p or value.startswith(p + "/") for p in SCRATCH_DIRS.values()), key
            if labels["hexrl.dev/role"] != "coordinator":
                assert volumes["dshm"]["emptyDir"] == {"medium": "Memory"} and mounts["/dev/shm"] == "dshm"


def test_every_container_has_cpu_and_memory_limits_not_below_its_requests():
    from hexrl.api.quantity import parse_quantity

    sp = _spec(resources={"trainer": {"requests": {"cpu": "2", "memory": "16Gi"}},
                          "rollout": {"limits": {"cpu": "3"}}})
    for _, pod in _pod_specs(_children(sp=sp)):
        for c in pod["containers"]:
            res = c["resources"]
            for resource in ("cpu", "memory"):
                assert parse_quantity(res["limits"][resource]) >= parse_quantity(res["requests"][resource])
    by_role = {labels["hexrl.dev/role"]: pod["containers"][0]["resources"] for labels, pod in _pod_specs(
        _children(sp=sp))}
    assert (by_role["trainer"]["limits"]["cpu"], by_role["trainer"]["limits"]["memory"]) == ("8", "64Gi")
    assert by_role["rollout"]["limits"]["cpu"] == by_role["rollout"]["requests"]["cpu"] == "3"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_network_policy_admits_exactly_the_jobs_own_pods():
    """Its podSelector (whom it protects) and its job peer (who may connect) match every pod of this job and
    no pod of another job in the namespace — even one whose name extends this job's name."""
    mine, other = _children(JOB), _children(OTHER)
    policy = _one(mine, "NetworkPolicy")
    assert policy["metadata"]["name"] == "math" and policy["metadata"]["ownerReferences"] == [render.owner_ref(JOB)]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    protected = policy["spec"]["podSelector"]
    peers = policy["spec"]["ingress"][0]
    assert "ports" not in peers and len(peers["from"]) == 1 and set(peers["from"][0]) == {"podSelector"}
    peer = peers["from"][0]["podSelector"]
    for labels, _ in _pod_specs(mine):
        assert _selects(protected, labels) and _selects(peer, labels)
    for labels, _ in _pod_specs(other):
        assert not _selects(protected, labels) and not _selects(peer, labels)


def test_network_policy_lets_scrapers_reach_status_ports_and_the_operator_the_coordinator_only():
    policy = _one(_children(), "NetworkPolicy")
    _, scrape, operator = policy["spec"]["ingress"]
    assert scrape["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert sorted(p["port"] for p in scrape["ports"]) == [8000, 8002, 8003]  # coordinator, relay, trainer metrics
    assert operator["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "hexrl-system"}},
                                 "podSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}}}]
    assert operator["ports"] == [{"protocol": "TCP", "port": 8000}]


def test_network_policy_scrapers_and_operator_namespace_follow_the_settings():
    settings = OperatorSettings.from_env({
        "HEXRL_OPERATOR_SCRAPER_NAMESPACE_LABELS": "team=observability",
        "HEXRL_OPERATOR_SCRAPER_POD_LABELS": "app.kubernetes.io/name=prometheus",
        "HEXRL_OPERATOR_KEY_NAMESPACE": "ops",
    })
    _, scrape, operator = _one(_children(settings=settings), "NetworkPolicy")["spec"]["ingress"]
    assert scrape["from"] == [{"namespaceSelector": {"matchLabels": {"team": "observability"}},
                               "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    assert operator["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ops"}
    # no scraper namespaces: no scrape rule at all (an empty namespaceSelector would admit every namespace)
    closed = OperatorSettings.from_env({"HEXRL_OPERATOR_SCRAPER_NAMESPACE_LABELS": ""})
    rules = _one(_children(settings=closed), "NetworkPolicy")["spec"]["ingress"]
    assert len(rules) == 2 and all(r["from"] and all(p for p in r["from"]) for r in rules)


def test_new_kinds_have_api_paths():
    from hexrl.k8s.kubeapi import object_path

    assert object_path("v1", "ServiceAccount", "math-workers", "research") == \
        "/api/v1/namespaces/research/serviceaccounts/math-workers"
    assert object_path("networking.k8s.io/v1", "NetworkPolicy", "math", "research") == \
        "/apis/networking.k8s.io/v1/namespaces/research/networkpolicies/math"


def test_the_operator_writes_them_in_a_round_before_the_other_children():
    """A reconcile pass applies the ServiceAccount and NetworkPolicy first, on their own, then the rest (the
    coordinator Deployment among them), then the pods; a second pass with nothing changed writes neither."""
    from test_k8s_reconcile import World

    w = World()
    rounds: list[list[str]] = []
    apply_all = w.rec.applier._apply_all

    def recorded(objs: list[dict[str, Any]], mem: Any) -> int:
        rounds.append(sorted(o["kind"] for o in objs))
        return apply_all(objs, mem)

    w.rec.applier._apply_all = recorded  # type: ignore[method-assign]
    w.pass_()
    assert rounds[0] == ["NetworkPolicy", "ServiceAccount"]
    assert "Deployment" in rounds[1] and not set(render.FIRST_KINDS) & set(rounds[1])
    assert ("ServiceAccount", "default", "math-workers") in w.api.objects
    assert ("NetworkPolicy", "default", "math") in w.api.objects
    w.sync()
    w.pass_()
    assert not [k for k, _, _ in w.api.writes if k in render.FIRST_KINDS]
