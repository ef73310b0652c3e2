"""`hexrl operator` with a planner that solves every MILP afresh and computes the homogeneous baselines
inline: the reference the operator benchmark (`bench_operator.py`, mode `fresh`) compares the default
planning with. The operator itself has no such mode; this script injects the planner (`main.run`'s
`planner`/`replanner`), so the comparison costs the product nothing.

Run: `python bench/fresh_planner_operator.py --kubeconfig FILE [--standalone] [--metrics-port N]
[--health-port N] [--log-level LEVEL]`; every other setting comes from `HEXRL_OPERATOR_*` as for
`hexrl operator`.
"""

from __future__ import annotations

import argparse
import sys

from hexrl.api.models import RLJobSpec
from hexrl.k8s.main import OperatorStartError, run
from hexrl.k8s.settings import OperatorSettings
from hexrl.sched import PlannerSettings, plan, replan_or_plan
from hexrl.sched.types import Cluster, Infeasible, Plan

FRESH = PlannerSettings(compute_baselines=True)
"""No solution cache is passed, so every MILP is solved; baselines come with each plan."""


def fresh_plan(spec: RLJobSpec, cluster: Cluster) -> Plan | Infeasible:
    """A first plan, solved afresh with its baselines."""
    return plan(spec, cluster, FRESH)


def fresh_replan(spec: RLJobSpec, cluster: Cluster, current: Plan, *, trainer_may_move: bool = True) -> Plan | Infeasible:
    """A re-plan, solved afresh with its baselines (the trainer kept where it may not move), or a fresh plan
    when no re-plan is feasible."""
    return replan_or_plan(spec, cluster, current, FRESH, trainer_may_move=trainer_may_move)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--standalone", action="store_true")
    ap.add_argument("--metrics-port", type=int)
    ap.add_argument("--health-port", type=int)
    ap.add_argument("--log-level")
    args = ap.parse_args(argv)
    flags = {"metrics_port": args.metrics_port, "health_port": args.health_port, "log_level": args.log_level}
    settings = OperatorSettings.from_env().with_values(
        standalone=args.standalone, **{k: v for k, v in flags.items() if v is not None})
    try:
        run(settings, args.kubeconfig, prepare=True, planner=fresh_plan, replanner=fresh_replan)
    except OperatorStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
