"""Render the children of an RLJob that are not pods — ServiceAccount, NetworkPolicy, Secret, ConfigMap,
coordinator Deployment and Service, trainer Services and PodDisruptionBudget — and the cluster-wide
PriorityClasses. Pure.

`render_static` returns every per-job one in the order the applier writes them (all before any pod; the
ServiceAccount and NetworkPolicy before the rest: `FIRST_KINDS`).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hexrl.api import jobtokens
from hexrl.api import workerconfig as wc
from hexrl.api.models import RLJobSpec, SpotUse
from hexrl.k8s.render_parts import (
    EPOCH_LABEL,
    PLAN_KEY,
    PRIORITY_VALUES,
    RANK_LABEL,
    RENDEZVOUS_PORT,
    STATE_KEY,
    STATUS_PORTS,
    JobRef,
    container,
    coordinator_url,
    extra_node_selector,
    identity,
    labels,
    meta,
    names,
    pod_security_context,
    pod_volumes,
    priority_class_name,
    selector,
    spot_tolerations,
    weights_url,
    with_hash,
)
from hexrl.k8s.render_pods import trainer_epoch_tag
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import LABEL_JOB
from hexrl.sched.types import Plan

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""The label the API server puts on every namespace, with its name: selects the operator's namespace."""
COMPONENT_LABEL = "app.kubernetes.io/component"
"""The chart labels the operator's pods `operator` under this key (its selector labels)."""
FIRST_KINDS = ("ServiceAccount", "NetworkPolicy")
"""Applied in a round before the other children: the coordinator Deployment's pods cannot be created before
their ServiceAccount exists, and no pod of the job should run before its NetworkPolicy does."""

# ------------------------------------------------------------------------------- cluster-scoped kinds


def render_priority_classes(settings: OperatorSettings) -> list[dict[str, Any]]:
    """Cluster-wide PriorityClasses (no owner: shared by all jobs). Installed with the CRD (the chart, or
    `bootstrap.install_documents`), never by the operator, which may only read them."""
    out = []
    for kind, value in PRIORITY_VALUES.items():
        pc: dict[str, Any] = {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {
                "name": priority_class_name(settings, kind),
                "labels": {"app.kubernetes.io/part-of": "hexrl", "app.kubernetes.io/managed-by": "hexrl-operator"},
            },
            "value": value,
            "globalDefault": False,
            "description": f"hexrl {kind} pods",
        }
        if kind == "rollout-spot":
            pc["preemptionPolicy"] = "Never"  # opportunistic capacity never evicts anyone
        out.append(with_hash(pc))
    return out


# ------------------------------------------------------------------------------- secret and config


def render_secret(ref: JobRef, tokens: dict[str, str]) -> dict[str, Any]:
    """The job's Secret: each role's token under the role's name, and their digests (`hexrl.api.jobtokens`)."""
    data = {**tokens, wc.SECRET_DIGESTS_KEY: jobtokens.encode_digests(tokens)}
    return with_hash(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta(ref, names(ref)["secret"], "coordinator"),
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
    )


def render_configmap(
    ref: JobRef,
    spec: RLJobSpec,
    plan: Plan,
    plan_summary: Any,
    live_eta: int,
    state: dict[str, Any],
) -> dict[str, Any]:
    """Worker config (with the live η) + the plan + the operator's per-job state (trainer epoch, scaling)."""
    from hexrl.k8s import plancodec

    config = wc.WorkerConfig(
        job=ref.name,
        namespace=ref.namespace,
        spec=spec,
        coordinator_url=coordinator_url(ref),
        weights_url=weights_url(ref),
        max_policy_lag=live_eta,
        plan=plan_summary,
        checkpoint_dir=spec.checkpoint.path,
    )
    data = {
        **wc.configmap_data(config),
        PLAN_KEY: plancodec.dumps(plan),
        STATE_KEY: json.dumps(state, sort_keys=True),
    }
    return with_hash(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(ref, names(ref)["config"], "coordinator"), "data": data}
    )


# ------------------------------------------------------------------------------ identity and network


def render_service_account(ref: JobRef) -> dict[str, Any]:
    """The job pods' own ServiceAccount: no Role is bound to it and no token is mounted from it, so a job pod
    holds no credential for the API server (and not the namespace's `default` account's, whatever that may
    be granted)."""
    return with_hash({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(ref, names(ref)["serviceaccount"], "coordinator"),
        "automountServiceAccountToken": False,
    })


def render_network_policy(ref: JobRef, settings: OperatorSettings) -> dict[str, Any]:
    """Ingress to the job's pods: from the job's own pods on any port (trajectories and leases to the
    coordinator, weight pulls and relays, the trainer's rendezvous and collectives); from the metrics
    scrapers (`settings.scraper_*`) on the status ports only; from the operator's pods (its namespace,
    component `operator`) on the coordinator's port only, for /v1/progress. Egress is left open (the
    workers may fetch a model or a dataset from outside). Needs a network plugin that enforces policies."""
    job_pods = {"podSelector": {"matchLabels": {LABEL_JOB: ref.name}}}
    ingress: list[dict[str, Any]] = [{"from": [job_pods]}]
    if settings.workloads.scraper_namespace_labels:
        scraper: dict[str, Any] = {"namespaceSelector": {"matchLabels": dict(settings.workloads.scraper_namespace_labels)}}
        if settings.workloads.scraper_pod_labels:
            scraper["podSelector"] = {"matchLabels": dict(settings.workloads.scraper_pod_labels)}
        ports = sorted(set(STATUS_PORTS.values()))
        ingress.append({"from": [scraper], "ports": [{"protocol": "TCP", "port": p} for p in ports]})
    operator = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: settings.operator_namespace()}},
        "podSelector": {"matchLabels": {COMPONENT_LABEL: "operator"}},
    }
    ingress.append({"from": [operator], "ports": [{"protocol": "TCP", "port": wc.COORDINATOR_PORT}]})
    return with_hash({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(ref, names(ref)["networkpolicy"], "coordinator"),
        "spec": {"podSelector": job_pods["podSelector"], "policyTypes": ["Ingress"], "ingress": ingress},
    })


# ---------------------------------------------------------------------------------------- coordinator


def render_coordinator(ref: JobRef, spec: RLJobSpec, settings: OperatorSettings) -> list[dict[str, Any]]:
    """Deployment (1 replica, CPU only: it serves prompts and buffers trajectories) + its Service."""
    n = names(ref)["coordinator"]
    vols, mounts = pod_volumes(ref, spec, "coordinator")
    main = container(
        ref, spec, "coordinator", spec.images.coordinator, 0, [], [wc.COORDINATOR_PORT], mounts, settings
    )
    pod_spec: dict[str, Any] = {
        **identity(ref),
        "securityContext": pod_security_context(),
        "containers": [main],
        "volumes": vols,
        "priorityClassName": priority_class_name(settings, "trainer"),
        "terminationGracePeriodSeconds": 30,
        "affinity": coordinator_affinity(spec, settings),
    }
    if spec.placement.spot.trainer != SpotUse.forbidden:
        pod_spec["tolerations"] = spot_tolerations()
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(ref, n, "coordinator"),
        "spec": {
            "replicas": 0 if spec.suspend else 1,
            "strategy": {"type": "Recreate"},  # never two coordinators (two buffers) at once
            "selector": {"matchLabels": selector(ref, "coordinator")},
            "template": {"metadata": {"labels": labels(ref, "coordinator")}, "spec": pod_spec},
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(ref, n, "coordinator"),
        "spec": {
            "selector": selector(ref, "coordinator"),
            "ports": [{"name": "http", "port": wc.COORDINATOR_PORT, "targetPort": wc.COORDINATOR_PORT}],
        },
    }
    return [with_hash(dep), with_hash(svc)]


def coordinator_affinity(spec: RLJobSpec, settings: OperatorSettings) -> dict[str, Any]:
    """The coordinator holds the job's buffer, cursor and in-flight leases: a spot reclaim would drop them,
    so it keeps off spot capacity (every label of `settings.discovery.spot_labels`: NotIn also matches a node without
    the label) like the trainer — required when the trainer must be on-demand, only preferred when the job
    lets the trainer run on spot too (a cluster of spot nodes only must still run it)."""
    not_spot = [{"key": key, "operator": "NotIn", "values": [value]} for key, value in settings.discovery.spot_labels]
    extra = extra_node_selector(spec)
    if spec.placement.spot.trainer == SpotUse.forbidden:
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": not_spot + extra}]}}}
    affinity: dict[str, Any] = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": not_spot}}]}}
    if extra:
        affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = {
            "nodeSelectorTerms": [{"matchExpressions": extra}]}
    return affinity


# -------------------------------------------------------------------------------------------- trainer


def render_trainer_services(ref: JobRef, epoch_tag: str) -> list[dict[str, Any]]:
    """Headless rendezvous Service (DNS name per rank) + the weight-sync Service on rank 0, both selecting
    only the current gang (`epoch_tag`): after a gang restart the old ranks, still terminating under the same
    hostnames, must not answer `trainer-0.<job>-trainer` (the new ranks would rendezvous with a dying
    master) nor serve weights."""
    nm = names(ref)
    gang = {**selector(ref, "trainer"), EPOCH_LABEL: epoch_tag}
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(ref, nm["trainer"], "trainer"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,  # ranks must resolve each other before they are ready
            "selector": gang,
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT}],
        },
    }
    weights = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(ref, nm["weights"], "trainer"),
        "spec": {
            "selector": {**gang, RANK_LABEL: "0"},
            "ports": [{"name": "weights", "port": wc.WEIGHTS_PORT, "targetPort": wc.WEIGHTS_PORT}],
        },
    }
    return [with_hash(headless), with_hash(weights)]


def render_trainer_pdb(ref: JobRef, plan: Plan) -> dict[str, Any]:
    return with_hash(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta(ref, names(ref)["trainer"], "trainer"),
            "spec": {"minAvailable": len(plan.trainer.nodes), "selector": {"matchLabels": selector(ref, "trainer")}},
        }
    )


# ------------------------------------------------------------------------------------------ all static


def render_static(
    ref: JobRef, spec: RLJobSpec, plan: Plan, plan_summary: Any, live_eta: int, state: dict[str, Any],
    tokens: dict[str, str], settings: OperatorSettings,
) -> list[dict[str, Any]]:
    """Children whose identity does not depend on which pods exist: applied as-is every pass."""
    return [
        render_service_account(ref),
        render_network_policy(ref, settings),
        render_secret(ref, tokens),
        render_configmap(ref, spec, plan, plan_summary, live_eta, state),
        *render_coordinator(ref, spec, settings),
        *render_trainer_services(ref, trainer_epoch_tag(plan, int(state.get("trainerEpoch", 0)))),
        render_trainer_pdb(ref, plan),
    ]
