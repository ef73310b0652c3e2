"""The calibration fit (hexrl.sched.calibration) and its effect on the cost model and the planner."""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sched_helpers import make_cluster, make_job

from hexrl.sched import DEFAULT_CATALOG, CostModelSettings, Plan, PlannerSettings, plan
from hexrl.sched.calibration import (
    CalibrationError,
    CalibrationProfile,
    CalibrationSettings,
    Observation,
    calibration_profile,
    fit_calibration,
    fit_factor,
    merge_profiles,
    parse_profile,
    profile_document,
)
from hexrl.sched.costmodel import Workload, decode_tokens_per_second, phase_rates, training_tokens_per_second

pytestmark = pytest.mark.unit

S = CalibrationSettings()


def noisy(gpu: str, phase: str, factor: float, n: int, seconds: float, sigma: float, rng: random.Random,
          predicted: float = 1000.0) -> list[Observation]:
    """n observations of `seconds` each whose log ratio is ln(factor) plus N(0, sigma²) noise."""
    return [Observation(gpu, phase, predicted, predicted * factor * math.exp(rng.gauss(0.0, sigma)), seconds)  # type: ignore[arg-type]
            for _ in range(n)]


# ------------------------------------------------------------------------------------------ fit


def spread(gpu: str, phase: str, factor: float, n: int, seconds: float, sigma: float, rng: random.Random,
           predicted: float = 1000.0) -> list[Observation]:
    """n observations whose log ratios are ln(factor) plus the n normal quantiles σ·Φ⁻¹((i + ½)/n), in a random
    order: Gaussian-shaped noise with no tail draw that the outlier rule may rightly reject (random draws
    would make "nothing rejected" fail now and then), and whose mean is exactly ln(factor)."""
    quantiles = [sigma * statistics.NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)]
    rng.shuffle(quantiles)
    return [Observation(gpu, phase, predicted, predicted * factor * math.exp(q), seconds)  # type: ignore[arg-type]
            for q in quantiles]


@settings(max_examples=40, deadline=None)
@given(log_factor=st.floats(-1.5, 1.5), seed=st.integers(0, 2**16), n=st.integers(5, 30))
def test_the_fit_recovers_a_factor_it_was_given_within_the_noise(log_factor: float, seed: int, n: int) -> None:
    rng = random.Random(seed)
    sigma = 0.1
    est = fit_factor("H100", "decode", spread("H100", "decode", math.exp(log_factor), n, 30.0, sigma, rng), S)
    # the noise averages out exactly; what is left is the prior's pull, at most (1 − κ)·|θ| with κ ≥ 0.98 here
    tolerance = (1 - est.confidence) * abs(log_factor) + 1e-9
    assert abs(math.log(est.factor) - log_factor) <= tolerance
    assert est.low <= est.factor <= est.high
    assert est.used == n and est.rejected == 0
    assert est.evidence_seconds == pytest.approx(30.0 * n)


def test_injected_outliers_are_rejected_and_do_not_move_the_factor() -> None:
    rng = random.Random(7)
    good = noisy("H20", "decode", 0.6, 20, 10.0, 0.05, rng)
    outliers = [Observation("H20", "decode", 1000.0, 1000.0 * 0.6 * k, 10.0) for k in (0.05, 0.1, 8.0)]
    clean = fit_factor("H20", "decode", good, S)
    dirty = fit_factor("H20", "decode", good[:10] + outliers + good[10:], S)
    assert dirty.rejected == 3 and dirty.used == 20
    assert dirty.factor == pytest.approx(clean.factor, rel=1e-12)
    assert dirty.factor == pytest.approx(0.6, rel=0.05)


def test_two_observations_are_never_rejected_as_outliers() -> None:
    obs = [Observation("L4", "train", 100.0, 50.0, 5.0), Observation("L4", "train", 100.0, 400.0, 5.0)]
    assert fit_factor("L4", "train", obs, S).rejected == 0


def test_little_evidence_stays_near_the_prior_and_enough_evidence_moves_to_the_data() -> None:
    truth = 0.5
    little = fit_factor("L4", "decode", [Observation("L4", "decode", 100.0, 100.0 * truth, 0.001)], S)
    some = fit_factor("L4", "decode", [Observation("L4", "decode", 100.0, 100.0 * truth, 0.1)], S)
    lots = fit_factor("L4", "decode", [Observation("L4", "decode", 100.0, 100.0 * truth, 60.0)] * 20, S)
    assert little.confidence < 0.05 and abs(math.log(little.factor)) < 0.05 * abs(math.log(truth))
    assert little.confidence < some.confidence < lots.confidence
    assert little.factor > some.factor > lots.factor  # moves monotonically from 1 towards 0.5
    assert lots.factor == pytest.approx(truth, rel=0.01)
    assert (lots.high - lots.low) < (some.high - some.low) < (little.high - little.low)
    assert little.ratio == pytest.approx(truth)  # the data alone said 0.5 all along


def test_no_observation_is_the_prior() -> None:
    est = fit_factor("L4", "prefill", [], S)
    assert (est.factor, est.confidence, est.ratio, est.used) == (1.0, 0.0, 1.0, 0)
    assert est.low == pytest.approx(math.exp(-1.96 * S.prior_sigma))


def test_fit_calibration_fits_each_cell_on_its_own_and_gives_the_profile() -> None:
    rng = random.Random(1)
    obs = noisy("H100", "decode", 0.8, 10, 20.0, 0.05, rng) + noisy("H100", "train", 1.3, 10, 20.0, 0.05, rng)
    obs += noisy("L4", "decode", 0.5, 10, 20.0, 0.05, rng)
    fit = fit_calibration(reversed(obs))
    assert [(e.gpu, e.phase) for e in fit.estimates] == [("H100", "decode"), ("H100", "train"), ("L4", "decode")]
    prof = calibration_profile(obs)
    assert [e.factor for e in prof.entries] == pytest.approx([e.factor for e in fit.profile().entries])
    assert prof.factor("H100", "train") == pytest.approx(1.3, rel=0.05)
    assert prof.factor("L4", "decode") == pytest.approx(0.5, rel=0.05)
    assert prof.factor("L4", "train") == 1.0 and prof.factor("A100", "decode") == 1.0


@pytest.mark.parametrize("field,value", [("predicted", 0.0), ("observed", -1.0), ("work_seconds", math.nan),
                                         ("observed", math.inf)])
def test_an_observation_must_be_positive_and_finite(field: str, value: float) -> None:
    good = dict(gpu="L4", phase="decode", predicted=1.0, observed=1.0, work_seconds=1.0)
    with pytest.raises(ValueError, match=field):
        Observation(**{**good, field: value})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="phase"):
        Observation(**{**good, "phase": "reward"})  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- wire form


def test_a_written_profile_parses_back_to_the_fitted_factors() -> None:
    fit = fit_calibration([Observation("h100", "decode", 10.0, 7.0, 30.0), Observation("L4", "train", 10.0, 3.0, 30.0)])
    doc = profile_document(fit, {"device": "cpu"})
    assert doc["kind"] == "CalibrationProfile" and doc["benchmark"] == {"device": "cpu"}
    parsed = parse_profile(doc, DEFAULT_CATALOG)
    decode, train = fit.get("h100", "decode"), fit.get("L4", "train")
    assert decode is not None and train is not None
    assert parsed.factor("H100", "decode") == pytest.approx(decode.factor)  # under the canonical name
    assert parsed.factor("L4", "train") == pytest.approx(train.factor)


@pytest.mark.parametrize("factors,says", [
    (None, "factors must be a list"),
    ([{"gpu": "H100", "phase": "decode"}], "factors[0].factor must be a positive number, got None"),
    ([{"gpu": "H100", "phase": "decode", "factor": 0}], "factors[0].factor must be a positive number, got 0"),
    ([{"gpu": "H100", "phase": "decode", "factor": True}], "factors[0].factor must be a positive number, got True"),
    ([{"gpu": "H100", "phase": "reward", "factor": 1}], "factors[0].phase must be one of decode, prefill, train"),
    ([{"gpu": "H1000", "phase": "decode", "factor": 1}], "factors[0].gpu 'H1000' is not in the GPU catalog"),
    ([{"gpu": "H100", "phase": "train", "factor": 1}, {"gpu": "h100", "phase": "train", "factor": 2}],
     "factors[1] repeats H100/train (also factors[0])"),
    (["H100"], "factors[0] must be a mapping"),
])
def test_a_malformed_profile_names_the_field(factors: object, says: str) -> None:
    with pytest.raises(CalibrationError) as err:
        parse_profile({"factors": factors}, DEFAULT_CATALOG)
    assert says in str(err.value)


def test_profiles_merge_and_refuse_a_cell_given_twice() -> None:
    a = CalibrationProfile.of({("L4", "decode"): 0.5})
    b = CalibrationProfile.of({("H100", "train"): 0.9})
    assert merge_profiles([a, b]).factor("L4", "decode") == 0.5
    with pytest.raises(ValueError, match="two factors"):
        merge_profiles([a, a])
    with pytest.raises(ValueError, match="positive"):
        CalibrationProfile.of({("L4", "decode"): 0.0})


# ------------------------------------------------------------------------ cost model and plan


def _calibrated(factors: dict) -> CostModelSettings:
    return CostModelSettings(calibration=CalibrationProfile.of(factors))


def test_the_factors_scale_the_phases_they_name_and_nothing_else() -> None:
    w = Workload.from_spec(make_job(size="1.5B"))
    gpu = DEFAULT_CATALOG.get("H100")
    base = decode_tokens_per_second(gpu, w, 1, 1, CostModelSettings())
    half = decode_tokens_per_second(gpu, w, 1, 1, _calibrated({("H100", "decode"): 0.5}))
    other = decode_tokens_per_second(gpu, w, 1, 1, _calibrated({("L4", "decode"): 0.5, ("H100", "train"): 0.5}))
    assert base is not None and half is not None and other is not None
    assert half.batch == base.batch and half.step_seconds == pytest.approx(2 * base.step_seconds)
    assert half.tokens_per_second < base.tokens_per_second
    assert other == base
    t_base = training_tokens_per_second(gpu, w, 1, 1, 1, False, CostModelSettings(), 8)
    t_fast = training_tokens_per_second(gpu, w, 1, 1, 1, False, _calibrated({("H100", "train"): 2.0}), 8)
    assert t_base is not None and t_fast is not None
    assert t_fast.tokens_per_second == pytest.approx(2 * t_base.tokens_per_second)  # one GPU: no collectives
    r0 = phase_rates(gpu, w, 16, CostModelSettings())
    r1 = phase_rates(gpu, w, 16, _calibrated({("H100", "decode"): 0.5, ("H100", "prefill"): 3.0, ("H100", "train"): 2.0}))
    assert (r1.decode, r1.prefill, r1.train) == pytest.approx((0.5 * r0.decode, 3 * r0.prefill, 2 * r0.train))


FAST = PlannerSettings(compute_baselines=False)
JOB = make_job(size="1.5B", budget=200.0)
CLUSTER = make_cluster([("h800", "H800", 8, 2, False), ("h20", "H20", 8, 2, False)])


def _rollout_by_pool(p: Plan) -> dict[str, float]:
    out: dict[str, float] = {}
    for g in p.rollout_groups():
        out[g.pool] = out.get(g.pool, 0.0) + g.tokens_per_second
    return out


def test_without_factors_the_plan_is_unchanged() -> None:
    base = plan(JOB, CLUSTER, FAST)
    unit = plan(JOB, CLUSTER, replace(FAST, cost=_calibrated({("H20", "decode"): 1.0, ("H800", "train"): 1.0})))
    assert isinstance(base, Plan) and isinstance(unit, Plan)
    assert replace(unit, solve_seconds=0.0) == replace(base, solve_seconds=0.0)


def test_halving_decode_on_a_gpu_type_lowers_its_rollout_and_moves_rollout_elsewhere() -> None:
    base = plan(JOB, CLUSTER, FAST)
    slow = plan(JOB, CLUSTER, replace(FAST, cost=_calibrated({("H20", "decode"): 0.5})))
    assert isinstance(base, Plan) and isinstance(slow, Plan)
    b, s = _rollout_by_pool(base), _rollout_by_pool(slow)
    assert s["h20"] < b["h20"]
    assert s.get("h800", 0.0) > b.get("h800", 0.0)  # rollout moved onto the other GPU type
    assert slow.tokens_per_second < base.tokens_per_second
    faster = plan(JOB, CLUSTER, replace(FAST, cost=_calibrated({("H20", "decode"): 2.0})))
    assert isinstance(faster, Plan) and faster.tokens_per_second > base.tokens_per_second
