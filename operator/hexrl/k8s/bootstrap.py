"""What `hexrl operator` needs on a fresh cluster, prepared when it runs from a developer's shell.

On a cluster just made by `hexrl cluster up` (or any cluster where nobody installed the chart) the operator
needs the RLJob CRD (and the GPUCalibration CRD, where it keeps what it learns about the cost model; without
it the operator runs and keeps that in memory), the PriorityClasses its pods name (the API server refuses a pod
whose class is missing; the operator itself may only read them), the namespace of its key Secret (`hexrl-system`, see `OperatorSettings.key_namespace`)
and, with `--peering NAME`, kopf's peering CRDs and the peering object (without them kopf pauses every
watch and the operator silently does nothing). `prepare` creates exactly what is missing — the RLJob CRD is
also brought up to date, so a developer's operator and schema match — and waits until a new CRD is
Established. It only acts on what it could read and found absent: credentials that may not read something
(the operator's own ServiceAccount) leave it alone, and the start-up checks after it say what is wrong.
Credentials that may read but not create get one line naming the command a cluster admin runs.

The Helm chart installs all of this itself; its operator pod never prepares anything (`hexrl operator`
prepares only when given a kubeconfig or when not running in a pod). `install_documents` is the one list of
cluster-wide objects an admin installs without the chart (CRD + PriorityClasses): `prepare`, `hexrl crds print
--priority-classes` and the test harnesses all take it from there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import yaml

from hexrl.api.crd import CRD_NAME, calibration_crd, crd, peering_crds
from hexrl.k8s.kubeapi import ApiError, KubeApi
from hexrl.k8s.render_static import render_priority_classes
from hexrl.k8s.settings import OperatorSettings

log = logging.getLogger(__name__)

ADMIN_COMMAND = ("hexrl crds print --priority-classes | kubectl apply -f - && kubectl apply -f "
                 "manifests/operator/peering.yaml && kubectl create namespace {ns} "
                 "&& kubectl apply -f manifests/operator/rbac.yaml")
"""What a cluster admin runs instead (from the repository root) when our credentials may not."""
ESTABLISHED_SECONDS = 30.0
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")


class PrepareError(RuntimeError):
    """Something the operator needs is missing and these credentials may not create it (one line)."""


def install_documents(settings: OperatorSettings | None = None) -> list[dict[str, Any]]:
    """The cluster-wide objects installed with the operator, not by it: the RLJob and GPUCalibration CRDs and the
    PriorityClasses (names and values of `render_priority_classes`, which the chart's defaults equal)."""
    return [crd(), calibration_crd(), *render_priority_classes(settings or OperatorSettings())]


def install_yaml(settings: OperatorSettings | None = None) -> str:
    """`install_documents` as one multi-document YAML text (for `kubectl apply -f -`)."""
    return yaml.safe_dump_all(install_documents(settings), sort_keys=False)


def prepare(api: KubeApi, settings: OperatorSettings) -> list[str]:
    """Create what is missing (see the module docstring); returns what was done, one phrase each."""
    done: list[str] = []
    ns = settings.operator_namespace()
    _step(done, f"applied the RLJob CRD {CRD_NAME}", ns, lambda: _own_crd(api, crd()))
    calibration = calibration_crd()
    _step(done, f"applied the GPUCalibration CRD {calibration['metadata']['name']}", ns,
          lambda: _optional_crd(api, calibration))
    for doc in install_documents(settings):
        if doc["kind"] == "PriorityClass":  # (the CRDs are the steps above: they are also brought up to date)
            _step(done, f"created PriorityClass {doc['metadata']['name']}", ns, partial(_create_if_missing, api, doc))
    _step(done, f"created namespace {ns}", ns, lambda: _create_if_missing(api, _namespace(ns)))
    if settings.identity.peering and not settings.identity.standalone:
        for doc in peering_crds():
            _step(done, f"created CRD {doc['metadata']['name']}", ns, partial(_crd_if_missing, api, doc))
        peering = _peering(settings.identity.peering, settings.watching.namespace)
        what = f"created {peering['kind']} {settings.identity.peering}"
        _step(done, what, ns, lambda: _create_if_missing(api, peering))
    for line in done:
        log.info("prepared the cluster: %s", line)
    return done


def _step(done: list[str], what: str, ns: str, fn: Callable[[], bool]) -> None:
    """Run one step; a refusal to create becomes PrepareError naming the admin's command."""
    try:
        if fn():
            done.append(what)
    except ApiError as exc:
        if exc.status in (401, 403):
            raise PrepareError(
                f"cannot prepare the cluster ({what.split(' ', 1)[1]}: {exc.status} {exc.reason}); as a cluster "
                f"admin run: {ADMIN_COMMAND.format(ns=ns)}"
            ) from None
        raise


def _readable(api: KubeApi, api_version: str, kind: str, name: str, namespace: str | None = None) -> tuple[bool, Any]:
    """(could read, the object or None). A 403 means: not ours to judge, leave it."""
    try:
        return True, api.get(api_version, kind, name, namespace)
    except ApiError as exc:
        if exc.status in (401, 403):
            return False, None
        raise


def _create_if_missing(api: KubeApi, obj: dict[str, Any]) -> bool:
    m = obj["metadata"]
    readable, existing = _readable(api, obj["apiVersion"], obj["kind"], m["name"], m.get("namespace"))
    if not readable or existing is not None:
        return False
    try:
        api.create(obj)
    except ApiError as exc:
        if exc.reason == "AlreadyExists":
            return False
        raise
    return True


def _crd_if_missing(api: KubeApi, doc: dict[str, Any]) -> bool:
    created = _create_if_missing(api, doc)
    if created:
        _wait_established(api, doc["metadata"]["name"])
    return created


def _own_crd(api: KubeApi, want: dict[str, Any]) -> bool:
    """Apply one of hexrl's CRDs when it is missing or differs from this operator's (server-side apply)."""
    name = want["metadata"]["name"]
    readable, existing = _readable(api, *CRD, name)
    if not readable or (existing is not None and _same_spec(existing, want)):
        return False
    try:
        api.apply(want)
    except ApiError as exc:
        if existing is None or exc.status not in (401, 403):
            raise
        log.warning("the installed CRD %s differs from this operator's and these credentials may not update it "
                    "(%s %s); continuing with the installed one", name, exc.status, exc.reason)
        return False
    _wait_established(api, name)
    return True


def _optional_crd(api: KubeApi, want: dict[str, Any]) -> bool:
    """`_own_crd` for a CRD the operator can run without (the GPUCalibration: what calibration learns is then
    kept in memory only): missing and not creatable with these credentials is a warning, not a refusal."""
    try:
        return _own_crd(api, want)
    except ApiError as exc:
        if exc.status not in (401, 403):
            raise
        log.warning("the CRD %s is not installed and these credentials may not create it (%s %s): the operator "
                    "runs, but what it learns about the cost model is lost on restart; install the chart's CRDs "
                    "(or `hexrl crds print | kubectl apply -f -`) to keep it", want["metadata"]["name"], exc.status, exc.reason)
        return False


def _same_spec(existing: dict[str, Any], want: dict[str, Any]) -> bool:
    """The stored CRD's versions (schema, printer columns) equal ours (the server adds defaults elsewhere)."""
    return bool(existing.get("spec", {}).get("versions") == want["spec"]["versions"])


def _wait_established(api: KubeApi, name: str) -> None:
    deadline = time.monotonic() + ESTABLISHED_SECONDS
    while time.monotonic() < deadline:
        obj = api.get(*CRD, name) or {}
        conds = (obj.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conds):
            return
        time.sleep(0.2)
    raise PrepareError(f"CRD {name} was created but is not Established after {ESTABLISHED_SECONDS:.0f} s")


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _peering(name: str, namespace: str | None) -> dict[str, Any]:
    """The (Cluster)KopfPeering object kopf coordinates replicas through (namespaced with --namespace)."""
    if namespace:
        return {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": name, "namespace": namespace}}
    return {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
