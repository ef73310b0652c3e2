"""Online calibration in the operator (hexrl.k8s.calibrator and its use by the reconcile pass), against the
in-memory API fake; tests/e2e/operator/test_operator_calibration.py repeats the flow on a real API server."""

from __future__ import annotations

import pytest
from k8s_helpers import FakeApi, make_plan
from test_k8s_reconcile import World

from hexrl.api import reasons
from hexrl.api.models import RLJobSpec
from hexrl.k8s.calibrator import Calibrator
from hexrl.k8s.kubeapi import ApiError
from hexrl.k8s.settings import OperatorSettings
from hexrl.sched.costmodel import CostModelSettings
from hexrl.sched.onlinecalibration import predicted_work_rates

pytestmark = pytest.mark.unit
S = OperatorSettings()
KEY = ("GPUCalibration", "", "default")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _setup(world: World):
    """(spec, cluster, plan, predicted rates) of the world's job after its first pass."""
    world.pass_()
    mem = world.rec.memory(world.job["metadata"]["uid"])
    spec = RLJobSpec.model_validate(world.job["spec"])
    cluster = world.rec.planning.snapshot("default", "math", mem).cluster
    return spec, cluster, mem.plan, predicted_work_rates(spec, cluster, mem.plan, CostModelSettings())


def _progress(cells: dict[tuple[str, str], tuple[float, float]]) -> dict:
    return {"observedWork": [{"gpu": g, "phase": p, "tokens": n, "seconds": s} for (g, p), (n, s) in cells.items()]}


def _reads(rate: dict, factor: float, seconds: float, n: int) -> list[dict]:
    """n cumulative progress reads, `seconds` GPU-seconds apart, of work whose own term runs at `factor` × the
    predicted rate (and whose other terms take what the model says)."""
    per_token = {cell: 1 / (p.rate * factor) + p.other_seconds_per_token for cell, p in rate.items()}
    return [_progress({cell: (seconds * k / t, seconds * k) for cell, t in per_token.items()}) for k in range(n)]


def test_the_object_is_created_factors_move_with_evidence_and_are_written_once_per_interval():
    world, clock = World(), Clock()
    spec, cluster, plan, rate = _setup(world)
    cal = Calibrator(world.api, S, clock=clock)
    cal.load()
    assert world.api.objects[KEY]["spec"] == {}  # created empty: the spec is the platform team's
    reads = _reads(rate, 0.1, 10.0, 4)
    assert cal.observe("u", "default/math", spec, cluster, plan, reads[0]) == []  # the first read is a base
    found = cal.observe("u", "default/math", spec, cluster, plan, reads[1])
    assert {(o.gpu, o.phase) for o in found} == set(rate) and all(o.work_seconds == 10.0 for o in found)
    one = cal.profile().factor("H20", "decode")
    assert 0.1 < one < 0.2
    assert cal.flush() is True and cal.flush() is False  # at most one write per poll interval
    assert cal.flush(force=True) is False  # (forced, as on shutdown: only when something changed)
    clock.t += S.scaling.poll_seconds
    cal.observe("u", "default/math", spec, cluster, plan, reads[2])
    assert cal.profile().factor("H20", "decode") < one  # more evidence: closer to the measured 0.1
    assert cal.flush() is True
    status = world.api.objects[KEY]["status"]
    h20 = next(f for f in status["factors"] if (f["gpu"], f["phase"]) == ("H20", "decode"))
    assert h20["factor"] == pytest.approx(cal.profile().factor("H20", "decode"))
    assert h20["used"] == 2 and len(h20["recent"]) == 2 and h20["confidence"] > 0.9 and h20["pinned"] is False
    assert status["cells"] == 2 and "H20 decode 0.1" in status["summary"]


def test_the_fit_survives_a_restart_and_a_pinned_factor_wins():
    world, clock = World(), Clock()
    spec, cluster, plan, rate = _setup(world)
    first = Calibrator(world.api, S, clock=clock)
    for read in _reads(rate, 0.1, 10.0, 3):
        first.observe("u", "default/math", spec, cluster, plan, read)
    first.flush()
    again = Calibrator(world.api, S, clock=clock)  # a new operator process
    again.load()
    assert again.profile() == first.profile() and again.profile().factor("H800", "train") < 0.2
    world.api.objects[KEY]["spec"] = {"pinned": [{"gpu": "H20", "phase": "decode", "factor": 0.5}]}
    assert again.refresh_spec() is True
    assert again.profile().factor("H20", "decode") == 0.5  # pinned: never re-fitted
    assert again.profile().factor("H800", "train") == first.profile().factor("H800", "train")
    clock.t += S.scaling.poll_seconds
    again.flush()
    h20 = next(f for f in world.api.objects[KEY]["status"]["factors"] if f["gpu"] == "H20")
    assert (h20["factor"], h20["pinned"]) == (0.5, True) and h20["fitted"] < 0.2


def test_with_learning_off_new_observations_are_ignored():
    world = World()
    spec, cluster, plan, rate = _setup(world)
    cal = Calibrator(world.api, S)
    cal.load()
    world.api.objects[KEY]["spec"] = {"learning": False}
    cal.refresh_spec()
    for read in _reads(rate, 0.1, 10.0, 3):
        assert cal.observe("u", "default/math", spec, cluster, plan, read) == []
    assert not cal.profile()


class NoCrdApi(FakeApi):
    def create(self, obj):
        if obj["kind"] == "GPUCalibration":
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return super().create(obj)


def test_without_the_crd_calibration_works_in_memory_until_the_crd_appears():
    world, clock = World(), Clock()
    world.api.__class__ = NoCrdApi
    spec, cluster, plan, rate = _setup(world)
    cal = Calibrator(world.api, S, clock=clock)
    for read in _reads(rate, 0.1, 10.0, 2):
        cal.observe("u", "default/math", spec, cluster, plan, read)
    assert cal.profile().factor("H20", "decode") < 0.2
    assert cal.flush() is False and KEY not in world.api.objects
    world.api.__class__ = FakeApi  # the CRD is installed (e.g. it became Established after the operator started)
    clock.t += S.scaling.poll_seconds
    assert cal.flush() is True
    assert world.api.objects[KEY]["status"]["factors"][0]["used"] == 1  # what was learned meanwhile is kept


def _calibrate(world: World, factor: float, n: int = 3) -> list[bool]:
    _, _, _, rate = _setup(world)
    uid = world.job["metadata"]["uid"]
    return [world.rec.calibrate(uid, read) for read in _reads(rate, factor, 10.0, n)]


def test_a_material_move_posts_a_calibrated_event_and_keeps_a_plan_no_re_plan_beats():
    world = World()
    assert _calibrate(world, 0.1) == [False, True, False]  # news once; the pass consumes it
    world.planner.calls.clear()
    world.pass_()
    assert world.planner.calls == ["replan"]
    [event] = world.events(reasons.CALIBRATED)
    assert "H20 decode measured 0.1" in event["message"] and "× the catalog (confidence 0.9" in event["message"]
    assert "plan unchanged" in event["message"]
    status = world.status()["calibration"]
    assert status["predictedTokensPerSecond"] < 0.5 * status["catalogTokensPerSecond"]
    assert {(f["gpu"], f["phase"]) for f in status["factors"]} == {("H20", "decode"), ("H800", "train")}
    assert status["message"] == event["message"]
    world.pass_()
    assert len(world.events(reasons.CALIBRATED)) == 1  # said once


def test_a_re_plan_that_beats_the_recalibrated_plan_by_the_margin_is_deployed():
    world = World()
    _calibrate(world, 0.1)
    better = make_plan(rollout=(("h20-spot", "H20", "h20-spot-0", 1, True),) * 2 + (
        ("h20-spot", "H20", "h20-spot-1", 1, True),) * 4)
    world.planner.result = better
    world.pass_()
    [event] = world.events(reasons.CALIBRATED)
    assert "rollout re-planned" in event["message"], event["message"]
    mem = world.rec.memory(world.job["metadata"]["uid"])
    assert mem.plan == better
    assert any("after calibration" in e["message"] for e in world.events(reasons.REPLANNED))


def test_a_small_move_is_not_news():
    world = World()
    assert _calibrate(world, 1.05) == [False, False, False]
    world.pass_()
    assert world.events(reasons.CALIBRATED) == []


def test_the_event_names_only_the_roles_a_re_plan_moves():
    from dataclasses import replace

    from hexrl.k8s.planning import _roles_changed

    old = make_plan()
    faster = replace(old, trainer=replace(old.trainer, tokens_per_second=1.0))  # new predictions, same placement
    assert _roles_changed(old, faster) == "rollout"
    more = make_plan(rollout=(("h20-spot", "H20", "h20-spot-0", 1, True),) * 5)
    assert _roles_changed(old, more) == "rollout"
    moved = make_plan(trainer_nodes=("h800-ondemand-1",))
    assert _roles_changed(old, moved) == "trainer"


def _gauge(name: str, **labels: str) -> float | None:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels)


def test_the_factors_in_force_are_prometheus_gauges_and_a_pin_replaces_the_fitted_series():
    world, clock = World(), Clock()
    spec, cluster, plan, rate = _setup(world)
    cal = Calibrator(world.api, S, clock=clock)
    for read in _reads(rate, 0.1, 10.0, 3):
        cal.observe("u", "default/math", spec, cluster, plan, read)
    fitted = cal.profile().factor("H20", "decode")
    assert _gauge("hexrl_calibration_factor", gpu="H20", phase="decode", source="fitted") == pytest.approx(fitted)
    assert 0.9 < _gauge("hexrl_calibration_confidence", gpu="H20", phase="decode") <= 1.0
    assert _gauge("hexrl_calibration_observed_seconds", gpu="H20", phase="decode") == pytest.approx(20.0)
    world.api.objects[KEY]["spec"] = {"pinned": [{"gpu": "H20", "phase": "decode", "factor": 0.5}]}
    assert cal.refresh_spec() is True
    assert _gauge("hexrl_calibration_factor", gpu="H20", phase="decode", source="pinned") == 0.5
    assert _gauge("hexrl_calibration_factor", gpu="H20", phase="decode", source="fitted") is None
