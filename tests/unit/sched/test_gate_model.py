"""The staleness-gate model of the MILP (formulation.py's docstring) against its closed forms and the simulator.

The closed-form checks build a one-option, one-strategy `Problem` by hand and compare `evaluate` with the
formulas of the derivation; the simulator checks plan a job with the planner and run `hexrl.sim` on the
placement, so the prediction and the measurement come from the same run (no recorded numbers).
"""

from __future__ import annotations

import pytest
from sched_helpers import make_cluster, make_job

from hexrl.sched import Plan, plan
from hexrl.sched.problem import PoolCapacity, Problem, RolloutOption, TrainOption, evaluate
from hexrl.sched.settings import PlannerSettings
from hexrl.sched.strategy_search import solve
from hexrl.sim.engine import simulate
from hexrl.sim.scenario import build_policy

pytestmark = pytest.mark.unit

B, TAU = 1024.0, 4000.0


def _problem(eta: int, latency: float, train_rate: float, replicas: int = 8, slots: int = 256, ws: float = 0.0,
             extra: tuple[RolloutOption, ...] = ()) -> Problem:
    # One replica's rate follows Little's law: slots samples every `latency` seconds.
    fast = RolloutOption("p", 1, 1, slots * TAU / latency, slots, 1.0, False, replicas, latency)
    ws_rate = ((("p", "p", B * TAU / ws),) if ws > 0 else ())
    return Problem(
        rollout=(fast, *extra),
        train=(TrainOption("p", 8, 8, train_rate, 8.0),),
        pools=(PoolCapacity("p", ((1, 10_000),)),),
        inflight_cap=(eta + 1) * B,
        ws_rate=ws_rate,
        batch=B,
        tokens_per_sample=TAU,
        policy_lag=eta,
    )


@pytest.mark.parametrize("eta", [1, 2, 4])
def test_gate_bound_throughput_is_the_derived_step(eta: int) -> None:
    """Gate-bound, one option: Δ = (ℓ + D + ω)/(η + ½), T = B·τ/Δ."""
    latency, train, ws = 100.0, 400_000.0, 3.0
    p = _problem(eta, latency, train, replicas=1000, ws=ws)
    ev = evaluate(p, 0, [1000] + [0] * (len(p.rollout) - 1))
    step = (latency + B * TAU / train + ws) / (eta + 0.5)
    assert ev.throughput == pytest.approx(min(train, B * TAU / step), rel=1e-9)
    assert ev.throughput < B * TAU * (eta + 1) / latency  # the old count: all (η+1)·B generating


def test_sync_is_serial() -> None:
    """η = 0 with one wave: Δ = Q + D + ω (Q the batch latency); the tangent envelope is within 2 %."""
    latency, train = 50.0, 200_000.0
    p = _problem(0, latency, train, replicas=4)  # 4 × 256 slots = one batch in one wave
    ev = evaluate(p, 0, [4])
    exact = B * TAU / (latency + B * TAU / train)
    assert exact * 0.98 <= ev.throughput <= exact * 1.02


def test_sync_with_too_few_slots_pays_every_wave() -> None:
    """η = 0, slots for half a batch: generation takes B·τ/R, 1/T = 1/R + D/(B·τ)."""
    latency, train = 50.0, 50_000.0
    p = _problem(0, latency, train, replicas=2)
    ev = evaluate(p, 0, [2])
    rate = 2 * 256 * TAU / latency
    exact = 1 / (1 / rate + 1 / train)
    assert exact * 0.98 <= ev.throughput <= exact * 1.02
    assert ev.throughput < 0.75 * min(rate, train)


def test_slow_replicas_that_cannot_meet_the_bound_are_not_planned() -> None:
    """A straggler option (latency far beyond (η+1)·Δ − D − ω) would add rate but its groups come back stale."""
    slow = RolloutOption("p", 1, 1, 256 * TAU / 2000.0, 256, 0.1, False, 50, 2000.0)
    p = _problem(1, 60.0, 1_000_000.0, replicas=2, extra=(slow,))
    sol = solve(p)
    assert sol is not None
    assert sol.counts[1] == 0, sol.counts
    with_slow = evaluate(p, 0, [2, 10])
    assert "capacity" not in " ".join(with_slow.violations)
    assert with_slow.throughput < sol.evaluation.throughput


# ------------------------------------------------------------------------------ against the simulator

H100X4 = make_cluster([("h100", "H100", 8, 4, False)])
HETERO = make_cluster([("h800", "H800", 8, 3, False), ("h20", "H20", 8, 3, False)])


@pytest.mark.parametrize(
    ("cluster", "size", "eta", "budget"),
    [(H100X4, "1.5B", 0, 1000.0), (H100X4, "7B", 0, 1000.0), (H100X4, "1.5B", 1, 1000.0), (H100X4, "7B", 4, 1000.0),
     (HETERO, "1.5B", 4, 171.12), (HETERO, "7B", 4, 171.12)],
    ids=["h100-1.5B-sync", "h100-7B-sync", "h100-1.5B-eta1", "h100-7B-eta4", "hetero-1.5B-eta4", "hetero-7B-eta4"],
)
def test_planner_agrees_with_the_simulator_where_the_gate_binds(cluster, size, eta, budget) -> None:
    job = make_job(size=size, budget=budget, eta=eta, spot_rollout="forbidden", floor=0.0)
    ps = build_policy("sync" if eta == 0 else "hexrl", job, cluster)
    assert ps.setup is not None, ps.reason
    result = simulate(ps.setup, (), hours=3, seed=1)
    ratio = ps.setup.predicted_tokens_per_second / result.steady_tokens_per_second
    assert 0.85 <= ratio <= 1.17, f"planner {ps.setup.predicted_tokens_per_second:,.0f} vs sim {result.steady_tokens_per_second:,.0f}"


def test_sync_prediction_includes_the_serial_wait() -> None:
    """The same job at η = 0 is predicted clearly slower than at η = 4 (the serial tail and sync)."""
    sync = plan(make_job(size="1.5B", budget=1000.0, eta=0), H100X4, PlannerSettings(compute_baselines=False))
    async_ = plan(make_job(size="1.5B", budget=1000.0, eta=4), H100X4, PlannerSettings(compute_baselines=False))
    assert isinstance(sync, Plan) and isinstance(async_, Plan)
    assert sync.tokens_per_second < 0.7 * async_.tokens_per_second
    assert any("synchronous" in n for n in sync.notes)
