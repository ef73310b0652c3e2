"""Live rollout scaling from the coordinator's progress report, with hysteresis. Pure.

The planner sizes rollout from a cost model; the running job tells us whether that was right:

- the trainer **starves** (idle fraction `f_idle > starve_idle_fraction` for `grow_after_polls`
  consecutive polls): rollout is the bottleneck, so add one replica — on spot capacity first (cheap,
  preemptible is fine for stateless rollout), on-demand only when the job forbids spot — as long as
  `cost + n_gpus · price ≤ budget.maxCostPerHour`;
- staleness **approaches η** (observed lag `s ≥ shrink_staleness_fraction · η` for `shrink_after_polls`
  polls): rollout outruns the trainer and generates samples that will be dropped or trained stale, so
  remove the most recently added extra replica (never below the plan).

Hysteresis: each direction needs consecutive observations, the two thresholds do not overlap (a starved
trainer has an empty buffer and hence low lag), and after a step the opposite step waits
`cooldown_seconds`. Only replicas added here are ever removed here; the plan's own replicas are the
planner's business.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from hexrl.k8s.settings import ScalingSettings
from hexrl.sched.catalog import DEFAULT_CATALOG, lookup_gpu
from hexrl.sched.types import Cluster, Plan, RolloutReplica


@dataclass(frozen=True)
class ScaleState:
    """Per-job scaling memory (kept in the job's ConfigMap state so a restart does not forget it)."""

    starved_polls: int = 0
    near_polls: int = 0
    extra: int = 0
    last_change: float = 0.0
    last_direction: str = ""

    def wire(self) -> dict[str, Any]:
        """What survives a restart (the poll counters deliberately do not: they restart from zero)."""
        return {"extra": self.extra, "lastChange": self.last_change, "lastDirection": self.last_direction}

    @classmethod
    def from_wire(cls, d: dict[str, Any] | None) -> ScaleState:
        d = d or {}
        return cls(extra=int(d.get("extra", 0)), last_change=float(d.get("lastChange", 0.0)),
                   last_direction=str(d.get("lastDirection", "")))


def observe(progress: dict[str, Any], eta: int, state: ScaleState, s: ScalingSettings, now: float) -> tuple[str, ScaleState]:
    """Fold one progress report into the state; returns ("grow" | "shrink" | "", new state)."""
    idle = float(progress.get("trainerIdleFraction") or 0.0)
    lag = float(progress.get("observedStaleness") or 0.0)
    starved = idle > s.starve_idle_fraction
    near = (eta > 0 and lag >= s.shrink_staleness_fraction * eta) or (eta == 0 and lag > 0)
    st = replace(
        state,
        starved_polls=state.starved_polls + 1 if starved and not near else 0,
        near_polls=state.near_polls + 1 if near else 0,
    )
    cooling = now - st.last_change < s.cooldown_seconds
    if st.near_polls >= s.shrink_after_polls and st.extra > 0 and not (cooling and st.last_direction == "grow"):
        return "shrink", replace(st, near_polls=0, last_change=now, last_direction="shrink")
    if (
        st.starved_polls >= s.grow_after_polls
        and st.extra < s.max_extra_replicas
        and not (cooling and st.last_direction == "shrink")
    ):
        return "grow", replace(st, starved_polls=0, last_change=now, last_direction="grow")
    return "", st


def _price(cluster: Cluster, pool: str, gpu: str, spot: bool) -> float:
    p = next((p for p in cluster.pools if p.name == pool), None)
    if p is not None and p.price_per_gpu_hour is not None:
        return p.price_per_gpu_hour
    # the cluster's own catalog overrides (chart value gpuCatalog) price a GPU the shipped catalog
    # does not know or prices differently, as they do for the planner
    spec = lookup_gpu(gpu, DEFAULT_CATALOG.with_specs(cluster.gpu_overrides))
    return spec.price(spot) if spec is not None else float("inf")


def grow(plan: Plan, cluster: Cluster, max_cost_per_hour: float | None, spot_allowed: bool) -> Plan | None:
    """`plan` plus one rollout replica like an existing single-node one, on spot first, within budget; None if none fits."""
    templates = [r for r in plan.replicas if len(r.nodes) == 1]
    if not templates:
        return None
    used = plan.gpus_per_node()
    pools = {p.name: p for p in cluster.pools}
    options = []
    for t in {(r.gpu, r.gpus): r for r in templates}.values():
        for node in cluster.nodes:
            pool = pools.get(node.pool)
            if pool is None or node.gpu != t.gpu or node.gpus_free - used.get(node.name, 0) < t.gpus:
                continue
            if node.spot and not spot_allowed:
                continue
            price = _price(cluster, node.pool, node.gpu, node.spot) * t.gpus
            if max_cost_per_hour is not None and plan.cost_per_hour + price > max_cost_per_hour + 1e-9:
                continue
            # spot first, then cheapest per token, then a stable name order
            options.append((not node.spot, price / max(t.tokens_per_second, 1e-9), node.name, node, t, price))
    if not options:
        return None
    _, _, _, node, t, price = min(options, key=lambda o: o[:3])
    new = RolloutReplica(pool=node.pool, gpu=node.gpu, tensor_parallel=t.tensor_parallel, pipeline_parallel=1,
                         nodes=(node.name,), spot=node.spot, tokens_per_second=t.tokens_per_second)
    return replace(
        plan,
        replicas=(*plan.replicas, new),
        cost_per_hour=plan.cost_per_hour + price,
        rollout_tokens_per_second=plan.rollout_tokens_per_second + t.tokens_per_second,
        notes=(*plan.notes, f"live scaling added a {t.gpus}-GPU replica on {node.name}"),
    )


def shrink(plan: Plan, cluster: Cluster) -> Plan:
    """`plan` without its last replica (the most recently added extra one)."""
    last = plan.replicas[-1]
    price = _price(cluster, last.pool, last.gpu, last.spot) * last.gpus
    return replace(
        plan,
        replicas=plan.replicas[:-1],
        cost_per_hour=max(0.0, plan.cost_per_hour - (price if price != float("inf") else 0.0)),
        rollout_tokens_per_second=max(0.0, plan.rollout_tokens_per_second - last.tokens_per_second),
    )
