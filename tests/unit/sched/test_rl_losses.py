"""The RL-specific losses of the cost model, each its own term: the response-length tail (a group holds its
slots until its longest response ends), the weight-update pause between waves, and the re-prefill that a
spot reclaim's migrated partial responses cost the survivors. Each test varies one physical input and
checks the term against arithmetic written out here, so a term that is dropped or mis-scaled fails."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from sched_helpers import make_cluster, make_job

from hexrl.sched import DEFAULT_CATALOG
from hexrl.sched.costmodel import (
    CostModelSettings,
    Workload,
    decode_tokens_per_second,
    expected_max_response,
    mean_resident_response,
    reprefill_seconds,
    spot_availability,
    weight_update_seconds,
)
from hexrl.sched.searchspace import build_search_space
from hexrl.sched.settings import PlannerSettings

pytestmark = pytest.mark.unit

H20, H800 = DEFAULT_CATALOG.get("H20"), DEFAULT_CATALOG.get("H800")
NO_PAUSE = CostModelSettings(weight_load_gbps=math.inf)


def _workload(size: str = "7B", **generation: int) -> Workload:
    return Workload.from_spec(make_job(size=size, **generation))


def test_the_pause_is_each_gpus_shard_over_the_host_to_device_link() -> None:
    w, s = _workload(), CostModelSettings(weight_load_gbps=20.0)
    assert weight_update_seconds(w, 1, s) == pytest.approx(w.weight_bytes / 20e9)
    assert weight_update_seconds(w, 4, s) == pytest.approx(w.weight_bytes / 4 / 20e9)
    assert weight_update_seconds(w, 1, replace(s, weight_load_gbps=40.0)) == pytest.approx(w.weight_bytes / 40e9)


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_a_wave_pays_the_pause_once_and_the_rate_drops_by_wave_over_wave_plus_pause(tp: int) -> None:
    w = _workload()
    with_pause = decode_tokens_per_second(H20, w, tp, 1, CostModelSettings())
    without = decode_tokens_per_second(H20, w, tp, 1, NO_PAUSE)
    assert with_pause is not None and without is not None
    pause = weight_update_seconds(w, tp, CostModelSettings())
    assert with_pause.weight_update_seconds == pytest.approx(pause)
    assert without.weight_update_seconds == 0.0
    assert with_pause.wave_seconds == pytest.approx(without.wave_seconds + pause)
    assert with_pause.tokens_per_second / without.tokens_per_second == pytest.approx(
        without.wave_seconds / (without.wave_seconds + pause))
    assert with_pause.step_seconds == without.step_seconds  # the pause is between waves, not in a step


def test_the_length_tail_makes_a_wave_last_the_longest_response_of_a_group() -> None:
    """Same mean length, longer tail → the wave lasts E[max_G R] decode steps (the short responses' slots idle)."""
    job = make_job(size="7B")
    s = replace(NO_PAUSE, max_sequences_per_replica=32)  # the same batch under every distribution
    longest, fixed_costs = [], []
    for dist in ("fixed", "uniform", "lognormal"):
        spec = job.model_copy(deep=True)
        spec.generation.length_distribution = dist
        w = Workload.from_spec(spec)
        e = decode_tokens_per_second(H20, w, 1, 1, s)
        assert e is not None and e.batch == 32
        longest.append(expected_max_response(w, w.group_size, s))
        fixed_costs.append(e.wave_seconds - longest[-1] * e.step_seconds)  # prefill + reward: not the tail
    assert longest[0] == pytest.approx(job.generation.mean_new_tokens)
    assert longest[0] < longest[1] < longest[2] <= job.generation.max_new_tokens
    assert fixed_costs[0] > 0
    assert fixed_costs[1] == pytest.approx(fixed_costs[0]) and fixed_costs[2] == pytest.approx(fixed_costs[0])


def test_reprefill_is_compute_bound_so_a_low_flops_gpu_pays_more() -> None:
    w = _workload()
    ctx = w.prompt_tokens + mean_resident_response(w, NO_PAUSE)
    flops = 100 * (2 * w.parameters * ctx + 2 * w.layers * w.hidden * ctx**2)
    h20 = reprefill_seconds(H20, w, 100, 1, NO_PAUSE)
    assert h20 == pytest.approx(flops / (H20.tflops_bf16 * 1e12 * NO_PAUSE.prefill_mfu))
    assert reprefill_seconds(H20, w, 100, 2, NO_PAUSE) == pytest.approx(h20 / 2)
    ratio = h20 / reprefill_seconds(H800, w, 100, 1, NO_PAUSE)
    assert ratio == pytest.approx(H800.tflops_bf16 / H20.tflops_bf16)  # same default MFU on both


def test_spot_serving_share_is_up_time_less_the_reprefill_share() -> None:
    s = CostModelSettings(spot_recovery_hours=0.25)
    up = 1 / (1 + 2 * 0.5 * 0.25)
    assert spot_availability(0.5, 2, s) == pytest.approx(up)
    assert spot_availability(0.5, 2, s, reprefill=180.0) == pytest.approx(up * (1 - 2 * 0.5 * 180.0 / 3600))
    assert spot_availability(0.0, 1, s, reprefill=180.0) == 1.0  # no reclaims, nothing to re-prefill
    assert spot_availability(100.0, 1, s, reprefill=3600.0) == 0.0  # never negative


def test_the_planner_discounts_spot_rollout_by_its_reprefill_share() -> None:
    job = make_job(size="7B", budget=500)
    cluster = make_cluster([("h800", "H800", 8, 1, False), ("h20s", "H20", 8, 2, True)], inter_pool_gbps=25)
    space = build_search_space(job, cluster, PlannerSettings())
    w, cs = Workload.from_spec(job), PlannerSettings().cost
    spot = [o for o in space.problem.rollout if o.spot]
    assert spot
    lam = next(p.preemptions_per_node_hour for p in cluster.pools if p.spot)
    assert lam > 0
    for o in spot:
        e = decode_tokens_per_second(H20, w, o.item_size, 1, cs)
        assert e is not None
        share = spot_availability(lam, 1, cs, reprefill_seconds(H20, w, e.batch, o.item_size, cs))
        assert share < spot_availability(lam, 1, cs)
        assert o.rate == pytest.approx(e.tokens_per_second * share)
