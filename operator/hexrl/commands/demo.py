"""The GPU-less demo behind `make run`: a real control plane, the operator, an RLJob, a spot reclaim.

Six steps, each shown as it happens:

1. start the local control plane (etcd, kube-apiserver with RBAC, controller-manager, scheduler, kwok) with
   simulated GPU nodes from an inventory — on-demand H800s for training, spot H20s for decoding, L40S;
2. install the RLJob CRD and start `hexrl operator` against it;
3. apply the example RLJob and show the operator's plan — which GPUs train, which decode, predicted
   tokens/s and $/h — next to the best homogeneous plan at the same budget;
4. show the job's pods on their pools and the job's status and conditions;
5. reclaim spot nodes (taint as a cloud would, then delete) and show the re-plan, the Event saying why,
   and the replacement pods;
6. print a summary and stop everything — or, with `--keep`, leave it running and say how to reach it.

Nothing here is mocked: the pods are scheduled by kube-scheduler onto kwok's simulated nodes (which is
why no GPU is needed), and the plan is the one the operator writes into the RLJob's status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

ROOT_HINT = "run it from the repository root (where manifests/ is), or pass --inventory and --job"


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs and how long it waits."""

    inventory: Path = Path("manifests/clusters/hetero-3pool.yaml")
    """Cluster inventory (DESIGN.md §4): on-demand training GPUs, spot decode GPUs and a third type."""
    job: Path = Path("manifests/examples/rljob.yaml")
    """The RLJob to apply."""
    pods_job: Path = Path("manifests/examples/rljob-tiny.yaml")
    """The RLJob trained in real pods when the inventory has `real: true` pools (step 6)."""
    cluster_name: str = "hexrl-demo"
    """Name of the local cluster (its files live in ~/.cache/hexrl/clusters/<name>)."""
    reclaim: int = 2
    """Spot nodes to reclaim in step 5 (default 2 of the pool's nodes; at least one stays)."""
    keep: bool = False
    """Leave the cluster and the operator running at the end (default: stop everything)."""
    wait_seconds: float = 180.0
    """Upper bound for each wait (plan, pods, re-plan), seconds; the demo fails with the reason after it."""
    workdir: Path = field(default_factory=lambda: Path.home() / ".cache" / "hexrl" / "demo")
    """Where the operator's log and the demo's state (operator PID for `--keep`) are written."""


class DemoError(RuntimeError):
    """Something the user can fix; the message says what."""


# ---------------------------------------------------------------------------------------------- output


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


STEPS = 6
"""Steps of the demo (7 when the inventory has real nodes: the tiny job in real pods comes before the summary)."""


def _step(con: Any, n: int, title: str, total: int = STEPS) -> None:
    con.print()
    con.rule(f"[bold cyan]{n}/{total}  {title}", align="left")


def _fmt_tps(x: float) -> str:
    return f"{x:,.0f}"


# ------------------------------------------------------------------------------------------- kubectl


def _kjson(cluster: Any, *args: str) -> dict[str, Any]:
    proc = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else {}


def _wait(con: Any, what: str, check: Callable[[], Any], timeout: float, alive: Callable[[], None]) -> Any:
    deadline = time.monotonic() + timeout
    with con.status(f"waiting for {what} …"):
        while time.monotonic() < deadline:
            alive()
            result = check()
            if result:
                return result
            time.sleep(0.5)
    raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")


# ------------------------------------------------------------------------------------------ the plan


def _local_plan(settings: DemoSettings) -> Any:
    """The planner's answer for the same job on the same inventory — for its homogeneous baselines."""
    import yaml

    from hexrl.api.models import RLJob
    from hexrl.sched import parse_inventory
    from hexrl.sched.planner import plan

    job = RLJob.model_validate(yaml.safe_load(settings.job.read_text()))
    cluster = parse_inventory(yaml.safe_load(settings.inventory.read_text()))
    return plan(job.spec, cluster)


def _plan_table(plan: dict[str, Any], title: str) -> Any:
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_lines=False)
    for col in ("role", "GPU", "pool", "capacity", "replicas × GPUs", "layout", "tokens/s"):
        t.add_column(col, justify="right" if col in ("replicas × GPUs", "tokens/s") else "left")
    tr = plan.get("trainer") or {}
    if tr:
        layout = f"DP{tr.get('dataParallel', 1)}×TP{tr.get('tensorParallel', 1)}×PP{tr.get('pipelineParallel', 1)}"
        t.add_row("[magenta]trainer", tr["gpu"], tr["pool"], "on-demand", f"1 × {tr['gpus']}", layout,
                  _fmt_tps(tr.get("tokensPerSecond", 0)))
    for g in plan.get("rollout", []):
        t.add_row("[green]rollout", g["gpu"], g["pool"], "[yellow]spot" if g.get("spot") else "on-demand",
                  f"{g['replicas']} × {g['gpusPerReplica']}", f"TP{g['gpusPerReplica']}", _fmt_tps(g.get("tokensPerSecond", 0)))
    return t


def _plan_line(plan: dict[str, Any]) -> str:
    tps, cost = plan.get("predictedTokensPerSecond", 0.0), plan.get("costPerHour", 0.0)
    per_m = cost / (tps * 3600 / 1e6) if tps else 0.0
    return (f"predicted [bold]{_fmt_tps(tps)} tokens/s[/] for [bold]${cost:,.2f}/h[/] (${per_m:.3f} per 1M tokens) "
            f"on {plan.get('gpus', 0)} GPUs; bottleneck: {plan.get('bottleneck', '?')}; "
            f"solved in {plan.get('solveSeconds', 0) * 1000:.0f} ms")


def _baseline_lines(con: Any, plan: dict[str, Any], local: Any) -> None:
    from hexrl.sched.types import Plan

    baselines = [b for b in getattr(local, "baselines", ()) if b.feasible]
    if not baselines:
        con.print("  (no homogeneous plan is feasible at this budget)")
        return
    best = max(baselines, key=lambda b: b.tokens_per_second)
    tps, cost = plan.get("predictedTokensPerSecond", 0.0), plan.get("costPerHour", 0.0)
    con.print(f"  best homogeneous plan at the same budget: all-{best.gpu}, {_fmt_tps(best.tokens_per_second)} tokens/s "
              f"for ${best.cost_per_hour:,.2f}/h")
    if best.tokens_per_second > 0 and tps > 0 and best.cost_per_hour > 0:
        # Cost per token of ours relative to the baseline's: ($/h ÷ tokens/s) over ($/h ÷ tokens/s).
        relative = (cost / tps) / (best.cost_per_hour / best.tokens_per_second)
        con.print(f"  → heterogeneous + spot: [bold green]{tps / best.tokens_per_second:.2f}× the throughput[/] of the "
                  f"best homogeneous plan, at {(relative - 1) * 100:+.0f}% cost per token")
    others = ", ".join(f"{b.gpu} {_fmt_tps(b.tokens_per_second)}" for b in baselines if b is not best)
    if others:
        con.print(f"  other homogeneous options (tokens/s): {others}")
    if isinstance(local, Plan) and abs(local.tokens_per_second - tps) > 0.01 * max(tps, 1):
        con.print("  (the operator planned from the live nodes; the comparison uses the inventory file)")


# ------------------------------------------------------------------------------------------ the pods


def _pods(cluster: Any, job: str, ns: str) -> list[dict[str, Any]]:
    return _kjson(cluster, "pods", "-n", ns, "-l", f"hexrl.dev/job={job}").get("items", [])


def _pods_table(pods: list[dict[str, Any]], nodes: dict[str, dict[str, str]], title: str, new: set[str] | None = None) -> Any:
    from rich.table import Table

    rows: dict[tuple[str, str, str, str], list[int]] = {}
    for p in pods:
        labels = p["metadata"].get("labels", {})
        node = p["spec"].get("nodeName") or ""
        n = nodes.get(node, {})
        key = (labels.get("hexrl.dev/role", "?"), n.get("hexrl.dev/pool", "(unscheduled)"),
               n.get("nvidia.com/gpu.product", ""), "spot" if n.get("hexrl.dev/spot") == "true" else "on-demand")
        counts = rows.setdefault(key, [0, 0, 0])
        counts[0] += 1
        counts[1] += p.get("status", {}).get("phase") == "Running"
        counts[2] += p["metadata"]["name"] in (new or set())
    t = Table(title=title, title_justify="left")
    for col in ("role", "pool", "GPU", "capacity", "pods", "running", "new"):
        t.add_column(col, justify="right" if col in ("pods", "running", "new") else "left")
    for (role, pool, gpu, cap), (total, running, fresh) in sorted(rows.items()):
        t.add_row(role, pool, gpu, "[yellow]spot" if cap == "spot" else cap, str(total), str(running),
                  str(fresh) if new is not None else "")
    return t


def _explain_not_running(con: Any, pods: list[dict[str, Any]]) -> None:
    """Say which pods are not Running and what the scheduler or kubelet said about them."""
    stuck = [p for p in pods if p.get("status", {}).get("phase") != "Running"]
    con.print(f"  [yellow]{len(stuck)} of {len(pods)} pods are not Running yet:")
    for p in stuck[:8]:
        conds = [c for c in p.get("status", {}).get("conditions", []) if c.get("status") != "True"]
        why = "; ".join(f"{c.get('reason', c['type'])}: {c.get('message', '')}" for c in conds) or "no condition yet"
        con.print(f"    {p['metadata']['name']} ({p.get('status', {}).get('phase', '?')}): {why}")


def _node_labels(cluster: Any) -> dict[str, dict[str, str]]:
    return {n["metadata"]["name"]: n["metadata"].get("labels", {}) for n in _kjson(cluster, "nodes").get("items", [])}


def _nodes_table(cluster: Any) -> Any:
    from rich.table import Table

    pools: dict[str, dict[str, Any]] = {}
    for n in _kjson(cluster, "nodes").get("items", []):
        labels = n["metadata"].get("labels", {})
        pool = pools.setdefault(labels.get("hexrl.dev/pool", "?"), {
            "gpu": labels.get("nvidia.com/gpu.product", "?"), "nodes": 0, "gpus": 0,
            "spot": labels.get("hexrl.dev/spot") == "true", "price": labels.get("hexrl.dev/price-per-gpu-hour", "catalog")})
        pool["nodes"] += 1
        pool["gpus"] += int(n["status"].get("allocatable", {}).get("nvidia.com/gpu", 0))
        pool["real"] = labels.get("hexrl.dev/real") == "true"
    t = Table(title="GPU node pools (kwok nodes simulate GPU servers; real nodes run containers on this machine)",
              title_justify="left")
    for col in ("pool", "GPU", "nodes", "GPUs", "capacity", "$/GPU-h", "kind"):
        t.add_column(col)
    for name, p in sorted(pools.items()):
        t.add_row(name, p["gpu"], str(p["nodes"]), str(p["gpus"]), "[yellow]spot" if p["spot"] else "on-demand",
                  str(p["price"]), "[bold green]real" if p["real"] else "[dim]simulated")
    return t


def _status_lines(con: Any, job: dict[str, Any]) -> None:
    status = job.get("status") or {}
    con.print(f"  phase [bold]{status.get('phase', '?')}[/], GPUs {status.get('gpus', '?')}, "
              f"tokens/s {_fmt_tps(status.get('tokensPerSecond') or 0)}, $/h {status.get('costPerHour', 0):,.2f}")
    for c in status.get("conditions", []):
        colour = "green" if (c["status"] == "True") != (c["type"] == "Degraded") else "red"
        con.print(f"  [{colour}]{c['type']}={c['status']}[/] {c['reason']}: {c.get('message', '')}")


def _events(cluster: Any, job: str, ns: str) -> list[dict[str, Any]]:
    items = _kjson(cluster, "events", "-n", ns, "--field-selector", f"involvedObject.name={job}").get("items", [])
    return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


# --------------------------------------------------------------------------------------- the operator


def _start_operator(cluster: Any, settings: DemoSettings) -> tuple[subprocess.Popen[bytes], Path]:
    from hexrl.devcluster.procs import free_port

    settings.workdir.mkdir(parents=True, exist_ok=True)
    log = settings.workdir / "operator.log"
    cmd = [str(Path(sys.executable).parent / "hexrl"), "operator", "--kubeconfig", str(cluster.kubeconfig),
           "--all-namespaces", "--standalone", f"--metrics-port={free_port()}", f"--health-port={free_port()}"]
    if not Path(cmd[0]).exists():
        cmd[0:1] = [sys.executable, "-m", "hexrl.cli"]
    # Own session: a Ctrl-C of the demo is handled by the demo, which then stops the operator itself.
    # The operator keeps its key Secret in its own namespace; the demo cluster has no hexrl-system.
    env = {**os.environ, "HEXRL_OPERATOR_KEY_NAMESPACE": os.environ.get("HEXRL_OPERATOR_KEY_NAMESPACE", "default")}
    workers = cluster.images().get("workers") if cluster.real_node_names() else None
    if workers:  # real nodes run the locally built image, loaded into their runtimes: never pulled
        env |= {"HEXRL_OPERATOR_WORKER_IMAGE": workers, "HEXRL_OPERATOR_WORKER_IMAGE_PULL_POLICY": "Never"}
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True, env=env)
    (settings.workdir / "operator.pid").write_text(str(proc.pid))
    return proc, log


def _stop_operator(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# ----------------------------------------------------------------------------------------------- run


@dataclass
class Outcome:
    """Numbers for the summary."""

    plan_before: dict[str, Any] = field(default_factory=dict)
    plan_after: dict[str, Any] = field(default_factory=dict)
    reclaimed: list[str] = field(default_factory=list)
    replan_seconds: float = 0.0
    replaced_seconds: float = 0.0
    pods_replaced: int = 0


def _volumes(cluster: Any, settings: DemoSettings, ns: str, con: Any) -> None:
    """Create the PersistentVolumeClaims the job names (model source, checkpoints), each bound to a hostPath
    PersistentVolume, as a platform team would have provisioned them; without them no pod can schedule."""
    import yaml

    spec = (yaml.safe_load(settings.job.read_text()) or {}).get("spec") or {}
    claims = [c for c in ((spec.get("model") or {}).get("source", {}).get("pvc"), (spec.get("checkpoint") or {}).get("pvc")) if c]
    docs: list[dict[str, Any]] = []
    for claim in dict.fromkeys(claims):
        pv = f"{settings.cluster_name}-{ns}-{claim}"
        docs.append({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
                     "spec": {"capacity": {"storage": "100Gi"}, "accessModes": ["ReadWriteMany"],
                              "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "",
                              "hostPath": {"path": f"/tmp/{pv}"},
                              "claimRef": {"namespace": ns, "name": claim}}})
        docs.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": ns},
                     "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": pv,
                              "resources": {"requests": {"storage": "100Gi"}}}})
    if docs:
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
        con.print(f"  created the volumes the job names: PVC {', '.join(dict.fromkeys(claims))} (bound to hostPath PVs)")


def _check_inputs(settings: DemoSettings) -> tuple[str, str]:
    """The job's name and namespace, after both files passed the CLI's bounded, validating loaders (the demo
    reads them again later, knowing they are sound)."""
    from hexrl.commands._inputs import InputError, load_inventory, load_job

    for path, what in ((settings.inventory, "inventory"), (settings.job, "RLJob")):
        if not path.is_file():
            raise DemoError(f"the {what} file {path} does not exist; {ROOT_HINT}")
    try:
        load_inventory(settings.inventory)
        job = load_job(settings.job)
    except InputError as exc:
        raise DemoError(str(exc)) from None
    return str(job.metadata.name or ""), str(job.metadata.namespace or "default")


@dataclass
class DemoRun:
    """What the stages of one demo run share: where to print, the cluster, the job, the operator process."""

    con: Any
    """The rich console every stage prints to."""
    cluster: Any
    """The running `DevCluster`."""
    settings: DemoSettings
    job: str
    """The RLJob's name (from its manifest)."""
    ns: str
    """The RLJob's namespace (from its manifest; default when it names none)."""
    out: Outcome = field(default_factory=Outcome)
    operator: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    """The operator's log file (its tail is shown when it exits early)."""
    pods: Any = None
    """The real-pod part's `PodsOutcome` (None without real nodes)."""

    def alive(self) -> None:
        """Raise DemoError with the end of its log if the operator has exited (checked while waiting)."""
        if self.operator is not None and self.operator.poll() is not None:
            assert self.log is not None
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
            raise DemoError(f"the operator exited with status {self.operator.returncode}; its log {self.log} "
                            f"ends with:\n{tail}")

    def rljob(self) -> dict[str, Any]:
        """The RLJob as the API server has it now."""
        return _kjson(self.cluster, "rlj", "-n", self.ns, self.job)


def run_demo(settings: DemoSettings) -> Outcome:
    """Run the six steps; raises DemoError with a sentence when something cannot go on."""
    from hexrl.devcluster import DevCluster

    con = _console()
    job_name, ns = _check_inputs(settings)
    con.print("[bold]hexrl demo[/] — an RL post-training job planned onto heterogeneous and spot GPU pools, on a real "
              "local Kubernetes control plane with simulated GPU nodes (no GPU, no Docker needed).")

    from hexrl.devcluster import inventory as inv

    total = STEPS + 1 if inv.real_nodes(inv.parse(settings.inventory)) else STEPS
    _step(con, 1, "Local control plane", total)
    cluster = DevCluster(name=settings.cluster_name, progress=lambda line: con.print(f"  [dim]{line}"))
    cluster.up(inventory=settings.inventory)
    run = DemoRun(con, cluster, settings, job_name, ns)
    try:
        con.print(_nodes_table(cluster))
        _step(con, 2, "RLJob CRD and the operator", total)
        _install_operator(run)
        _step(con, 3, f"kubectl apply -f {settings.job}", total)
        _apply_job(run)
        _step(con, 4, "Pods on their pools, and the job's status", total)
        pods, nodes = _show_running(run)
        _step(con, 5, "Spot reclaim", total)
        _reclaim(run, nodes, pods)
        if total > STEPS:
            _step(con, 6, "The tiny job training in real pods, and a real node reclaimed", total)
            run.pods = _real_pods(run)
        _step(con, total, "Summary", total)
        _summary(con, run.out, settings)
        if run.pods is not None:
            _pods_summary(con, run.pods)
    except BaseException:
        if run.operator is not None:
            _stop_operator(run.operator)
        if not settings.keep:
            cluster.down(quiet=True)
        raise
    _finish(run)
    return run.out


def _real_pods(run: DemoRun) -> Any:
    """Step 6 (real nodes only): the tiny job trains in containers, the reward rises live, a real spot node
    is reclaimed mid-training and the job carries on (`hexrl.commands.demo_pods`)."""
    from hexrl.commands.demo_pods import PodsDemo, PodsDemoSettings

    gpu_types = sorted({labels.get("nvidia.com/gpu.product", "") for labels in _node_labels(run.cluster).values()
                        if labels.get("hexrl.dev/real") == "true"})
    return PodsDemo(run.con, run.cluster, PodsDemoSettings(job=run.settings.pods_job), run.alive).run(gpu_types)


def _pods_summary(con: Any, out: Any) -> None:
    start = f"{out.reward_start:.2f}" if out.reward_start is not None else "?"
    end = f"{out.reward_end:.2f}" if out.reward_end is not None else "?"
    con.print(f"  real pods: first trained step {out.first_step_seconds:.0f} s after apply; mean reward {start} → "
              f"{end} in {out.steps} steps ({out.samples_per_second:.0f} trained samples/s)")
    if out.reclaimed:
        con.print(f"  real node {out.reclaimed} reclaimed: replacement rollout Ready in {out.replacement_seconds:.0f} s, "
                  f"{out.partials:.0f} partial responses handed in, trainer "
                  + ("untouched" if out.trainer_untouched else "restarted"))


def _install_operator(run: DemoRun) -> None:
    """Step 2: install the CRD, wait until it is Established, start `hexrl operator`."""
    from hexrl.api.crd import crd_yaml

    run.cluster.kubectl("apply", "-f", "-", input=crd_yaml())
    run.cluster.wait_established("rljobs.hexrl.dev")
    run.con.print("  CRD rljobs.hexrl.dev installed (kubectl get rlj works now)")
    run.operator, run.log = _start_operator(run.cluster, run.settings)
    run.con.print(f"  hexrl operator running (pid {run.operator.pid}, log {run.log})")


def _apply_job(run: DemoRun) -> None:
    """Step 3: apply the RLJob (with its namespace and volumes), wait for the operator's plan, show it next to
    the best homogeneous plan."""
    if run.ns != "default":
        run.cluster.kubectl("create", "namespace", run.ns, check=False)
    _volumes(run.cluster, run.settings, run.ns, run.con)
    run.cluster.kubectl("apply", "-f", str(run.settings.job))

    def planned() -> dict[str, Any]:
        status = run.rljob().get("status") or {}
        return status.get("plan") or {}

    out = run.out
    out.plan_before = _wait(run.con, "the operator's plan", planned, run.settings.wait_seconds, run.alive)
    run.con.print(_plan_table(out.plan_before, f"Plan for {run.job} (from the RLJob's status)"))
    run.con.print("  " + _plan_line(out.plan_before))
    _baseline_lines(run.con, out.plan_before, _local_plan(run.settings))


def _show_running(run: DemoRun) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """Step 4: wait for the job's pods and phase Running (explaining what is not), show pods and status;
    returns (the pods, node → labels)."""
    con = run.con

    def pods_running() -> list[dict[str, Any]]:
        pods = _pods(run.cluster, run.job, run.ns)
        return pods if pods and all(p.get("status", {}).get("phase") == "Running" for p in pods) else []

    try:
        pods = _wait(con, "the job's pods to be Running", pods_running, run.settings.wait_seconds, run.alive)
    except DemoError:
        pods = _pods(run.cluster, run.job, run.ns)
        _explain_not_running(con, pods)
    nodes = _node_labels(run.cluster)
    con.print(_pods_table(pods, nodes, f"{len(pods)} pods of {run.job} (scheduled by kube-scheduler, run by kwok)"))

    def job_running() -> dict[str, Any] | None:
        j = run.rljob()
        return j if (j.get("status") or {}).get("phase") == "Running" else None

    try:
        job = _wait(con, "phase Running", job_running, 30, run.alive)
    except DemoError:
        job = run.rljob()
    _status_lines(con, job)
    return pods, nodes


def _finish(run: DemoRun) -> None:
    """After a successful run: say how to reach what --keep left running, or stop everything."""
    if run.settings.keep:
        _keep_hint(run.con, run.cluster, run.settings, run.job, run.ns, run.operator)
        return
    if run.operator is not None:
        _stop_operator(run.operator)
    run.cluster.down(quiet=True)
    run.con.print("\n  stopped the operator and the control plane; nothing is left running "
                  "(`hexrl demo --keep` leaves it up to explore).")


def _reclaim(run: DemoRun, nodes: dict[str, dict[str, str]], pods: list[dict[str, Any]]) -> None:
    """Step 5: taint then delete spot nodes that hold rollout pods, as a cloud's reclaim would; show the
    operator re-plan and the replacement pods."""
    victims = _reclaim_victims(run, nodes, pods)
    if not victims:
        return
    lost = [p["metadata"]["name"] for p in pods if p["spec"].get("nodeName") in victims]
    run.con.print(f"  the provider reclaims {len(victims)} spot node(s): {', '.join(victims)} "
                  f"({len(lost)} of the job's pods run there)")
    t0 = time.monotonic()
    for node in victims:
        run.cluster.kubectl("taint", "node", node, "hexrl.dev/reclaim=true:NoExecute", "--overwrite")
        run.cluster.kubectl("delete", "node", node, "--wait=false")
    run.out.reclaimed = victims
    _show_replan(run, victims, t0)
    _show_replacements(run, victims, pods, t0)


def _reclaim_victims(run: DemoRun, nodes: dict[str, dict[str, str]], pods: list[dict[str, Any]]) -> list[str]:
    """The spot nodes to reclaim: those holding rollout pods, at most `--reclaim`, leaving one when there are
    several (a partial reclaim is the usual case); [] after saying why there are none."""
    used = {p["spec"].get("nodeName") for p in pods if p["metadata"].get("labels", {}).get("hexrl.dev/role") == "rollout"}
    spot = sorted(n for n, labels in nodes.items() if labels.get("hexrl.dev/spot") == "true" and n in used)
    if run.settings.reclaim == 0:
        run.con.print("  skipped (--reclaim 0)")
        return []
    if not spot:
        run.con.print("  the plan put no rollout on spot nodes, so there is nothing to reclaim")
        return []
    return spot[: min(run.settings.reclaim, max(1, len(spot) - 1))]


def _show_replan(run: DemoRun, victims: list[str], t0: float) -> None:
    """Wait for a plan without the reclaimed nodes; show it and the Events saying why."""
    out = run.out

    def replanned() -> dict[str, Any]:
        plan = (run.rljob().get("status") or {}).get("plan") or {}
        nodes_in_plan = {n for g in plan.get("rollout", []) for n in g.get("nodes", [])}
        return plan if plan and not nodes_in_plan & set(victims) else {}

    out.plan_after = _wait(run.con, "the re-plan", replanned, run.settings.wait_seconds, run.alive)
    out.replan_seconds = time.monotonic() - t0
    for e in _events(run.cluster, run.job, run.ns)[-4:]:
        run.con.print(f"  event [bold]{e.get('reason')}[/]: {e.get('message')}")
    run.con.print(_plan_table(out.plan_after, f"Re-plan after losing {len(victims)} node(s) ({out.replan_seconds:.1f} s)"))
    run.con.print("  " + _plan_line(out.plan_after))


def _show_replacements(run: DemoRun, victims: list[str], pods: list[dict[str, Any]], t0: float) -> None:
    """Wait for every pod off the reclaimed nodes to be Running; show the new ones and whether the trainer
    was left alone."""
    out, con = run.out, run.con
    before = {p["metadata"]["name"] for p in pods}

    def replaced() -> list[dict[str, Any]]:
        pods = _pods(run.cluster, run.job, run.ns)
        gone = any(p["spec"].get("nodeName") in victims for p in pods)
        ok = pods and not gone and all(p.get("status", {}).get("phase") == "Running" for p in pods)
        return pods if ok else []

    try:
        now = _wait(con, "replacement pods to be Running", replaced, run.settings.wait_seconds, run.alive)
    except DemoError:
        now = [p for p in _pods(run.cluster, run.job, run.ns) if p["spec"].get("nodeName") not in victims]
        _explain_not_running(con, now)
    out.replaced_seconds = time.monotonic() - t0
    fresh = {p["metadata"]["name"] for p in now} - before
    out.pods_replaced = len(fresh)
    con.print(_pods_table(now, _node_labels(run.cluster), f"Pods after the reclaim ({out.replaced_seconds:.1f} s; "
                                                           f"{len(fresh)} new)", new=fresh))
    trainer_before = {p["metadata"]["name"] for p in pods if p["metadata"]["labels"].get("hexrl.dev/role") == "trainer"}
    trainer_now = {p["metadata"]["name"] for p in now if p["metadata"]["labels"].get("hexrl.dev/role") == "trainer"}
    con.print("  the trainer was " + ("[green]left untouched" if trainer_before == trainer_now else "[red]restarted"))


def _summary(con: Any, out: Outcome, settings: DemoSettings) -> None:
    b, a = out.plan_before, out.plan_after or out.plan_before
    con.print(f"  before the reclaim: {_fmt_tps(b.get('predictedTokensPerSecond', 0))} tokens/s for ${b.get('costPerHour', 0):,.2f}/h "
              f"on {b.get('gpus', 0)} GPUs")
    if out.reclaimed:
        con.print(f"  after losing {len(out.reclaimed)} spot node(s): {_fmt_tps(a.get('predictedTokensPerSecond', 0))} tokens/s "
                  f"for ${a.get('costPerHour', 0):,.2f}/h on {a.get('gpus', 0)} GPUs")
        con.print(f"  re-planned in {out.replan_seconds:.1f} s; {out.pods_replaced} replacement pod(s) Running after "
                  f"{out.replaced_seconds:.1f} s")
    con.print("  next: `make train-local` trains a tiny model with the same asynchronous RL runtime on this machine; "
              "the Helm chart is in charts/hexrl/ (README there)")


def _keep_hint(con: Any, cluster: Any, settings: DemoSettings, job: str, ns: str,
               operator: subprocess.Popen[bytes] | None) -> None:
    name = settings.cluster_name
    con.print(f"\n  [bold]Still running[/] (--keep): cluster {name!r} and the operator (pid {operator.pid if operator else '?'}).")
    con.print(f"    export KUBECONFIG={cluster.kubeconfig}")
    con.print(f"    hexrl cluster kubectl --name {name} -- get rlj -n {ns} -o wide")
    con.print(f"    hexrl cluster kubectl --name {name} -- describe rlj {job} -n {ns}")
    con.print(f"    hexrl cluster kubectl --name {name} -- get pods -n {ns} -L hexrl.dev/role,hexrl.dev/pool -o wide")
    con.print(f"  stop it all: kill {operator.pid if operator else '<pid>'} && hexrl cluster down --name {name}")


def demo_command(
    keep: bool = typer.Option(False, "--keep", help="Leave the cluster and the operator running and print how to reach them."),
    inventory: Path = typer.Option(DemoSettings.inventory, "--inventory", "-i", help="Cluster inventory (GPU node pools)."),
    job: Path = typer.Option(DemoSettings.job, "--job", "-j", help="RLJob manifest to apply."),
    name: str = typer.Option(DemoSettings.cluster_name, "--name", "-n", help="Local cluster name."),
    reclaim: int = typer.Option(DemoSettings.reclaim, "--reclaim", min=0, help="Spot nodes to reclaim in step 5 (0 = skip)."),
) -> None:
    from hexrl.devcluster import DevClusterError

    settings = DemoSettings(inventory=inventory, job=job, cluster_name=name, reclaim=reclaim, keep=keep)
    try:
        run_demo(settings)
    except (DemoError, DevClusterError) as exc:
        typer.echo(f"hexrl demo: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("hexrl demo: interrupted; stopped the operator and the control plane", err=True)
        raise typer.Exit(130) from None

