"""The demo's steps in order (`run_demo`): each stage module does one step; this one numbers them, prints
their headers, and stops the operator and the control plane when a step fails or the user interrupts.
"""

from __future__ import annotations

from hexrl.commands.demo.control_plane import check_inputs, show_nodes, start_control_plane
from hexrl.commands.demo.job_plan import apply_job
from hexrl.commands.demo.operator_process import install_operator, stop_operator
from hexrl.commands.demo.output import console, print_step
from hexrl.commands.demo.real_pods import has_real_nodes, train_in_real_pods
from hexrl.commands.demo.reclaim import reclaim
from hexrl.commands.demo.running import show_running
from hexrl.commands.demo.settings import DemoSettings
from hexrl.commands.demo.state import DemoRun, Outcome
from hexrl.commands.demo.summary import finish, print_real_pods_summary, print_summary

STEPS = 6
"""Steps of the demo (7 when the inventory has real nodes: the tiny job in real pods comes before the summary)."""


def run_demo(settings: DemoSettings) -> Outcome:
    """Run the steps (six, or seven with real nodes); raises DemoError with a sentence when something cannot go on."""
    con = console()
    job_name, ns = check_inputs(settings)
    con.print("[bold]hexrl demo[/] — an RL post-training job planned onto heterogeneous and spot GPU pools, on a real "
              "local Kubernetes control plane with simulated GPU nodes (no GPU, no Docker needed).")
    total = STEPS + 1 if has_real_nodes(settings) else STEPS
    print_step(con, 1, "Local control plane", total)
    cluster = start_control_plane(con, settings)
    run = DemoRun(con, cluster, settings, job_name, ns)
    try:
        show_nodes(run)
        print_step(con, 2, "RLJob CRD and the operator", total)
        install_operator(run)
        print_step(con, 3, f"kubectl apply -f {settings.job}", total)
        apply_job(run)
        print_step(con, 4, "Pods on their pools, and the job's status", total)
        pods, nodes = show_running(run)
        print_step(con, 5, "Spot reclaim", total)
        reclaim(run, nodes, pods)
        if total > STEPS:
            print_step(con, 6, "The tiny job training in real pods, and a real node reclaimed", total)
            run.pods = train_in_real_pods(run)
        print_step(con, total, "Summary", total)
        print_summary(con, run.out, settings)
        if run.pods is not None:
            print_real_pods_summary(con, run.pods)
    except BaseException:
        # A failed step or Ctrl-C: leave nothing running unless --keep asked for the cluster.
        if run.operator is not None:
            stop_operator(run.operator)
        if not settings.keep:
            cluster.down(quiet=True)
        raise
    finish(run)
    return run.out
