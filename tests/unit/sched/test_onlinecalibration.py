"""Online calibration's pure parts (hexrl.sched.onlinecalibration): the predicted rate per GPU-second at the
plan's operating point, observations from two progress reads, the profile with pinned factors, the current
plan re-scored under a new profile and the re-plan gain."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from sched_helpers import make_cluster, make_job

from hexrl.sched import CostModelSettings, Plan, PlannerSettings, plan
from hexrl.sched.calibration import CalibrationProfile, Observation, fit_calibration
from hexrl.sched.costmodel import Workload, decode_tokens_per_second
from hexrl.sched.onlinecalibration import (
    PhasePrediction,
    WorkSum,
    advance_base,
    effective_profile,
    material_changes,
    observations_between,
    parse_observed_work,
    predicted_work_rates,
    replan_gain,
    rescored_tokens_per_second,
)
from hexrl.sched.searchspace import cluster_catalog

pytestmark = pytest.mark.unit

JOB = make_job("1.5B", budget=60.0)
CLUSTER = make_cluster([("h800", "H800", 8, 1, False), ("h20", "H20", 8, 2, False)])
S = CostModelSettings()


@pytest.fixture(scope="module")
def the_plan() -> Plan:
    result = plan(JOB, CLUSTER, PlannerSettings(compute_baselines=False))
    assert isinstance(result, Plan), result
    return result


def test_the_prediction_splits_a_waves_busy_time_into_the_factors_term_and_the_rest(the_plan):
    rates = predicted_work_rates(JOB, CLUSTER, the_plan, S)
    r = the_plan.replicas[0]
    spec = cluster_catalog(CLUSTER).get(r.gpu)
    w = Workload.from_spec(JOB)
    e = decode_tokens_per_second(spec, w, r.tensor_parallel, r.pipeline_parallel, S)
    assert e is not None
    decode = rates[(r.gpu, "decode")]
    per_token = e.wave_seconds * r.gpus / (e.batch * w.mean_new_tokens)  # the whole wave's GPU-seconds per token
    assert 1 / decode.rate + decode.other_seconds_per_token == pytest.approx(per_token, rel=1e-9)
    # the factor's term is the wave's S decode steps: calibrating decode by f changes the wave by exactly that
    slow = replace(S, calibration=CalibrationProfile.of({(r.gpu, "decode"): 0.5}))
    e2 = decode_tokens_per_second(spec, w, r.tensor_parallel, r.pipeline_parallel, slow)
    assert e2 is not None
    assert (e2.wave_seconds - e.wave_seconds) * r.gpus / (e.batch * w.mean_new_tokens) == pytest.approx(
        1 / decode.rate, rel=1e-9)
    t = the_plan.trainer
    train = rates[(t.gpu, "train")]
    assert 1 / train.rate + train.other_seconds_per_token == pytest.approx(t.gpus / t.tokens_per_second, rel=1e-6)


def test_calibrating_with_an_observation_reproduces_the_measured_busy_time(the_plan):
    """f = observed/rate makes the calibrated model's busy time per token the measured one."""
    cell = (the_plan.replicas[0].gpu, "decode")
    p = predicted_work_rates(JOB, CLUSTER, the_plan, S)[cell]
    measured = 50 * (1 / p.rate + p.other_seconds_per_token)  # 50× slower per token than predicted
    [o] = observations_between(_sums(**{f"{cell[0]}_decode": (0, 0.0)}),
                               _sums(**{f"{cell[0]}_decode": (1000, 1000 * measured)}), {cell: p}, min_seconds=0.0)
    f = o.observed / o.predicted
    assert 1 / (f * p.rate) + p.other_seconds_per_token == pytest.approx(measured, rel=1e-9)


def test_no_observation_when_the_fixed_terms_explain_the_measured_time():
    p = PhasePrediction(rate=100.0, other_seconds_per_token=0.01)
    obs = observations_between(_sums(L4_decode=(0, 0.0)), _sums(L4_decode=(1000, 10.2)), {("L4", "decode"): p}, 1.0)
    assert obs == []  # 10 of the 10.2 s are the model's fixed terms: nothing left to learn from


def test_predicted_rates_ignore_the_profile_in_force(the_plan):
    """Observations compare with the catalog's prediction, so a fitted factor never feeds on itself."""
    calibrated = replace(S, calibration=CalibrationProfile.of({("H20", "decode"): 0.1, ("H800", "train"): 3.0}))
    assert predicted_work_rates(JOB, CLUSTER, the_plan, calibrated) == predicted_work_rates(JOB, CLUSTER, the_plan, S)


def _sums(**cells):
    return {(g, p): WorkSum(g, p, n, s) for (g, p), (n, s) in
            {tuple(k.split("_")): v for k, v in cells.items()}.items()}


def test_an_observation_is_the_rate_of_the_work_between_two_reads():
    before = _sums(L4_decode=(1000, 10.0), L4_train=(500, 5.0))
    after = _sums(L4_decode=(1600, 13.0), L4_train=(500, 6.0))
    obs = observations_between(before, after, {("L4", "decode"): 100.0, ("L4", "train"): 10.0}, min_seconds=1.0)
    assert obs == [Observation("L4", "decode", 100.0, 200.0, 3.0)]  # train did no work: no rate


@pytest.mark.parametrize("before,after,why", [
    ((1000, 10.0), (900, 2.0), "the coordinator restarted"),
    ((1000, 10.0), (1100, 10.5), "too little work"),
    (None, (1100, 10.5), "no earlier read"),
])
def test_no_observation_without_a_usable_difference(before, after, why):
    b = _sums(L4_decode=before) if before else {}
    obs = observations_between(b, _sums(L4_decode=after), {("L4", "decode"): 100.0}, min_seconds=1.0)
    assert obs == [], why


def test_a_cell_with_too_little_new_work_keeps_its_older_base_until_the_work_adds_up():
    first = _sums(L4_decode=(1000, 10.0))
    second = _sums(L4_decode=(1100, 11.0))
    base = advance_base(first, second, min_seconds=2.0)
    assert base == first  # 1 s of work: not yet an observation, and not lost either
    third = _sums(L4_decode=(1250, 12.5))
    obs = observations_between(base, third, {("L4", "decode"): 100.0}, min_seconds=2.0)
    assert obs == [Observation("L4", "decode", 100.0, 100.0, 2.5)]
    assert advance_base(base, third, 2.0) == third
    assert advance_base(third, _sums(L4_decode=(10, 0.5)), 2.0) == _sums(L4_decode=(10, 0.5))  # a restart


def test_no_observation_for_a_cell_without_a_prediction():
    obs = observations_between(_sums(H20_decode=(0, 0.0)), _sums(H20_decode=(10, 5.0)), {}, min_seconds=1.0)
    assert obs == []


def test_observed_work_is_parsed_leniently():
    progress = {"observedWork": [
        {"gpu": "L4", "phase": "decode", "tokens": 10, "seconds": 2.5},
        {"gpu": "L4", "phase": "sleep", "tokens": 10, "seconds": 2.5},
        {"gpu": "", "phase": "train", "tokens": 10, "seconds": 2.5},
        {"gpu": "L4", "phase": "train", "tokens": -1, "seconds": 2.5},
        "garbage",
    ]}
    assert parse_observed_work(progress) == {("L4", "decode"): WorkSum("L4", "decode", 10.0, 2.5)}
    assert parse_observed_work({}) == {} and parse_observed_work({"observedWork": "x"}) == {}


def test_pinned_factors_win_over_fitted_ones():
    fit = fit_calibration([Observation("L4", "decode", 100.0, 10.0, 100.0),
                           Observation("L4", "train", 100.0, 50.0, 100.0)])
    pinned = CalibrationProfile.of({("L4", "decode"): 0.5})
    profile = effective_profile(pinned, fit)
    assert profile.factor("L4", "decode") == 0.5
    assert profile.factor("L4", "train") == pytest.approx(fit.get("L4", "train").factor)  # type: ignore[union-attr]
    assert profile.factor("L4", "train") < 0.6
    assert effective_profile(CalibrationProfile(), None) == CalibrationProfile()


def test_material_changes_name_the_cells_that_moved_more_than_the_threshold():
    old = CalibrationProfile.of({("L4", "decode"): 1.0, ("L4", "train"): 0.5})
    new = CalibrationProfile.of({("L4", "decode"): 1.05, ("L4", "train"): 0.25, ("H20", "decode"): 0.62})
    assert material_changes(old, new, 0.1) == [("H20", "decode", 1.0, 0.62), ("L4", "train", 0.5, 0.25)]
    assert material_changes(new, new, 0.1) == []


def test_rescoring_under_the_same_profile_is_the_plans_own_prediction(the_plan):
    assert rescored_tokens_per_second(JOB, CLUSTER, the_plan, S, S) == pytest.approx(the_plan.tokens_per_second)


def test_rescoring_follows_the_bottleneck(the_plan):
    gpus = {r.gpu for r in the_plan.replicas} | {the_plan.trainer.gpu}
    slower = replace(S, calibration=CalibrationProfile.of(
        {(g, p): 0.1 for g in gpus for p in ("decode", "prefill", "train")}))
    x = rescored_tokens_per_second(JOB, CLUSTER, the_plan, S, slower)
    assert x < 0.2 * the_plan.tokens_per_second
    fresh = plan(JOB, CLUSTER, PlannerSettings(cost=slower, compute_baselines=False))
    assert isinstance(fresh, Plan)
    # the fresh plan under the slower profile cannot do much better than the old one re-scored
    assert fresh.tokens_per_second == pytest.approx(x, rel=0.5)


def test_the_replan_gain_is_relative_throughput_or_cost(the_plan):
    assert replan_gain(JOB, the_plan.tokens_per_second / 2, 10.0, the_plan) == pytest.approx(1.0)
    assert replan_gain(JOB, the_plan.tokens_per_second, 10.0, the_plan) == pytest.approx(0.0)
    target = make_job("1.5B", budget=None, target=1000.0)
    cheap = replace(the_plan, tokens_per_second=1500.0, cost_per_hour=8.0)
    assert replan_gain(target, 1200.0, 10.0, cheap) == pytest.approx(0.2)
    assert replan_gain(target, 800.0, 10.0, cheap) == math.inf
    assert replan_gain(target, 800.0, 10.0, replace(cheap, tokens_per_second=400.0)) == pytest.approx(-0.5)
