"""The chart renders, lints and says what it means: helm lint, ct lint, helm template with default and
non-default values, and the rendered objects checked against the operator's own definitions.

Runs the real pinned helm and ct (built from the Go module proxy by `hexrl.devcluster.tools`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import CHART, ROOT, VENV_BIN, by_kind, run, tool_env

from hexrl.devcluster.tools import support_file
from hexrl.k8s.render import render_priority_classes
from hexrl.k8s.settings import OperatorSettings

KUBE_VERSION = "1.34.4"
FULL_VALUES = CHART / "ci" / "full-values.yaml"


def ct_lint(ct: Path, helm: Path, helm_home: dict[str, str], chart_dir: Path) -> Any:
    schema = support_file(ct, "etc/chart_schema.yaml")
    lintconf = support_file(ct, "etc/lintconf.yaml")
    args: list[str | Path] = [
        ct, "lint", "--charts", chart_dir, "--validate-maintainers=false", "--check-version-increment=false",
        "--helm-lint-extra-args", f"--kube-version {KUBE_VERSION}",
    ]
    if schema and lintconf:
        args += ["--chart-yaml-schema", schema, "--lint-conf", lintconf]
    return run(args, env={**tool_env(helm), **helm_home}, check=False, timeout=300)


def operator_container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(objs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def rule_triples(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


# ------------------------------------------------------------------------------------------- lint


def test_helm_lint_default_and_full_values(helm: Path, helm_home: dict[str, str]) -> None:
    env = {**tool_env(helm), **helm_home}
    for extra in ([], ["--values", str(FULL_VALUES)]):
        proc = run([helm, "lint", "--strict", CHART, "--kube-version", KUBE_VERSION, *extra], env=env)
        assert "0 chart(s) failed" in proc.stdout


def test_ct_lint_passes(ct: Path, helm: Path, helm_home: dict[str, str]) -> None:
    proc = ct_lint(ct, helm, helm_home, CHART)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All charts linted successfully" in proc.stdout + proc.stderr
    # ct ran the chart's ci/ values too, so the non-default values were linted as well.
    assert "ci/full-values.yaml" in proc.stdout + proc.stderr


def test_ct_lint_catches_a_broken_chart(ct: Path, helm: Path, helm_home: dict[str, str], tmp_path: Path) -> None:
    """The lint check can fail: a values file with a duplicate key and a Chart.yaml without a version."""
    broken = tmp_path / "hexrl"
    shutil.copytree(CHART, broken)
    (broken / "values.yaml").write_text((broken / "values.yaml").read_text() + "\nnameOverride: twice\n")
    proc = ct_lint(ct, helm, helm_home, broken)
    assert proc.returncode != 0
    assert "duplication of key" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------- template


@pytest.mark.parametrize("version", ["1.30.0", "1.30.2-eks-1552ad0", KUBE_VERSION])
def test_kube_version_constraint_admits_supported_clusters(render: Any, version: str) -> None:
    assert by_kind(render(extra=["--kube-version", version]), "Deployment")


@pytest.mark.parametrize("version", ["1.29.9", "1.28.3-gke.100"])
def test_kube_version_constraint_refuses_old_clusters(render: Any, version: str) -> None:
    """Clusters without admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (GA in 1.30) are refused by
    Helm, not half-installed."""
    (result,) = render(extra=["--kube-version", version], check=False)
    assert result["_returncode"] != 0
    assert "kubeVersion" in result["_stderr"] and ">=1.30.0-0" in result["_stderr"]


def test_default_render_is_hardened(render: Any) -> None:
    objs = render(extra=["--kube-version", KUBE_VERSION])
    kinds = {o["kind"] for o in objs}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
            "Service", "ConfigMap", "PriorityClass", "ClusterKopfPeering", "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"} <= kinds
    # Optional parts are off by default (they need CRDs a plain cluster does not have).
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "NetworkPolicy"}
    # the only Role: `get` on the operator's key Secret, by name, in the release namespace
    (key_role,) = by_kind(objs, "Role")
    assert key_role["metadata"]["namespace"] == "hexrl-system"
    assert all(r.get("resourceNames") == ["hexrl-operator-key"] for r in key_role["rules"] if "get" in r["verbs"])
    (deployment,) = by_kind(objs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = operator_container(objs)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["livenessProbe"]["httpGet"]["port"] == "health"
    assert c["readinessProbe"]["httpGet"]["port"] == "health"
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert "--all-namespaces" in c["args"]
    assert c["image"].endswith(":0.1.0")
    (sa,) = by_kind(objs, "ServiceAccount")
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    crds = {o["metadata"]["name"] for o in by_kind(objs, "CustomResourceDefinition")}
    assert crds == {"rljobs.hexrl.dev", "gpucalibrations.hexrl.dev", "clusterkopfpeerings.kopf.dev",
                    "kopfpeerings.kopf.dev"}


def test_dashboards_configmaps_carry_the_sidecar_label(render: Any) -> None:
    objs = render(extra=["--kube-version", KUBE_VERSION])
    maps = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["labels"].get("grafana_dashboard") == "1"]
    shipped = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    assert sorted(k for m in maps for k in m["data"]) == shipped
    for m in maps:
        for text in m["data"].values():
            assert yaml.safe_load(text)["uid"].startswith("hexrl-")
    assert not by_kind(render({"dashboards": {"enabled": False}}, extra=["--kube-version", KUBE_VERSION]), "ConfigMap")


def test_chart_settings_are_what_the_operator_reads(render: Any) -> None:
    """The env the chart sets parses with the operator's own settings reader into its defaults ..."""
    env = env_of(operator_container(render(extra=["--kube-version", KUBE_VERSION])))
    parsed = OperatorSettings.from_env(env)
    defaults = OperatorSettings()
    for group in ("discovery", "pricing", "workloads", "log_level"):
        assert getattr(parsed, group) == getattr(defaults, group), group
    assert parsed.identity.standalone == defaults.identity.standalone
    assert parsed.identity.peering == "hexrl"


def test_non_default_values_reach_the_operator(render: Any) -> None:
    """... and non-default values arrive as the operator understands them."""
    objs = render(yaml.safe_load(FULL_VALUES.read_text()), extra=["--kube-version", KUBE_VERSION])
    c = operator_container(objs)
    parsed = OperatorSettings.from_env(env_of(c))
    assert parsed.pricing.price_overrides == {"h20-spot": 0.92, "H800": 4.9}
    # The catalog overrides arrive as the operator's catalog: a changed known type and a new type by its GFD product.
    catalog = parsed.catalog()
    assert catalog.get("H800").tflops_bf16 == 989
    assert catalog.canonical("NVIDIA-B300-SXM6-288GB") == "B300"
    assert catalog.get("B300").price_spot == pytest.approx(4.1)
    assert sorted(s.name for s in parsed.gpu_overrides()) == ["B300", "H800"]
    assert parsed.workloads.worker_image == "mirror.internal/hexrl/hexrl-workers:0.1.0"
    assert parsed.workloads.worker_image_pull_policy == "Never"
    assert parsed.log_level == "DEBUG"
    assert parsed.identity.peering == "hexrl-research"
    assert parsed.workloads.priority_class_prefix == "hexrl-research"
    assert "--namespace=research" in c["args"]
    assert c["image"] == "ghcr.io/hexrl/hexrl@" + yaml.safe_load(FULL_VALUES.read_text())["image"]["digest"]
    (deployment,) = by_kind(objs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    (peering,) = by_kind(objs, "KopfPeering")
    assert peering["metadata"]["namespace"] == "research"
    assert {o["metadata"]["name"] for o in by_kind(objs, "PriorityClass")} == {
        "hexrl-research-trainer", "hexrl-research-rollout", "hexrl-research-rollout-spot"}
    (sm,) = by_kind(objs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"][0]["honorLabels"] is True
    (pm,) = by_kind(objs, "PodMonitor")
    assert pm["spec"]["jobLabel"] == "hexrl.dev/job"
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["research"]}
    # It scrapes exactly the status ports the operator gives worker pods (each serves /metrics there).
    from hexrl.k8s.render_parts import STATUS_PORTS

    assert sorted(ep["port"] for ep in pm["spec"]["podMetricsEndpoints"]) == sorted(
        f"p{port}" for port in STATUS_PORTS.values())
    assert {ep["path"] for ep in pm["spec"]["podMetricsEndpoints"]} == {"/metrics"}
    (rule,) = by_kind(objs, "PrometheusRule")
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert {a["alert"] for a in alerts} == {"HexrlStalenessNearBound", "HexrlTrainerStarving", "HexrlPreemptionStorm",
                                            "HexrlJobDegraded", "HexrlPlanInfeasible"}
    assert all(a["labels"]["team"] == "ml-platform" for a in alerts)
    (np,) = by_kind(objs, "NetworkPolicy")
    assert np["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"}
    assert {m["metadata"]["namespace"] for m in by_kind(objs, "ConfigMap")} == {"monitoring"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"operator": {"watchNamespaces": ["a", "b"]}}, "at most one namespace"),
        ({"operator": {"replicas": 2}, "leaderElection": {"enabled": False}}, "needs leaderElection.enabled=true"),
        ({"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
         "needs metrics.service.enabled=true"),
    ],
)
def test_bad_values_fail_with_a_sentence(render: Any, values: dict[str, Any], message: str) -> None:
    (result,) = render(values, extra=["--kube-version", KUBE_VERSION], check=False)
    assert result["_returncode"] != 0
    assert message in result["_stderr"]


# ----------------------------------------------------------------------------- the operator's own


def test_rbac_equals_the_operators_manifest_cluster_wide(render: Any) -> None:
    manifest = [d for d in yaml.safe_load_all((ROOT / "manifests/operator/rbac.yaml").read_text()) if d]
    expected = rule_triples([r for d in manifest if d["kind"] == "ClusterRole" for r in d["rules"]])
    objs = render(extra=["--kube-version", KUBE_VERSION])
    (role,) = by_kind(objs, "ClusterRole")
    assert rule_triples(role["rules"]) == expected
    assert not any("*" in v for r in role["rules"] for v in r["verbs"] + r["resources"])
    # the manifest's Role (the operator's key Secret) stays a Role, in the release namespace, verbatim
    (key_role,) = by_kind(objs, "Role")
    assert key_role["metadata"]["namespace"] == "hexrl-system"
    assert key_role["rules"] == [r for d in manifest if d["kind"] == "Role" for r in d["rules"]]
    assert ("", "secrets", "get") not in rule_triples(role["rules"])  # no Secret is readable cluster-wide


def test_rbac_for_one_namespace_splits_without_losing_or_adding(render: Any) -> None:
    """Watching one namespace: namespaced rules move to a Role there; the union is still the manifest's."""
    manifest = [d for d in yaml.safe_load_all((ROOT / "manifests/operator/rbac.yaml").read_text()) if d]
    expected = rule_triples([r for d in manifest if d["kind"] == "ClusterRole" for r in d["rules"]])
    objs = render({"operator": {"watchNamespaces": ["research"]}}, extra=["--kube-version", KUBE_VERSION])
    (cluster_role,) = by_kind(objs, "ClusterRole")
    (role,) = [r for r in by_kind(objs, "Role") if r["metadata"]["namespace"] != "hexrl-system"]
    (key_role,) = [r for r in by_kind(objs, "Role") if r["metadata"]["namespace"] == "hexrl-system"]
    assert key_role["rules"] == [r for d in manifest if d["kind"] == "Role" for r in d["rules"]]
    assert role["metadata"]["namespace"] == "research"
    cluster, namespaced = rule_triples(cluster_role["rules"]), rule_triples(role["rules"])
    assert cluster | namespaced == expected
    assert not cluster & namespaced
    assert {r for _, r, _ in cluster} <= {"nodes", "priorityclasses", "clusterkopfpeerings", "customresourcedefinitions",
                                          "namespaces", "gpucalibrations", "gpucalibrations/status"}
    assert ("hexrl.dev", "gpucalibrations", "create") in cluster  # cluster-scoped: never moved into a Role
    assert ("", "pods", "create") in namespaced


def test_priority_classes_equal_the_operators(render: Any) -> None:
    """The chart's PriorityClasses are those the operator names and a cluster without the chart gets from
    `hexrl crds print --priority-classes` (with the CRD, one list: bootstrap.install_documents)."""
    objs = render(extra=["--kube-version", KUBE_VERSION])
    ours = {o["metadata"]["name"]: o for o in by_kind(objs, "PriorityClass")}
    theirs = {o["metadata"]["name"]: o for o in render_priority_classes(OperatorSettings())}
    printed = run([VENV_BIN / "hexrl", "crds", "print", "--priority-classes"]).stdout
    docs = [d for d in yaml.safe_load_all(printed) if d]
    assert [d["kind"] for d in docs] == ["CustomResourceDefinition"] * 2 + ["PriorityClass"] * 3
    assert {d["metadata"]["name"]: d["value"] for d in docs[2:]} == {n: pc["value"] for n, pc in theirs.items()}
    assert set(ours) == set(theirs)
    for name, pc in theirs.items():
        assert ours[name]["value"] == pc["value"], name
        assert ours[name].get("preemptionPolicy", "PreemptLowerPriority") == pc.get(
            "preemptionPolicy", "PreemptLowerPriority"), name


def test_the_operator_may_not_create_priority_classes(render: Any) -> None:
    """PriorityClasses are installed with the chart; the operator may only read them (a class it could create
    would preempt other tenants' pods)."""
    (role,) = by_kind(render(extra=["--kube-version", KUBE_VERSION]), "ClusterRole")
    verbs = {v for g, r, v in rule_triples(role["rules"]) if r == "priorityclasses"}
    assert verbs == {"get"}
    assert {("", "serviceaccounts", "create"), ("networking.k8s.io", "networkpolicies", "patch")} <= rule_triples(
        role["rules"])
    env = env_of(operator_container(render(extra=["--kube-version", KUBE_VERSION])))
    assert not any("CREATE_PRIORITY" in k for k in env)


def test_admission_policy_binds_to_the_operators_service_account(render: Any) -> None:
    objs = render({"serviceAccount": {"name": "hx-op"}}, extra=["--kube-version", KUBE_VERSION])
    (policy,) = by_kind(objs, "ValidatingAdmissionPolicy")
    (binding,) = by_kind(objs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    (cond,) = policy["spec"]["matchConditions"]
    assert cond["expression"] == 'request.userInfo.username == "system:serviceaccount:hexrl-system:hx-op"'
    assert all(v.get("message") or v.get("messageExpression") for v in policy["spec"]["validations"])
    off = render({"admissionPolicy": {"enabled": False}}, extra=["--kube-version", KUBE_VERSION])
    assert not by_kind(off, "ValidatingAdmissionPolicy") and not by_kind(off, "ValidatingAdmissionPolicyBinding")
    # Watching one namespace, the policy also keeps the children there.
    scoped = render({"operator": {"watchNamespaces": ["research"]}}, extra=["--kube-version", KUBE_VERSION])
    exprs = [v["expression"] for v in by_kind(scoped, "ValidatingAdmissionPolicy")[0]["spec"]["validations"]]
    assert any("request.namespace in ['research']" in e for e in exprs)
    warn = render({"admissionPolicy": {"validationActions": ["Warn", "Audit"]}}, extra=["--kube-version", KUBE_VERSION])
    assert by_kind(warn, "ValidatingAdmissionPolicyBinding")[0]["spec"]["validationActions"] == ["Warn", "Audit"]
