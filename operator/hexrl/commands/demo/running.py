"""Step 4: wait for the job's pods to run on their pools and the job to reach phase Running; show the pods
per pool and the job's status and conditions.

A timeout here does not end the demo: the pods that are not Running are listed with what the scheduler or
kubelet said, and the demo goes on to the reclaim with what is there.
"""

from __future__ import annotations

from typing import Any

from hexrl.commands.demo.kube import job_pods, node_labels, wait_for
from hexrl.commands.demo.output import explain_not_running, fmt_tps, pods_table
from hexrl.commands.demo.settings import DemoError
from hexrl.commands.demo.state import DemoRun


def show_running(run: DemoRun) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """Step 4: wait for the job's pods and phase Running (explaining what is not), show pods and status;
    returns (the pods, node → labels)."""
    con = run.con

    def pods_running() -> list[dict[str, Any]]:
        pods = job_pods(run.cluster, run.job, run.ns)
        return pods if pods and all(pod.get("status", {}).get("phase") == "Running" for pod in pods) else []

    try:
        pods = wait_for(con, "the job's pods to be Running", pods_running, run.settings.wait_seconds, run.alive)
    except DemoError:
        pods = job_pods(run.cluster, run.job, run.ns)
        explain_not_running(con, pods)
    nodes = node_labels(run.cluster)
    con.print(pods_table(pods, nodes, f"{len(pods)} pods of {run.job} (scheduled by kube-scheduler, run by kwok)"))

    def job_running() -> dict[str, Any] | None:
        job = run.rljob()
        return job if (job.get("status") or {}).get("phase") == "Running" else None

    try:
        job = wait_for(con, "phase Running", job_running, 30, run.alive)
    except DemoError:
        job = run.rljob()
    status_lines(con, job)
    return pods, nodes


def status_lines(con: Any, job: dict[str, Any]) -> None:
    """Print the RLJob's phase, GPUs, tokens/s and $/h, then each condition (green when healthy)."""
    status = job.get("status") or {}
    con.print(f"  phase [bold]{status.get('phase', '?')}[/], GPUs {status.get('gpus', '?')}, "
              f"tokens/s {fmt_tps(status.get('tokensPerSecond') or 0)}, $/h {status.get('costPerHour', 0):,.2f}")
    for cond in status.get("conditions", []):
        # Healthy: a condition that is True, except Degraded, which is healthy when False.
        colour = "green" if (cond["status"] == "True") != (cond["type"] == "Degraded") else "red"
        con.print(f"  [{colour}]{cond['type']}={cond['status']}[/] {cond['reason']}: {cond.get('message', '')}")
