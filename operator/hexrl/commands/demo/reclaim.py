"""Step 5: reclaim spot nodes that hold rollout pods, as a cloud provider would (the reclaim taint, then the
node deleted), and show what the operator does about it: the re-plan, the Events saying why, and the
replacement pods — with whether the trainer was left alone.

The times to the re-plan and to all replacements Running are measured from the reclaim, for the summary.
"""

from __future__ import annotations

import time
from typing import Any

from hexrl.commands.demo.kube import job_events, job_pods, node_labels, wait_for
from hexrl.commands.demo.output import explain_not_running, plan_line, plan_table, pods_table
from hexrl.commands.demo.settings import DemoError
from hexrl.commands.demo.state import DemoRun


def reclaim(run: DemoRun, nodes: dict[str, dict[str, str]], pods: list[dict[str, Any]]) -> None:
    """Step 5: taint then delete spot nodes that hold rollout pods, as a cloud's reclaim would; show the
    operator re-plan and the replacement pods."""
    victims = reclaim_victims(run, nodes, pods)
    if not victims:
        return
    lost = [pod["metadata"]["name"] for pod in pods if pod["spec"].get("nodeName") in victims]
    run.con.print(f"  the provider reclaims {len(victims)} spot node(s): {', '.join(victims)} "
                  f"({len(lost)} of the job's pods run there)")
    reclaimed_at = time.monotonic()
    for node in victims:
        run.cluster.kubectl("taint", "node", node, "hexrl.dev/reclaim=true:NoExecute", "--overwrite")
        run.cluster.kubectl("delete", "node", node, "--wait=false")
    run.out.reclaimed = victims
    show_replan(run, victims, reclaimed_at)
    show_replacements(run, victims, pods, reclaimed_at)


def reclaim_victims(run: DemoRun, nodes: dict[str, dict[str, str]], pods: list[dict[str, Any]]) -> list[str]:
    """The spot nodes to reclaim: those holding rollout pods, at most `--reclaim`, leaving one when there are
    several (a partial reclaim is the usual case); [] after saying why there are none."""
    used = {pod["spec"].get("nodeName") for pod in pods
            if pod["metadata"].get("labels", {}).get("hexrl.dev/role") == "rollout"}
    spot = sorted(name for name, labels in nodes.items() if labels.get("hexrl.dev/spot") == "true" and name in used)
    if run.settings.reclaim == 0:
        run.con.print("  skipped (--reclaim 0)")
        return []
    if not spot:
        run.con.print("  the plan put no rollout on spot nodes, so there is nothing to reclaim")
        return []
    return spot[: min(run.settings.reclaim, max(1, len(spot) - 1))]


def show_replan(run: DemoRun, victims: list[str], reclaimed_at: float) -> None:
    """Wait for a plan without the reclaimed nodes; show it and the Events saying why."""
    out = run.out

    def replanned() -> dict[str, Any]:
        plan = (run.rljob().get("status") or {}).get("plan") or {}
        nodes_in_plan = {node for group in plan.get("rollout", []) for node in group.get("nodes", [])}
        return plan if plan and not nodes_in_plan & set(victims) else {}

    out.plan_after = wait_for(run.con, "the re-plan", replanned, run.settings.wait_seconds, run.alive)
    out.replan_seconds = time.monotonic() - reclaimed_at
    for event in job_events(run.cluster, run.job, run.ns)[-4:]:
        run.con.print(f"  event [bold]{event.get('reason')}[/]: {event.get('message')}")
    run.con.print(plan_table(out.plan_after, f"Re-plan after losing {len(victims)} node(s) ({out.replan_seconds:.1f} s)"))
    run.con.print("  " + plan_line(out.plan_after))


def show_replacements(run: DemoRun, victims: list[str], pods: list[dict[str, Any]], reclaimed_at: float) -> None:
    """Wait for every pod off the reclaimed nodes to be Running; show the new ones and whether the trainer
    was left alone."""
    out, con = run.out, run.con
    names_before = {pod["metadata"]["name"] for pod in pods}

    def replaced() -> list[dict[str, Any]]:
        pods_now = job_pods(run.cluster, run.job, run.ns)
        on_victims = any(pod["spec"].get("nodeName") in victims for pod in pods_now)
        ok = pods_now and not on_victims and all(pod.get("status", {}).get("phase") == "Running" for pod in pods_now)
        return pods_now if ok else []

    try:
        pods_now = wait_for(con, "replacement pods to be Running", replaced, run.settings.wait_seconds, run.alive)
    except DemoError:
        pods_now = [pod for pod in job_pods(run.cluster, run.job, run.ns) if pod["spec"].get("nodeName") not in victims]
        explain_not_running(con, pods_now)
    out.replaced_seconds = time.monotonic() - reclaimed_at
    fresh = {pod["metadata"]["name"] for pod in pods_now} - names_before
    out.pods_replaced = len(fresh)
    con.print(pods_table(pods_now, node_labels(run.cluster), f"Pods after the reclaim ({out.replaced_seconds:.1f} s; "
                                                             f"{len(fresh)} new)", new=fresh))
    con.print("  the trainer was " + ("[green]left untouched" if trainer_pods(pods) == trainer_pods(pods_now)
                                      else "[red]restarted"))


def trainer_pods(pods: list[dict[str, Any]]) -> set[str]:
    """The names of the trainer's pods among `pods`."""
    return {pod["metadata"]["name"] for pod in pods if pod["metadata"]["labels"].get("hexrl.dev/role") == "trainer"}
