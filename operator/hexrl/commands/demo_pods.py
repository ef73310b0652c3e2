"""The demo's real part: the tiny RLJob training in real pods on the cluster's real nodes, the reward rising
live, a real spot node reclaimed mid-training (the reclaim taint, then a drain through the Eviction API),
and the job carrying on.

Runs when the demo's inventory has `real: true` pools (manifests/clusters/demo.yaml does). The job is
manifests/examples/rljob-tiny.yaml, restricted to the real pools' GPU type and with its checkpoints on a
PersistentVolumeClaim, so that nothing of it lands on a simulated node where no container runs.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECLAIM_TAINT = "karpenter.sh/disrupted=true:NoSchedule"
"""The taint Karpenter puts on a node it is about to take away (one of DESIGN.md §4's going-away taints)."""


@dataclass(frozen=True)
class PodsDemoSettings:
    """What the real-pod part runs and how long it may take."""

    job: Path = Path("manifests/examples/rljob-tiny.yaml")
    """The RLJob trained in real pods."""
    namespace: str = "tiny"
    """Its namespace (created by the demo)."""
    target_reward: float = 0.9
    """The demo waits until `status.progress.meanReward` reaches this."""
    reclaim_at_step: int = 30
    """A spot node holding rollout pods is reclaimed once the job has trained this many steps."""
    timeout_seconds: float = 420.0
    """Upper bound for the whole part (pods Ready, training to the target reward)."""


@dataclass
class PodsOutcome:
    """Numbers for the summary."""

    first_step_seconds: float = 0.0
    reward_start: float | None = None
    reward_end: float | None = None
    steps: int = 0
    reclaimed: str = ""
    replacement_seconds: float = 0.0
    partials: float = 0.0
    trainer_untouched: bool = True
    samples_per_second: float = 0.0
    history: list[tuple[float, int, float]] = field(default_factory=list)
    """(seconds since apply, trained steps, mean reward)."""


def pods_job(manifest: Path, namespace: str, gpu_types: list[str] | None = None,
             total_steps: int | None = None) -> dict[str, Any]:
    """The tiny RLJob for real pods: its checkpoints on the PVC `ckpt` (a new trainer pod finds them), the
    locally loaded images never pulled, optionally only on `gpu_types` (the real pools)."""
    import yaml

    job = yaml.safe_load(manifest.read_text())
    job["metadata"]["namespace"] = namespace
    spec = job["spec"]
    if total_steps is not None:
        spec["algorithm"]["totalSteps"] = total_steps
    spec["checkpoint"] = {"pvc": "ckpt", "path": "/checkpoints", "everySteps": 10, "keep": 2}
    spec.setdefault("images", {})["pullPolicy"] = "Never"
    if gpu_types:
        spec.setdefault("placement", {})["gpuTypes"] = gpu_types
    return dict(job)


def checkpoint_claim(namespace: str) -> dict[str, Any]:
    """The job's checkpoint PVC (the cluster's default StorageClass binds it)."""
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "ckpt", "namespace": namespace},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}  # fmt: skip


def _json(cluster: Any, *args: str) -> dict[str, Any]:
    proc = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else {}


def _ready(pod: dict[str, Any]) -> bool:
    conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return pod.get("status", {}).get("phase") == "Running" and conds.get("Ready") == "True"


class PodsDemo:
    """Drives the real-pod part against a running cluster and operator; prints to a rich console."""

    def __init__(self, con: Any, cluster: Any, settings: PodsDemoSettings, alive: Any) -> None:
        self.con, self.cluster, self.s, self.alive = con, cluster, settings, alive
        self.name = ""
        self.eta: Any = "?"
        self.out = PodsOutcome()
        self.t0 = 0.0

    def pods(self, role: str = "") -> list[dict[str, Any]]:
        sel = f"hexrl.dev/job={self.name}" + (f",hexrl.dev/role={role}" if role else "")
        items = _json(self.cluster, "pods", "-n", self.s.namespace, "-l", sel).get("items", [])
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def progress(self) -> dict[str, Any]:
        job = _json(self.cluster, "rlj", "-n", self.s.namespace, self.name)
        return dict((job.get("status") or {}).get("progress") or {})

    def run(self, real_gpu_types: list[str]) -> PodsOutcome:
        ns = self.s.namespace
        job = pods_job(self.s.job, ns, real_gpu_types, total_steps=2000)
        self.name = job["metadata"]["name"]
        self.eta = job["spec"].get("staleness", {}).get("maxPolicyLag", "?")
        self.cluster.kubectl("create", "namespace", ns, check=False)
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": [checkpoint_claim(ns), job]}))
        self.t0 = time.monotonic()
        self.con.print(f"  applied {self.s.job} in namespace {ns} (only on {', '.join(real_gpu_types)}: the real nodes)")
        self._wait_ready()
        self._train()
        return self.out

    def _elapsed(self) -> float:
        return time.monotonic() - self.t0

    def _deadline_left(self) -> float:
        return self.s.timeout_seconds - self._elapsed()

    def _wait_ready(self) -> None:
        with self.con.status("waiting for the job's pods to be Ready on the real nodes …"):
            while self._deadline_left() > 0:
                self.alive()
                pods = self.pods()
                roles = {p["metadata"]["labels"].get("hexrl.dev/role") for p in pods if _ready(p)}
                if pods and all(_ready(p) for p in pods) and roles == {"coordinator", "trainer", "rollout"}:
                    break
                time.sleep(1)
        pods = self.pods()
        self.con.print(f"  {len(pods)} pods Ready after {self._elapsed():.0f} s, through their real readiness probes:")
        for p in sorted(pods, key=lambda p: p["metadata"]["name"]):
            self.con.print(f"    {p['metadata']['name']:<44} {p['spec'].get('nodeName', ''):<16} "
                           f"{p.get('status', {}).get('podIP', '')}")

    def _train(self) -> None:
        last_steps = 0
        reclaimed = False
        while self._deadline_left() > 0:
            self.alive()
            p = self.progress()
            steps, reward = int(p.get("trainedSteps", 0)), p.get("meanReward")
            if steps and not self.out.first_step_seconds:
                self.out.first_step_seconds = self._elapsed()
            if reward is not None:
                self.out.history.append((self._elapsed(), steps, float(reward)))
                if self.out.reward_start is None:
                    self.out.reward_start = float(reward)
            if steps and steps != last_steps:  # the operator refreshes status.progress every few seconds
                last_steps = steps
                self.con.print(f"  {self._elapsed():5.0f} s  step {steps:4d}  policy v{p.get('policyVersion', 0):<4d} "
                               f"reward {reward if reward is not None else float('nan'):.2f}  "
                               f"staleness {p.get('observedStaleness', 0):.1f} (η {self.eta})  "
                               f"{p.get('tokensPerSecond', 0):,.0f} tokens/s")
            if not reclaimed and steps >= self.s.reclaim_at_step:
                reclaimed = True
                self._reclaim()
            if reclaimed and reward is not None and reward >= self.s.target_reward:
                self.out.reward_end, self.out.steps = float(reward), steps
                break
            time.sleep(1)
        else:
            p = self.progress()
            self.out.reward_end, self.out.steps = p.get("meanReward"), int(p.get("trainedSteps", 0))
            self.con.print(f"  [yellow]stopped watching after {self.s.timeout_seconds:.0f} s "
                           f"(reward {self.out.reward_end}, step {self.out.steps})")
        self._rates()

    def _reclaim(self) -> None:
        """Taint the spot node with the most rollout pods, evict its pods through the Eviction API (SIGTERM,
        partial responses handed in), and wait for the replacements to be Ready elsewhere."""
        rollout = self.pods("rollout")
        spot = [p for p in rollout if "spot" in p["spec"].get("nodeName", "")]
        if not spot:
            self.con.print("  (no rollout pod on a spot node: nothing to reclaim)")
            return
        node = max({p["spec"]["nodeName"] for p in spot}, key=lambda n: sum(p["spec"]["nodeName"] == n for p in spot))
        trainer_before = {p["metadata"]["uid"] for p in self.pods("trainer")}
        partials_before = self._coordinator_counter("hexrl_partials_received_total")
        gone = {p["metadata"]["uid"] for p in self.pods() if p["spec"].get("nodeName") == node}
        self.con.print(f"  [bold yellow]reclaim[/]: the provider takes spot node {node} back — taint "
                       f"{RECLAIM_TAINT}, then drain its {len(gone)} pod(s) through the Eviction API")
        t0 = time.monotonic()
        self.cluster.kubectl("taint", "node", node, RECLAIM_TAINT, "--overwrite")
        for p in [p for p in self.pods() if p["spec"].get("nodeName") == node]:
            meta = p["metadata"]
            body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": meta["name"], "namespace": meta["namespace"]}}
            self.cluster.api("POST", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/eviction", body)
        wanted = len(rollout)
        while time.monotonic() - t0 < 180:
            self.alive()
            # as many Ready rollout pods as before, none of them an evicted one (those are still terminating)
            fresh = [p for p in self.pods("rollout") if p["metadata"]["uid"] not in gone and _ready(p)]
            if len(fresh) >= wanted:
                break
            time.sleep(1)
        self.out.reclaimed, self.out.replacement_seconds = node, time.monotonic() - t0
        self.out.partials = self._coordinator_counter("hexrl_partials_received_total") - partials_before
        self.out.trainer_untouched = {p["metadata"]["uid"] for p in self.pods("trainer")} == trainer_before
        where = ", ".join(sorted({p["spec"]["nodeName"] for p in self.pods("rollout")}))
        self.con.print(f"  replacement rollout pods Ready after {self.out.replacement_seconds:.0f} s (on {where}); "
                       f"{self.out.partials:.0f} partial responses handed in by the evicted workers; the trainer was "
                       + ("[green]untouched" if self.out.trainer_untouched else "[red]restarted"))

    def _coordinator_counter(self, name: str) -> float:
        pods = self.pods("coordinator")
        if not pods or not pods[0].get("status", {}).get("podIP"):
            return 0.0
        try:
            with urllib.request.urlopen(f"http://{pods[0]['status']['podIP']}:8000/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def _rates(self) -> None:
        hist = self.out.history
        if len(hist) >= 2 and hist[-1][0] > hist[0][0]:
            job = _json(self.cluster, "rlj", "-n", self.s.namespace, self.name)
            algo = (job.get("spec") or {}).get("algorithm") or {}
            per_step = int(algo.get("promptsPerStep", 0)) * int(algo.get("groupSize", 0))
            self.out.samples_per_second = (hist[-1][1] - hist[0][1]) * per_step / (hist[-1][0] - hist[0][0])
