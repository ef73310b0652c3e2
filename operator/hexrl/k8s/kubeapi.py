"""A small JSON-in/JSON-out client over the `kubernetes` package's transport.

The operator works with raw manifests (dicts), the way kopf hands objects over and the way render
produces them, so it talks REST directly: GET, server-side apply (PATCH application/apply-patch+yaml with a
field manager), DELETE, merge-patch of the status subresource, and Event creation. Auth, TLS and
kubeconfig handling come from the `kubernetes` package. Every request is counted, in total (`requests`)
and per thread (`thread_requests()`: a reconcile pass runs on one thread while others run theirs, so
only the per-thread count says what one pass cost), for the metrics and the benchmark.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config

log = logging.getLogger(__name__)

# (apiVersion, kind) → (path prefix, plural, namespaced)
_KINDS: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("v1", "Pod"): ("/api/v1", "pods", True),
    ("v1", "Service"): ("/api/v1", "services", True),
    ("v1", "ConfigMap"): ("/api/v1", "configmaps", True),
    ("v1", "Secret"): ("/api/v1", "secrets", True),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("/apis/networking.k8s.io/v1", "networkpolicies", True),
    ("v1", "Event"): ("/api/v1", "events", True),
    ("v1", "Node"): ("/api/v1", "nodes", False),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments", True),
    ("policy/v1", "PodDisruptionBudget"): ("/apis/policy/v1", "poddisruptionbudgets", True),
    ("scheduling.k8s.io/v1", "PriorityClass"): ("/apis/scheduling.k8s.io/v1", "priorityclasses", False),
    ("hexrl.dev/v1alpha1", "RLJob"): ("/apis/hexrl.dev/v1alpha1", "rljobs", True),
    ("hexrl.dev/v1alpha1", "GPUCalibration"): ("/apis/hexrl.dev/v1alpha1", "gpucalibrations", False),
    ("v1", "Namespace"): ("/api/v1", "namespaces", False),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"):
        ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    ("kopf.dev/v1", "ClusterKopfPeering"): ("/apis/kopf.dev/v1", "clusterkopfpeerings", False),
    ("kopf.dev/v1", "KopfPeering"): ("/apis/kopf.dev/v1", "kopfpeerings", True),
}


class ApiError(Exception):
    """A non-2xx answer; `status` is the HTTP code, `reason` the Status reason (e.g. AlreadyExists)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def object_path(api_version: str, kind: str, name: str | None = None, namespace: str | None = None) -> str:
    try:
        prefix, plural, namespaced = _KINDS[(api_version, kind)]
    except KeyError as exc:
        raise ValueError(f"hexrl.k8s does not handle {kind} ({api_version})") from exc
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespaced else f"{prefix}/{plural}"
    return f"{path}/{name}" if name else path


@dataclass
class KubeApi:
    """Thread-safe REST helper; one per operator process."""

    api_client: client.ApiClient
    field_manager: str = "hexrl-operator"
    requests: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()

    def thread_requests(self) -> int:
        """Requests made so far by the calling thread (plus those credited to it by `credit`)."""
        return int(getattr(self._local, "n", 0))

    def credit(self, n: int) -> None:
        """Count `n` requests that helper threads made on behalf of the calling thread."""
        self._local.n = self.thread_requests() + n

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None, field_manager: str = "hexrl-operator") -> KubeApi:
        """Load a kubeconfig file (or the in-cluster service account when none is given and we run in a pod)."""
        cfg = client.Configuration()
        try:
            config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        except config.ConfigException:
            if kubeconfig:
                raise
            config.load_incluster_config(client_configuration=cfg)
        cfg.connection_pool_maxsize = 32
        return cls(client.ApiClient(cfg), field_manager)

    # ------------------------------------------------------------------------------------ transport

    def _call(
        self, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any] | None:
        with self._lock:
            self.requests += 1
        self._local.n = self.thread_requests() + 1
        headers = {"Accept": "application/json", "Content-Type": content_type}
        params = self.api_client.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            resp = self.api_client.call_api(*params, _request_timeout=30)
            raw = resp.read()
        except client.ApiException as exc:
            raise _api_error(exc.status or 0, exc.body) from None
        if resp.status >= 400:
            raise _api_error(resp.status, raw)
        return json.loads(raw) if raw else None

    # ---------------------------------------------------------------------------------------- verbs

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self._call("GET", object_path(api_version, kind, name, namespace))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str | None = None, label_selector: str = "") -> list[dict]:
        query = [("labelSelector", label_selector)] if label_selector else []
        out = self._call("GET", object_path(api_version, kind, None, namespace), query=query) or {}
        return list(out.get("items") or [])

    def apply(self, obj: dict[str, Any], force: bool = True) -> dict[str, Any]:
        """Server-side apply: create or update the fields we manage; unchanged objects are not written."""
        m = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], m["name"], m.get("namespace"))
        query = [("fieldManager", self.field_manager)] + ([("force", "true")] if force else [])
        out = self._call("PATCH", path, body=obj, query=query, content_type="application/apply-patch+yaml")
        return out or {}

    def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None = None,
        grace_seconds: int | None = None, uid: str | None = None,
    ) -> bool:
        """Delete (background propagation); False when already gone. `uid` guards against deleting a successor."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._call("DELETE", object_path(api_version, kind, name, namespace), body=body)
            return True
        except ApiError as exc:
            if exc.status in (404, 409):
                return False
            raise

    def patch_status(
        self, api_version: str, kind: str, name: str, namespace: str | None, status: dict[str, Any]
    ) -> None:
        """One merge-patch of the status subresource."""
        path = object_path(api_version, kind, name, namespace) + "/status"
        self._call("PATCH", path, body={"status": status}, content_type="application/merge-patch+json")

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        m = obj["metadata"]
        return self._call("POST", object_path(obj["apiVersion"], obj["kind"], None, m.get("namespace")), body=obj) or {}


def _api_error(status: int, raw: Any) -> ApiError:
    reason, message = "", str(raw)[:500]
    try:
        data = json.loads(raw)
        reason, message = data.get("reason", ""), data.get("message", message)
    except (TypeError, ValueError):
        pass
    return ApiError(status, reason, message)
