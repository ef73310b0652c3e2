"""The live view of a job's pods: the store, plus pods this process created that the watch has not shown
yet, minus pods it deleted whose deletion the watch has not shown yet (each for at most `EXPECT_TTL`).

The apply part decides creations and deletions on this view (so a pass never creates a pod twice or counts
a deleted one) and records what it did here; the status part counts ready pods on the same view.
"""

from __future__ import annotations

import time

from hexrl.k8s import render
from hexrl.k8s.jobmemory import EXPECT_TTL, JobMemory, Pod
from hexrl.k8s.store import Store


class PodView:
    """A job's pods as the store shows them, corrected by what this process did meanwhile."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def pods(self, ref: render.JobRef, mem: JobMemory) -> list[Pod]:
        """The job's live pods (see the module docstring); forgets expectations the watch has caught up with."""
        now = time.monotonic()
        seen = self.store.job_pods(ref.namespace, ref.name)
        names = {p["name"] for p in seen}
        for n in [n for n, (_, t) in mem.expected.items() if n in names or now - t > EXPECT_TTL]:
            mem.expected.pop(n, None)
        for n in [n for n, t in mem.deleted.items() if n not in names or now - t > EXPECT_TTL]:
            mem.deleted.pop(n, None)
        pods = [p for p in seen if p["name"] not in mem.deleted and not p["deleting"]]
        pods += [v for v, _ in mem.expected.values()]
        return pods

    @staticmethod
    def created(mem: JobMemory, pod: Pod) -> None:
        """A pod was created: count it as pending until the watch shows it."""
        mem.expected[pod["metadata"]["name"]] = (_expected_view(pod), time.monotonic())

    @staticmethod
    def deleted(mem: JobMemory, pod: Pod) -> None:
        """A pod was deleted: stop counting it even while the store still lists it."""
        if pod.get("expected"):
            mem.expected.pop(pod["name"], None)
        mem.deleted[pod["name"]] = time.monotonic()


def _expected_view(pod: Pod) -> Pod:
    """The store's view of a pod we just created (pending, not ready), until the watch shows the real one."""
    labels = pod["metadata"]["labels"]
    return {"name": pod["metadata"]["name"], "namespace": pod["metadata"]["namespace"], "uid": "", "node": "",
            "gpus": 0, "job": labels.get("hexrl.dev/job", ""), "role": labels.get("hexrl.dev/role", ""),
            "slot": labels.get("hexrl.dev/slot", ""), "phase": "Pending", "terminal": False,
            "disrupted": False, "deleting": False, "ready": False, "ip": "", "problem": None, "notReadySince": "",
            "readinessProbe": "", "epoch": labels.get(render.EPOCH_LABEL, ""),
            "hash": pod["metadata"]["annotations"][render.HASH_ANNOTATION], "expected": True}
