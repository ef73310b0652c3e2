"""Benchmark of the operator at scale on the local control plane (prints, never asserts).

1,000 simulated GPU nodes (kwok) in 8 pools, 20 RLJobs applied at once, the operator running as
`hexrl operator` (a subprocess, as in production). Measured in one run for two planning modes on the
same cluster, one after the other, and printed side by side with the targets of issue 4 (ratio = last
mode / target; below 1 meets the bar):

- `fresh` (`bench/fresh_planner_operator.py`: the operator with an injected planner): one job plans at
  a time, every MILP solved afresh, homogeneous baselines inline;
- `serial` (the default): one job plans at a time, MILPs that differ only by less free capacity reuse
  an earlier optimum (exact), baselines computed after the children exist;
- `concurrent` (optional, `--modes fresh,serial,concurrent`): as serial, but jobs plan at once against
  a reservation ledger with an optimistic conflict check.

Between the phases the jobs are deleted (children garbage-collected) and the deleted nodes re-created.
Each phase starts once the operator's indexes hold every node (its cluster GPU gauges count them all), as
for an operator that has been running — kopf runs no job handler before that. Progress is observed
through one WATCH of the RLJobs and one of the jobs' pods, timed at each event's arrival (polling LISTs of
every pod five times a second loaded the API server the operator shares 2 cores with, and added up to a
poll period plus a LIST's latency to every measurement). Per phase:

- apply → all children created (every planned trainer/rollout pod exists), per job, p50 and p99, and the
  CPU seconds each control-plane component, the operator and this bench used meanwhile;
- after 20 % of the spot nodes are deleted at once (drawn stratified: 20 % of the spot nodes running the
  jobs' pods and 20 % of the others): time until every affected job again has all its planned rollout
  pods and none on a deleted node, p50 and p99;
- operator resident memory (VmRSS) after both phases;
- API requests per reconcile pass (the reconciler's own requests; kopf's watches excluded), overall and
  for passes with nothing to change (the steady state), side by side.

Then the floor on this machine (`direct`, skip with `--no-baseline`): the children the last mode created,
captured and POSTed again straight to the API server by a client with nothing to decide (16 requests in
flight, job by job, static objects before pods), timed the same way; the scheduler, kwok and the
controllers do the same work behind it. `mode / direct` says how much of the latency is the operator's.

Run: `.venv/bin/python bench/bench_operator.py [--nodes 1000] [--jobs 20] [--modes fresh,serial]`.
Takes ~5-8 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from builders import rljob  # noqa: E402
from hexrl.api.crd import CRD_NAME, crd_yaml  # noqa: E402
from hexrl.devcluster import DevCluster  # noqa: E402
from hexrl.devcluster.inventory import node_manifests, parse  # noqa: E402

# name, GPU, share of nodes, spot
POOLS = [
    ("h800-od", "H800", 0.15, False), ("h100-od", "H100", 0.10, False), ("a100-od", "A100-80G", 0.10, False),
    ("h200-od", "H200", 0.10, False), ("h20-spot", "H20", 0.20, True), ("l40s-spot", "L40S", 0.15, True),
    ("l4-spot", "L4", 0.10, True), ("h100-spot", "H100", 0.10, True),
]
TARGETS = {"apply_p50": 2.0, "apply_p99": 5.0, "replace_p50": 2.0, "rss_mb": 400.0}


def inventory(nodes: int) -> dict[str, Any]:
    counts = [max(1, round(nodes * share)) for _, _, share, _ in POOLS]
    counts[0] += nodes - sum(counts)
    return {
        "apiVersion": "hexrl.dev/v1alpha1", "kind": "ClusterInventory", "interPoolGBps": 1.5,
        "pools": [
            {"name": n, "gpu": g, "gpusPerNode": 8, "nodes": c, "spot": s, **({"preemptionsPerNodeHour": 0.05} if s else {})}
            for (n, g, _, s), c in zip(POOLS, counts, strict=True)
        ],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q / 100 * (len(v) - 1))))]


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("hexrl_"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def total(m: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in m.items() if k.startswith(prefix) and not k.startswith(prefix + "_created"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def component_cpu(cluster: DevCluster, operator_pid: int) -> dict[str, float]:
    """CPU seconds so far of each control-plane component, the operator and this benchmark."""
    comps = cluster.status()["components"]
    out = {name: cpu_seconds(c["pid"]) for name, c in comps.items() if c.get("pid")}
    out["operator"] = cpu_seconds(operator_pid)
    out["bench"] = cpu_seconds(os.getpid())
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _Watch(threading.Thread):
    """One collection kept current by LIST then WATCH (re-listing when the watch expires); every applied
    event stamps `Observer.changed_at` with its arrival time and wakes the waiter."""

    def __init__(self, obs: Observer, path: str, store: dict[str, dict]) -> None:
        super().__init__(daemon=True, name=f"watch {path}")
        self.obs, self.path, self.store = obs, path, store

    def _open(self, query: str, timeout: float) -> Any:
        sep = "&" if "?" in self.path else "?"
        url = f"https://127.0.0.1:{self.obs.port}{self.path}{sep}{query}"
        return urllib.request.urlopen(url, context=self.obs.ssl, timeout=timeout)

    def run(self) -> None:
        while not self.obs.stopped.is_set():
            try:
                with self._open("", 60) as r:
                    listing = json.loads(r.read())
                with self.obs.changed:
                    self.store.clear()
                    self.store.update({o["metadata"]["uid"]: o for o in listing["items"]})
                    self.obs.stamp()
                rv = listing["metadata"]["resourceVersion"]
                with self._open(f"watch=1&allowWatchBookmarks=false&resourceVersion={rv}&timeoutSeconds=290", 330) as r:
                    for line in r:
                        if self.obs.stopped.is_set():
                            return
                        ev = json.loads(line)
                        if ev["type"] == "ERROR":
                            break  # expired: list again
                        obj = ev["object"]
                        with self.obs.changed:
                            if ev["type"] == "DELETED":
                                self.store.pop(obj["metadata"]["uid"], None)
                            else:
                                self.store[obj["metadata"]["uid"]] = obj
                            self.obs.stamp()
            except Exception as exc:  # a broken stream (IncompleteRead, reset): list again
                print(f"watch {self.path}: {type(exc).__name__}: {exc}; re-listing", file=sys.stderr, flush=True)
                time.sleep(0.2)


class Observer:
    """Watches the operator's pods and the RLJobs (one stream each, so observing adds no polling load to
    the API server the operator shares 2 cores with) and derives per-job progress at each event's arrival."""

    def __init__(self, cluster: DevCluster) -> None:
        self.c = cluster
        self.port = cluster.status()["components"]["kube-apiserver"]["port"]
        self.ssl = cluster._ssl()
        self.changed = threading.Condition()
        self.changed_at = time.monotonic()
        self.stopped = threading.Event()
        self._jobs: dict[str, dict] = {}
        self._pods: dict[str, dict] = {}
        self._threads = [
            _Watch(self, "/apis/hexrl.dev/v1alpha1/rljobs", self._jobs),
            _Watch(self, "/api/v1/pods?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dhexrl-operator", self._pods),
        ]
        for t in self._threads:
            t.start()

    def stamp(self) -> None:
        """Record a change (call holding `changed`)."""
        self.changed_at = time.monotonic()
        self.changed.notify_all()

    def close(self) -> None:
        self.stopped.set()

    def wait(self, timeout: float = 1.0) -> float:
        """Block until something changed (or `timeout`); returns the arrival time of the latest change."""
        with self.changed:
            self.changed.wait(timeout)
            return self.changed_at

    def snapshot(self) -> tuple[dict[str, dict], dict[str, list[dict]]]:
        with self.changed:
            jobs = list(self._jobs.values())
            pods = list(self._pods.values())
        by_job: dict[str, list[dict]] = {}
        for p in pods:
            if p["metadata"].get("deletionTimestamp"):
                continue
            if p["metadata"]["labels"].get("hexrl.dev/role") == "coordinator":
                continue
            by_job.setdefault(f"{p['metadata']['namespace']}/{p['metadata']['labels']['hexrl.dev/job']}", []).append(p)
        return {f"{j['metadata']['namespace']}/{j['metadata']['name']}": j for j in jobs}, by_job


def expected_pods(job: dict) -> int | None:
    plan = (job.get("status") or {}).get("plan")
    if not plan or not plan.get("trainer"):
        return None
    return len(plan["trainer"]["nodes"]) + sum(g["replicas"] for g in plan["rollout"])


def off_plan(pods: dict[str, list[dict]]) -> tuple[int, int]:
    """(rollout pods the scheduler put on another node than the preferred one of their plan, scheduled ones)."""
    off = placed = 0
    for ps in pods.values():
        for p in ps:
            if p["metadata"]["labels"].get("hexrl.dev/role") != "rollout" or not p["spec"].get("nodeName"):
                continue
            placed += 1
            prefs = (p["spec"].get("affinity") or {}).get("nodeAffinity", {}).get(
                "preferredDuringSchedulingIgnoredDuringExecution") or []
            wanted = {v for t in prefs for e in t["preference"]["matchExpressions"] for v in e.get("values", [])}
            off += bool(wanted) and p["spec"]["nodeName"] not in wanted
    return off, placed


def trainer_uids(pods: dict[str, list[dict]]) -> dict[str, list[str]]:
    """Per job, the sorted uids of its trainer pods (a changed list means the trainer gang restarted)."""
    return {k: sorted(p["metadata"]["uid"] for p in ps if p["metadata"]["labels"].get("hexrl.dev/role") == "trainer")
            for k, ps in pods.items()}


@dataclass
class PhaseState:
    """What the steps of one phase share: the observer, the jobs applied, and what has been measured so far."""

    obs: Observer
    docs: list[dict] = field(default_factory=list)
    cpu0: dict[str, float] = field(default_factory=dict)
    """CPU seconds of each process just before the jobs were created."""
    start: float = 0.0
    """When the jobs started to be created (monotonic)."""
    applied: dict[str, float] = field(default_factory=dict)
    """Job → when its RLJob was created (monotonic)."""
    done: dict[str, float] = field(default_factory=dict)
    """Job → seconds from its creation until all its planned pods existed."""
    infeasible: set[str] = field(default_factory=set)
    m_apply: dict[str, float] = field(default_factory=dict)
    """The operator's metrics once every job was planned (or the wait gave up)."""
    m_idle0: dict[str, float] = field(default_factory=dict)
    """The operator's metrics just before the node noise."""
    m_idle1: dict[str, float] = field(default_factory=dict)
    """The operator's metrics just after the node noise, before any node is deleted."""
    m_end: dict[str, float] = field(default_factory=dict)
    """The operator's metrics once the replacement is over."""
    rss_apply: float = float("nan")
    rss_replace: float = float("nan")
    nodes: list[dict] = field(default_factory=list)
    """The nodes as listed before any was deleted."""
    victims: set[str] = field(default_factory=set)
    affected: set[str] = field(default_factory=set)
    """The jobs with a pod on a deleted node."""
    trainers_before: dict[str, list[str]] = field(default_factory=dict)
    replaced: dict[str, float] = field(default_factory=dict)
    """Affected job → seconds from the deletion until it had all its pods again, none on a deleted node."""
    restarted: int = 0

    def results(self) -> dict[str, Any]:
        """The phase's measurements, as `report` prints them."""
        passes = total(self.m_end, "hexrl_operator_reconciles_total")
        reqs = total(self.m_end, "hexrl_operator_api_requests_total")
        first_passes = total(self.m_apply, "hexrl_operator_reconciles_total")
        first_reqs = total(self.m_apply, "hexrl_operator_api_requests_total")
        repl_passes = passes - total(self.m_idle1, "hexrl_operator_reconciles_total")
        repl_reqs = reqs - total(self.m_idle1, "hexrl_operator_api_requests_total")
        idle_passes = (total(self.m_idle1, "hexrl_operator_reconciles_total")
                       - total(self.m_idle0, "hexrl_operator_reconciles_total"))
        apply_times, replaced = list(self.done.values()), list(self.replaced.values())
        return {
            "apply_p50": pct(apply_times, 50), "apply_p99": pct(apply_times, 99),
            "replace_p50": pct(replaced, 50), "replace_p99": pct(replaced, 99),
            "rss_apply": self.rss_apply, "rss_replace": self.rss_replace,
            "planned": len(self.done), "infeasible": len(self.infeasible), "jobs": len(self.docs),
            "affected": len(self.affected), "replaced": len(self.replaced), "victims": len(self.victims),
            "trainers_restarted": self.restarted,
            "req_per_pass": reqs / max(passes, 1), "req_first": first_reqs / max(first_passes, 1),
            "req_replace": repl_reqs / max(repl_passes, 1), "passes": passes, "idle_passes": idle_passes,
            "planner_calls": total(self.m_end, "hexrl_replans_total"),
            "conflicts": self.m_end.get('hexrl_operator_errors_total{reason="PlanConflict"}', 0.0),
        }


class Phase:
    """One planning mode on the running cluster: operator up, 20 jobs, noise, node loss, clean-up."""

    def __init__(self, cluster: DevCluster, inv: dict[str, Any], mode: str, jobs: int) -> None:
        self.cluster, self.inv, self.mode, self.jobs = cluster, inv, mode, jobs
        self.inv_nodes = sum(p["nodes"] for p in inv["pools"])
        self.op: subprocess.Popen[bytes] | None = None
        self.mport = free_port()
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"hexrl-bench-operator-{mode}.log"
        self.children: list[dict] = []

    def start(self) -> None:
        fresh = self.mode == "fresh"  # the operator with an injected fresh-solve planner, in serial planning
        env = {**os.environ, "HEXRL_OPERATOR_DEBOUNCE_SECONDS": "0.5", "HEXRL_OPERATOR_DEBOUNCE_MAX_SECONDS": "2",
               "HEXRL_OPERATOR_SCALING_ENABLED": "false", "HEXRL_OPERATOR_PLANNING": "serial" if fresh else self.mode,
               "HEXRL_OPERATOR_KEY_NAMESPACE": "default"}
        command = ([sys.executable, str(ROOT / "bench" / "fresh_planner_operator.py")] if fresh
                   else [str(Path(sys.executable).parent / "hexrl"), "operator"])
        log = open(self.log_path, "wb")  # noqa: SIM115
        self.op = subprocess.Popen(
            [*command, "--kubeconfig", str(self.cluster.kubeconfig),
             "--standalone", "--metrics-port", str(self.mport), "--health-port", str(free_port()),
             "--log-level", "INFO"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        for _ in range(120):
            try:
                metrics(self.mport)
                break
            except OSError:
                time.sleep(0.5)
        # kopf runs no job handler before its indexes hold every Node and Pod: wait until the cluster GPU
        # gauges (refreshed after the initial burst of node events) count every node, as a long-running
        # operator would have, so start-up is not timed as job latency
        want = 8 * self.inv_nodes
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            seen = sum(v for k, v in metrics(self.mport).items() if k.startswith("hexrl_cluster_gpus{"))
            if seen >= want:
                break
            time.sleep(0.5)
        time.sleep(1)

    def stop(self) -> None:
        if self.op is not None and self.op.poll() is None:
            os.killpg(self.op.pid, signal.SIGTERM)
            try:
                self.op.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.op.pid, signal.SIGKILL)
                self.op.wait(timeout=10)

    def run(self) -> dict[str, Any]:
        """Apply the jobs, send node noise, delete spot nodes, clean up; returns the phase's measurements."""
        assert self.op is not None
        st = PhaseState(Observer(self.cluster))
        # reseeded in every phase, so every mode gets the same job budgets and draws its victims the same way
        random.seed(0)
        st.docs = self._job_docs()
        self._create_jobs(st)
        self._wait_planned(st)
        self._after_apply(st)
        self._node_noise(st)
        self._pick_victims(st)
        self._delete_victims(st)
        self._after_replacement(st)
        st.obs.close()
        self.cleanup(st.victims)
        return st.results()

    def _job_docs(self) -> list[dict]:
        """Create the namespaces; the RLJobs to apply, spread over 4 namespaces, each with a random budget."""
        for ns in sorted({f"bench-{i % 4}" for i in range(self.jobs)}):
            self.cluster.kubectl("create", "namespace", ns, check=False)
        return [rljob(f"job-{i}", namespace=f"bench-{i % 4}", model__source={"uri": "s3://models/qwen2.5-1.5b"},
                      budget__maxCostPerHour=random.choice([40, 60, 80, 120]))
                for i in range(self.jobs)]

    def _create_jobs(self, st: PhaseState) -> None:
        """POST every RLJob (8 at once), noting when each was created and the CPU counters before."""
        cluster = self.cluster
        assert self.op is not None
        st.cpu0 = component_cpu(cluster, self.op.pid)
        st.start = time.monotonic()

        def create(job: dict) -> None:
            m = job["metadata"]
            cluster.api("POST", f"/apis/hexrl.dev/v1alpha1/namespaces/{m['namespace']}/rljobs", job)
            st.applied[f"{m['namespace']}/{m['name']}"] = time.monotonic()

        wall0 = time.time()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, st.docs))
        print(f"{self.mode}: {len(st.docs)} RLJobs created between {time.strftime('%H:%M:%S', time.localtime(wall0))}"
              f".{int(wall0 % 1 * 1000):03d} and +{time.time() - wall0:.2f} s (see the operator log)", flush=True)

    def _wait_planned(self, st: PhaseState) -> None:
        """Until every job has all its planned pods or is infeasible (at most 240 s): time each job's apply."""
        while len(st.done) + len(st.infeasible) < len(st.docs) and time.monotonic() - st.start < 240:
            now = st.obs.wait()
            jobs, pods = st.obs.snapshot()
            for key, job in jobs.items():
                if key in st.done or key in st.infeasible:
                    continue
                conds = {c["type"]: c for c in (job.get("status") or {}).get("conditions", [])}
                if conds.get("Planned", {}).get("status") == "False":
                    st.infeasible.add(key)
                    continue
                want = expected_pods(job)
                if want is not None and len(pods.get(key, [])) >= want:
                    st.done[key] = now - st.applied[key]

    def _after_apply(self, st: PhaseState) -> None:
        """Print the apply times and the CPU used meanwhile; keep the children, metrics, RSS; print off-plan pods."""
        assert self.op is not None
        apply_times = list(st.done.values())
        print(f"{self.mode}: apply → all children, per job (s): " + " ".join(f"{t:.1f}" for t in sorted(apply_times)),
              flush=True)
        self.children = capture_children(self.cluster)
        wall = max(apply_times, default=0.0)
        cpu1 = component_cpu(self.cluster, self.op.pid)
        cpu = {k: cpu1[k] - st.cpu0.get(k, 0.0) for k in cpu1}
        print(f"{self.mode}: CPU seconds while the {len(st.docs)} jobs were created ({wall:.1f} s wall, 2 cores = "
              f"{2 * wall:.1f} CPU-s): " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])),
              flush=True)
        st.m_apply = metrics(self.mport)
        st.rss_apply = rss_mb(self.op.pid)
        off, placed = off_plan(st.obs.snapshot()[1])
        print(f"{self.mode}: {placed} rollout pods scheduled, {off} of them not on the node their plan named", flush=True)

    def _node_noise(self, st: PhaseState) -> None:
        """Annotate 200 nodes (events the planner does not see), with the operator's counters before and after."""
        cluster = self.cluster
        time.sleep(3)
        st.m_idle0 = metrics(self.mport)
        st.nodes = cluster.api("GET", "/api/v1/nodes")["items"]
        touched = [n["metadata"]["name"] for n in st.nodes[:200]]
        with ThreadPoolExecutor(8) as pool:  # kubelet-style heartbeat noise: an annotation, not a label
            list(pool.map(lambda n: cluster.api("PATCH", f"/api/v1/nodes/{n}",
                                                {"metadata": {"annotations": {"bench/heartbeat": str(time.time())}}}),
                          touched))
        time.sleep(4)
        st.m_idle1 = metrics(self.mport)

    def _pick_victims(self, st: PhaseState) -> None:
        """Draw 20 % of the spot nodes to delete; note the jobs they hit and those jobs' trainer pods."""
        spot = [n["metadata"]["name"] for n in st.nodes if n["metadata"]["labels"].get("hexrl.dev/spot") == "true"]
        _, pods = st.obs.snapshot()
        # 20 % of the spot nodes, drawn stratified: 20 % of those running the jobs' pods and 20 % of the
        # others (as likely as a uniform draw, but a reclaim that misses every job would measure nothing)
        busy = sorted({p["spec"].get("nodeName") for ps in pods.values() for p in ps} & set(spot))
        rest = [n for n in spot if n not in set(busy)]
        st.victims = set(random.sample(busy, max(1, round(len(busy) / 5)) if busy else 0))
        st.victims |= set(random.sample(rest, max(0, len(spot) // 5 - len(st.victims))))
        st.trainers_before = trainer_uids(pods)
        st.affected = {k for k, ps in pods.items() if any(p["spec"].get("nodeName") in st.victims for p in ps)}
        on_victims = sum(p["spec"].get("nodeName") in st.victims for ps in pods.values() for p in ps)
        print(f"{self.mode}: deleting {len(st.victims)} spot nodes; {on_victims} of {sum(map(len, pods.values()))} "
              f"pods of {len(st.affected)} jobs run there", flush=True)

    def _delete_victims(self, st: PhaseState) -> None:
        """Delete the drawn nodes at once; time until each hit job has all its pods again, none on them (≤ 120 s)."""
        t_del = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda n: self.cluster.api("DELETE", f"/api/v1/nodes/{n}"), sorted(st.victims)))
        deleted_at = time.monotonic()
        while len(st.replaced) < len(st.affected) and time.monotonic() - t_del < 120:
            now = st.obs.wait()
            jobs, pods = st.obs.snapshot()
            for key in st.affected - set(st.replaced):
                want = expected_pods(jobs[key])
                ps = pods.get(key, [])
                if want is not None and len(ps) >= want and not any(p["spec"].get("nodeName") in st.victims for p in ps):
                    st.replaced[key] = max(0.0, now - deleted_at)

    def _after_replacement(self, st: PhaseState) -> None:
        """Count the hit jobs whose trainer pods changed; keep the final metrics and RSS."""
        assert self.op is not None
        time.sleep(2)
        _, pods = st.obs.snapshot()
        trainers_after = trainer_uids(pods)
        st.restarted = sum(1 for k in st.affected if trainers_after.get(k) != st.trainers_before.get(k))
        st.m_end = metrics(self.mport)
        st.rss_replace = rss_mb(self.op.pid)

    def cleanup(self, victims: set[str]) -> None:
        """Delete the jobs (the operator removes its finalizers; GC removes the children), re-create the
        deleted nodes, so the next phase starts from the same cluster."""
        c = self.cluster
        for i in range(4):
            c.kubectl("delete", "rljobs", "--all", "-n", f"bench-{i}", "--wait=false", check=False)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            jobs = c.api("GET", "/apis/hexrl.dev/v1alpha1/rljobs")["items"]
            pods = c.api("GET", "/api/v1/pods?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dhexrl-operator")["items"]
            if not jobs and not pods:
                break
            time.sleep(1)
        manifests = {n["metadata"]["name"]: n for n in node_manifests(parse(self.inv))}

        def recreate(name: str) -> None:
            c.api("POST", "/api/v1/nodes", manifests[name])
            c.api("PATCH", f"/api/v1/nodes/{name}/status", {"status": manifests[name]["status"]})

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(recreate, sorted(victims)))
        c.wait_nodes_ready(sorted(victims))


CHILD_KINDS = [("/api/v1", "secrets", "v1", "Secret"), ("/api/v1", "configmaps", "v1", "ConfigMap"),
               ("/api/v1", "services", "v1", "Service"), ("/apis/apps/v1", "deployments", "apps/v1", "Deployment"),
               ("/apis/policy/v1", "poddisruptionbudgets", "policy/v1", "PodDisruptionBudget"),
               ("/api/v1", "pods", "v1", "Pod")]
"""What the operator creates for a job, in the order it creates them (pods last)."""
MANAGED = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dhexrl-operator"


def capture_children(cluster: DevCluster) -> list[dict]:
    """The operator's children as creatable manifests (server fields, owners and placement results removed;
    the coordinator's pod is left to its Deployment)."""
    out = []
    for prefix, plural, api_version, kind in CHILD_KINDS:
        for obj in cluster.api("GET", f"{prefix}/{plural}?{MANAGED}")["items"]:
            m = obj["metadata"]
            if not (m.get("labels") or {}).get("hexrl.dev/job"):
                continue  # the operator's own key Secret
            if plural == "pods" and m.get("ownerReferences", [{}])[0].get("kind") == "ReplicaSet":
                continue
            body = {"apiVersion": api_version, "kind": kind,
                    "metadata": {k: m[k] for k in ("name", "namespace", "labels", "annotations") if k in m},
                    "spec": dict(obj.get("spec") or {})}
            if plural in ("secrets", "configmaps"):
                body.pop("spec")
                body.update({k: obj[k] for k in ("data", "type") if k in obj})
            if plural == "services":
                for k in ("clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy", "sessionAffinity"):
                    body["spec"].pop(k, None)
                if body["spec"].get("clusterIP") != "None":
                    body["spec"].pop("clusterIP", None)
            if plural == "pods":
                body["spec"].pop("nodeName", None)
            out.append((prefix, plural, body))
    return out  # type: ignore[return-value]


class DirectPhase:
    """The floor on this machine: the same children the operator made, POSTed straight to the API server
    by a client with nothing to decide (16 parallel requests, job by job, static objects before pods), so
    the scheduler, kwok and the controllers do the same work behind them; timed like the operator."""

    def __init__(self, cluster: DevCluster, children: list) -> None:
        self.cluster, self.children = cluster, children

    def run(self) -> dict[str, Any]:
        c = self.cluster
        by_job: dict[str, list] = {}
        for prefix, plural, body in self.children:
            m = body["metadata"]
            key = f"{m['namespace']}/{(m.get('labels') or {}).get('hexrl.dev/job', '?')}"
            by_job.setdefault(key, []).append((prefix, plural, body))
        want = {k: sum(1 for _, pl, b in objs if pl == "pods" and b["metadata"]["labels"].get("hexrl.dev/role")
                       != "coordinator") for k, objs in by_job.items()}
        ordered = [(k, o) for k in sorted(by_job, key=lambda k: int(k.rsplit("-", 1)[-1]) if k[-1].isdigit() else 0)
                   for o in sorted(by_job[k], key=lambda o: o[1] == "pods")]
        obs = Observer(c)
        cpu0 = component_cpu(c, os.getpid())
        start = time.monotonic()

        def post(item: tuple[str, tuple[str, str, dict]]) -> None:
            _, (prefix, plural, body) = item
            c.api("POST", f"{prefix}/namespaces/{body['metadata']['namespace']}/{plural}", body)

        with ThreadPoolExecutor(16) as pool:
            pending = pool.map(post, ordered)
            done: dict[str, float] = {}
            while len(done) < len(want) and time.monotonic() - start < 240:
                now = obs.wait()
                _, pods = obs.snapshot()
                for key, n in want.items():
                    if key not in done and len(pods.get(key, [])) >= n:
                        done[key] = now - start
            list(pending)
        cpu1 = component_cpu(c, os.getpid())
        cpu = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1 if k != "operator"}
        times = sorted(done.values())
        print(f"direct: {len(ordered)} objects of {len(want)} jobs; all pods of a job exist after (s): "
              + " ".join(f"{t:.1f}" for t in times), flush=True)
        print("direct: CPU seconds meanwhile: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                         sorted(cpu.items(), key=lambda kv: -kv[1])), flush=True)
        obs.close()
        self.cleanup()
        return {"apply_p50": pct(times, 50), "apply_p99": pct(times, 99), "jobs": len(want), "planned": len(done)}

    def cleanup(self) -> None:
        c = self.cluster
        for i in range(4):
            for prefix, plural, _, _ in CHILD_KINDS:
                base = f"{prefix}/namespaces/bench-{i}/{plural}"
                try:
                    c.api("DELETE", f"{base}?{MANAGED}&gracePeriodSeconds=0")
                except Exception:  # no delete-collection for this kind: one by one
                    for obj in c.api("GET", f"{base}?{MANAGED}")["items"]:
                        c.api("DELETE", f"{base}/{obj['metadata']['name']}")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and c.api("GET", f"/api/v1/pods?{MANAGED}")["items"]:
            time.sleep(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--modes", default="fresh,serial", help="planning modes to run, in order (the last is "
                    "compared with the targets): fresh, serial, concurrent")
    ap.add_argument("--keep", action="store_true", help="leave the cluster running afterwards")
    ap.add_argument("--no-baseline", dest="baseline", action="store_false",
                    help="skip the floor: the last mode's children POSTed directly, timed the same way")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    cluster = DevCluster(name="hexrl-bench")
    results: dict[str, dict[str, Any]] = {}
    phase: Phase | None = None
    try:
        t0 = time.monotonic()
        cluster.up()
        cluster.kubectl("apply", "-f", "-", input=crd_yaml())
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
        inv = inventory(args.nodes)
        names = cluster.apply_inventory(inv)
        print(f"cluster: {len(names)} GPU nodes in {len(POOLS)} pools ready in {time.monotonic() - t0:.0f}s")
        for mode in modes:
            phase = Phase(cluster, inv, mode, args.jobs)
            phase.start()
            try:
                results[mode] = phase.run()
            finally:
                phase.stop()
            print(f"{mode}: done ({json.dumps({k: round(v, 2) for k, v in results[mode].items()})})", flush=True)
        if args.baseline and phase is not None and phase.children:
            floor = DirectPhase(cluster, phase.children).run()
            print(f"direct (the floor: the same objects POSTed with nothing to decide): apply p50 {floor['apply_p50']:.2f} s, "
                  f"p99 {floor['apply_p99']:.2f} s; {modes[-1]} / direct: p50 ×{results[modes[-1]]['apply_p50'] / floor['apply_p50']:.2f}, "
                  f"p99 ×{results[modes[-1]]['apply_p99'] / floor['apply_p99']:.2f}", flush=True)
        report(results)
    finally:
        if phase is not None:
            phase.stop()
        if not args.keep:
            cluster.down(quiet=True)


def report(results: dict[str, dict[str, Any]]) -> None:
    modes = list(results)
    new = results[modes[-1]]
    print()
    print(f"{'measure':48s} " + " ".join(f"{m:>11s}" for m in modes) + f" {'target':>8s} {'ratio':>7s}")
    rows = [
        ("apply → all children created, p50 (s)", "apply_p50", TARGETS["apply_p50"]),
        ("apply → all children created, p99 (s)", "apply_p99", TARGETS["apply_p99"]),
        ("20% spot nodes deleted → replaced, p50 (s)", "replace_p50", TARGETS["replace_p50"]),
        ("   … p99 (s)", "replace_p99", float("nan")),
        ("operator RSS after apply (MB)", "rss_apply", TARGETS["rss_mb"]),
        ("operator RSS after replacement (MB)", "rss_replace", TARGETS["rss_mb"]),
        ("API requests per reconcile pass, all", "req_per_pass", float("nan")),
        ("   … first passes (create)", "req_first", float("nan")),
        ("   … replacement passes", "req_replace", float("nan")),
        ("passes during 200 annotation-only node events", "idle_passes", float("nan")),
        ("planner calls (plan + replan)", "planner_calls", float("nan")),
        ("optimistic plans that lost a race", "conflicts", float("nan")),
        ("trainer gangs restarted by the node deletion", "trainers_restarted", float("nan")),
    ]
    for label, key, target in rows:
        ratio = new[key] / target if target == target else float("nan")
        cells = " ".join(f"{results[m][key]:11.2f}" for m in modes)
        print(f"{label:48s} {cells} {target:8.2f} {ratio:7.2f}")
    if len(modes) > 1:
        old = results[modes[0]]
        print(f"\nspeed-up {modes[-1]} vs {modes[0]}: apply p50 ×{old['apply_p50'] / new['apply_p50']:.1f}, "
              f"p99 ×{old['apply_p99'] / new['apply_p99']:.1f}, replacement p50 ×{old['replace_p50'] / new['replace_p50']:.1f}")
    for m in modes:
        r = results[m]
        print(f"{m}: jobs planned {r['planned']}/{r['jobs']} (infeasible {r['infeasible']}); {r['victims']} spot nodes "
              f"deleted hit {r['affected']} jobs, {r['replaced']} replaced; operator log "
              f"{Path(os.environ.get('TMPDIR', '/tmp')) / f'hexrl-bench-operator-{m}.log'}")
    print(json.dumps({m: {k: round(v, 3) for k, v in r.items()} for m, r in results.items()}))


if __name__ == "__main__":
    main()
