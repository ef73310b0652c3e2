"""The operator's in-memory view of the cluster: compact Node and Pod views, kept current by kopf.

kopf's index functions feed it (they run for every object before any handler runs, so the store is
complete before the first reconcile pass — a restarted operator never plans against a half-listed
cluster) and its DELETED events prune it. Reads return copies and are safe from any thread.
"""

from __future__ import annotations

import threading
from typing import Any

JobKey = tuple[str, str]
"""(namespace, name) of an RLJob: how the store, the work queue and the reconciler key jobs."""


class Store:
    """Thread-safe maps: node name → node view, pod uid → pod view (only pods with GPUs or of RLJobs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, dict[str, Any]] = {}
        self._pods: dict[str, dict[str, Any]] = {}
        self._by_job: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._node_version = 0

    # ------------------------------------------------------------------------------------ nodes

    def put_node(self, view: dict[str, Any]) -> dict[str, Any] | None:
        """Store a node view; returns the previous one."""
        with self._lock:
            old = self._nodes.get(view["name"])
            self._nodes[view["name"]] = view
            if old != view:
                self._node_version += 1
            return old

    def drop_node(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            old = self._nodes.pop(name, None)
            if old is not None:
                self._node_version += 1
            return old

    def nodes_versioned(self) -> tuple[int, list[dict[str, Any]]]:
        """(a number that changes whenever any node view changes, the node views) — for caches."""
        with self._lock:
            return self._node_version, list(self._nodes.values())

    def nodes(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._nodes.values())

    def node_names(self) -> set[str]:
        with self._lock:
            return set(self._nodes)

    # ------------------------------------------------------------------------------------- pods

    def put_pod(self, view: dict[str, Any]) -> dict[str, Any] | None:
        key = view["uid"] or f"{view['namespace']}/{view['name']}"
        with self._lock:
            old = self._pods.get(key)
            if old is not None and old.get("job"):
                self._by_job.get((old["namespace"], old["job"]), {}).pop(key, None)
            self._pods[key] = view
            if view.get("job"):
                self._by_job.setdefault((view["namespace"], view["job"]), {})[key] = view
            return old

    def drop_pod(self, uid: str) -> dict[str, Any] | None:
        with self._lock:
            old = self._pods.pop(uid, None)
            if old is not None and old.get("job"):
                bucket = self._by_job.get((old["namespace"], old["job"]), {})
                bucket.pop(uid, None)
                if not bucket:
                    self._by_job.pop((old["namespace"], old["job"]), None)
            return old

    def gpu_pods(self) -> list[dict[str, Any]]:
        with self._lock:
            return [p for p in self._pods.values() if p["gpus"]]

    def job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._by_job.get((namespace, job_name), {}).values())

    def jobs_on_node(self, node: str) -> set[tuple[str, str]]:
        with self._lock:
            return {(p["namespace"], p["job"]) for p in self._pods.values() if p["node"] == node and p["job"]}
