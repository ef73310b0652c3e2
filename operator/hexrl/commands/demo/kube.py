"""Reading the demo's cluster through kubectl, and waiting on it.

The stages look at the cluster only through these: an object's JSON, the job's pods and Events, the nodes'
labels, and a bounded poll that fails with what it was waiting for (and stops early if the operator died).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from hexrl.commands.demo.settings import DemoError


def get_json(cluster: Any, *args: str) -> dict[str, Any]:
    """`kubectl get ARGS -o json`, parsed; {} when the object does not exist (or kubectl fails)."""
    proc = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else {}


def wait_for(con: Any, what: str, check: Callable[[], Any], timeout: float, alive: Callable[[], None]) -> Any:
    """Poll `check` every half second under a spinner until it returns something truthy, and return that;
    `alive` runs before each poll (it raises when the operator has exited). DemoError after `timeout` s."""
    deadline = time.monotonic() + timeout
    with con.status(f"waiting for {what} …"):
        while time.monotonic() < deadline:
            alive()
            result = check()
            if result:
                return result
            time.sleep(0.5)
    raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")


def job_pods(cluster: Any, job: str, ns: str) -> list[dict[str, Any]]:
    """The pods the operator created for the job (by its `hexrl.dev/job` label)."""
    return get_json(cluster, "pods", "-n", ns, "-l", f"hexrl.dev/job={job}").get("items", [])


def node_labels(cluster: Any) -> dict[str, dict[str, str]]:
    """Node name → its labels (pool, GPU product, spot, real), for every node the cluster has now."""
    nodes = get_json(cluster, "nodes").get("items", [])
    return {node["metadata"]["name"]: node["metadata"].get("labels", {}) for node in nodes}


def job_events(cluster: Any, job: str, ns: str) -> list[dict[str, Any]]:
    """The Events about the RLJob, oldest first."""
    selector = f"involvedObject.name={job}"
    items = get_json(cluster, "events", "-n", ns, "--field-selector", selector).get("items", [])
    return sorted(items, key=lambda event: event.get("lastTimestamp") or event.get("eventTime") or "")
