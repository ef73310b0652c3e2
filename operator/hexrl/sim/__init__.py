"""The simulator: an asynchronous RL job on a planned cluster, over hours of spot churn, in seconds.

What-if planning before spending GPU-hours, and side-by-side reproduction of the published gains of
asynchronous, heterogeneous and spot-aware RL. No Kubernetes: placements come from the planner
(`hexrl.sched.plan`) and every rate from its cost model (`hexrl.sched.costmodel`).

- `scenario` — the policies (sync, homogeneous, hexrl, hexrl-spot, hexrl-spot-nomigrate, fixed-split)
  placed on the same cluster and turned into engine setups (`build_policy`, `build_policies`)
- `engine`   — the discrete-event engine (`simulate(setup, trace, hours, seed) -> SimResult`): the
  event loop and its handlers
- `state`    — what a run changes (`SimState`: fleet, slots, groups in flight, buffer, versions,
  trainer, tally); `events` — the event kinds and their queue
- `scheduling` — list scheduling of GRPO groups on slots; `preemption` — what a reclaim does;
  `metrics` — billing rate, time-series points and the `SimResult`
- `model`    — the engine's input (`SimSetup`) and output (`SimResult`) as numbers
- `workload` — response lengths from the cost model's distribution
- `trace`    — spot preemption traces: Poisson per pool or a CSV/YAML file
- `report`   — `compare(...)` over policies, JSON rows, CSV files and PNG plots
- `settings` — the operator's reaction times and the run's resolution (`SimSettings`)
- `recording` — recordings of real jobs (JSON Lines: the job, cluster, plan and profile, then samples of the
  coordinator's progress); `replay` — the recorded plan simulated and compared with the recording
"""

from __future__ import annotations

from hexrl.sim.engine import SimResult, simulate
from hexrl.sim.report import Outcome, compare, row, write_csv, write_plots
from hexrl.sim.scenario import POLICIES, PolicySetup, build_policies, build_policy
from hexrl.sim.settings import SimSettings
from hexrl.sim.trace import NodeEvent, TraceError, load_trace, poisson_trace

__all__ = [
    "POLICIES",
    "NodeEvent",
    "Outcome",
    "PolicySetup",
    "SimResult",
    "SimSettings",
    "TraceError",
    "build_policies",
    "build_policy",
    "compare",
    "load_trace",
    "poisson_trace",
    "row",
    "simulate",
    "write_csv",
    "write_plots",
]
