"""Step 3: apply the RLJob and show the plan the operator wrote into its status, next to the best
homogeneous plan at the same budget.

The job's namespace and the PersistentVolumeClaims it names are created first (no pod could schedule
without them). The homogeneous baselines come from running the planner here on the inventory file, as the
operator's status carries only the plan it chose.
"""

from __future__ import annotations

from typing import Any

from hexrl.commands.demo.kube import wait_for
from hexrl.commands.demo.output import fmt_tps, plan_line, plan_table
from hexrl.commands.demo.settings import DemoSettings
from hexrl.commands.demo.state import DemoRun


def apply_job(run: DemoRun) -> None:
    """Step 3: apply the RLJob (with its namespace and volumes), wait for the operator's plan, show it next to
    the best homogeneous plan."""
    if run.ns != "default":
        run.cluster.kubectl("create", "namespace", run.ns, check=False)
    create_volumes(run.cluster, run.settings, run.ns, run.con)
    run.cluster.kubectl("apply", "-f", str(run.settings.job))

    def planned() -> dict[str, Any]:
        status = run.rljob().get("status") or {}
        return status.get("plan") or {}

    out = run.out
    out.plan_before = wait_for(run.con, "the operator's plan", planned, run.settings.wait_seconds, run.alive)
    run.con.print(plan_table(out.plan_before, f"Plan for {run.job} (from the RLJob's status)"))
    run.con.print("  " + plan_line(out.plan_before))
    baseline_lines(run.con, out.plan_before, local_plan(run.settings))


def create_volumes(cluster: Any, settings: DemoSettings, ns: str, con: Any) -> None:
    """Create the PersistentVolumeClaims the job names (model source, checkpoints), each bound to a hostPath
    PersistentVolume, as a platform team would have provisioned them; without them no pod can schedule."""
    import yaml

    spec = (yaml.safe_load(settings.job.read_text()) or {}).get("spec") or {}
    claims = [claim for claim in ((spec.get("model") or {}).get("source", {}).get("pvc"),
                                  (spec.get("checkpoint") or {}).get("pvc")) if claim]
    docs: list[dict[str, Any]] = []
    for claim in dict.fromkeys(claims):
        volume = f"{settings.cluster_name}-{ns}-{claim}"
        docs.append({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
                     "spec": {"capacity": {"storage": "100Gi"}, "accessModes": ["ReadWriteMany"],
                              "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "",
                              "hostPath": {"path": f"/tmp/{volume}"},
                              "claimRef": {"namespace": ns, "name": claim}}})
        docs.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": ns},
                     "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": volume,
                              "resources": {"requests": {"storage": "100Gi"}}}})
    if docs:
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
        con.print(f"  created the volumes the job names: PVC {', '.join(dict.fromkeys(claims))} (bound to hostPath PVs)")


def local_plan(settings: DemoSettings) -> Any:
    """The planner's answer for the same job on the same inventory — for its homogeneous baselines."""
    import yaml

    from hexrl.api.models import RLJob
    from hexrl.sched import parse_inventory
    from hexrl.sched.planner import plan

    job = RLJob.model_validate(yaml.safe_load(settings.job.read_text()))
    cluster = parse_inventory(yaml.safe_load(settings.inventory.read_text()))
    return plan(job.spec, cluster)


def baseline_lines(con: Any, plan: dict[str, Any], local: Any) -> None:
    """Print the best feasible homogeneous plan, how the operator's plan compares with it (throughput and cost
    per token), and the other homogeneous options."""
    from hexrl.sched.types import Plan

    baselines = [baseline for baseline in getattr(local, "baselines", ()) if baseline.feasible]
    if not baselines:
        con.print("  (no homogeneous plan is feasible at this budget)")
        return
    best = max(baselines, key=lambda baseline: baseline.tokens_per_second)
    tps, cost = plan.get("predictedTokensPerSecond", 0.0), plan.get("costPerHour", 0.0)
    con.print(f"  best homogeneous plan at the same budget: all-{best.gpu}, {fmt_tps(best.tokens_per_second)} tokens/s "
              f"for ${best.cost_per_hour:,.2f}/h")
    if best.tokens_per_second > 0 and tps > 0 and best.cost_per_hour > 0:
        # Cost per token of ours relative to the baseline's: ($/h ÷ tokens/s) over ($/h ÷ tokens/s).
        relative = (cost / tps) / (best.cost_per_hour / best.tokens_per_second)
        con.print(f"  → heterogeneous + spot: [bold green]{tps / best.tokens_per_second:.2f}× the throughput[/] of the "
                  f"best homogeneous plan, at {(relative - 1) * 100:+.0f}% cost per token")
    others = ", ".join(f"{baseline.gpu} {fmt_tps(baseline.tokens_per_second)}"
                       for baseline in baselines if baseline is not best)
    if others:
        con.print(f"  other homogeneous options (tokens/s): {others}")
    if isinstance(local, Plan) and abs(local.tokens_per_second - tps) > 0.01 * max(tps, 1):
        con.print("  (the operator planned from the live nodes; the comparison uses the inventory file)")
