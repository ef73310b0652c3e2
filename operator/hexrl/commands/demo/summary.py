"""The last step: the numbers of the run (plan before and after the reclaim, re-plan and replacement times,
the real-pod training when there was one), then either stop everything or, with `--keep`, say how to reach
what is left running.
"""

from __future__ import annotations

import subprocess
from typing import Any

from hexrl.commands.demo.operator_process import stop_operator
from hexrl.commands.demo.output import fmt_tps
from hexrl.commands.demo.settings import DemoSettings
from hexrl.commands.demo.state import DemoRun, Outcome


def print_summary(con: Any, out: Outcome, settings: DemoSettings) -> None:
    """Throughput, cost and GPUs before the reclaim and after it, the re-plan and replacement times, and what
    to try next."""
    before, after = out.plan_before, out.plan_after or out.plan_before
    con.print(f"  before the reclaim: {fmt_tps(before.get('predictedTokensPerSecond', 0))} tokens/s for "
              f"${before.get('costPerHour', 0):,.2f}/h on {before.get('gpus', 0)} GPUs")
    if out.reclaimed:
        con.print(f"  after losing {len(out.reclaimed)} spot node(s): {fmt_tps(after.get('predictedTokensPerSecond', 0))} "
                  f"tokens/s for ${after.get('costPerHour', 0):,.2f}/h on {after.get('gpus', 0)} GPUs")
        con.print(f"  re-planned in {out.replan_seconds:.1f} s; {out.pods_replaced} replacement pod(s) Running after "
                  f"{out.replaced_seconds:.1f} s")
    con.print("  next: `make train-local` trains a tiny model with the same asynchronous RL runtime on this machine; "
              "the Helm chart is in charts/hexrl/ (README there)")


def print_real_pods_summary(con: Any, out: Any) -> None:
    """The real-pod step's numbers from its `PodsOutcome`: time to the first trained step, the reward's rise,
    and the reclaimed real node's replacement."""
    start = f"{out.reward_start:.2f}" if out.reward_start is not None else "?"
    end = f"{out.reward_end:.2f}" if out.reward_end is not None else "?"
    con.print(f"  real pods: first trained step {out.first_step_seconds:.0f} s after apply; mean reward {start} → "
              f"{end} in {out.steps} steps ({out.samples_per_second:.0f} trained samples/s)")
    if out.reclaimed:
        con.print(f"  real node {out.reclaimed} reclaimed: replacement rollout Ready in {out.replacement_seconds:.0f} s, "
                  f"{out.partials:.0f} partial responses handed in, trainer "
                  + ("untouched" if out.trainer_untouched else "restarted"))


def finish(run: DemoRun) -> None:
    """After a successful run: say how to reach what --keep left running, or stop everything."""
    if run.settings.keep:
        keep_hint(run.con, run.cluster, run.settings, run.job, run.ns, run.operator)
        return
    if run.operator is not None:
        stop_operator(run.operator)
    run.cluster.down(quiet=True)
    run.con.print("\n  stopped the operator and the control plane; nothing is left running "
                  "(`hexrl demo --keep` leaves it up to explore).")


def keep_hint(con: Any, cluster: Any, settings: DemoSettings, job: str, ns: str,
              operator: subprocess.Popen[bytes] | None) -> None:
    """What `--keep` left running, the commands to look at the job, and how to stop it all."""
    name = settings.cluster_name
    con.print(f"\n  [bold]Still running[/] (--keep): cluster {name!r} and the operator (pid {operator.pid if operator else '?'}).")
    con.print(f"    export KUBECONFIG={cluster.kubeconfig}")
    con.print(f"    hexrl cluster kubectl --name {name} -- get rlj -n {ns} -o wide")
    con.print(f"    hexrl cluster kubectl --name {name} -- describe rlj {job} -n {ns}")
    con.print(f"    hexrl cluster kubectl --name {name} -- get pods -n {ns} -L hexrl.dev/role,hexrl.dev/pool -o wide")
    con.print(f"  stop it all: kill {operator.pid if operator else '<pid>'} && hexrl cluster down --name {name}")
