"""Pure pieces: conditions, scaling hysteresis, the debouncing work queue, settings, plan codec."""

from __future__ import annotations

import asyncio
import time

import pytest
from k8s_helpers import hetero_nodes, make_plan

from hexrl.api import reasons
from hexrl.k8s import conditions as cond
from hexrl.k8s import plancodec, scaling
from hexrl.k8s.settings import OperatorSettings, ScalingSettings
from hexrl.k8s.snapshot import build_cluster, node_view
from hexrl.k8s.workqueue import WorkQueue

pytestmark = pytest.mark.unit


def test_condition_keeps_transition_time_unless_status_flips():
    c = cond.set_condition([], reasons.READY, "False", reasons.CHILDREN_PENDING, "waiting", 1, "T1")
    c = cond.set_condition(c, reasons.READY, "False", reasons.CHILDREN_PENDING, "waiting for rollout", 2, "T2")
    assert c[0]["lastTransitionTime"] == "T1" and c[0]["message"] == "waiting for rollout"
    assert c[0]["observedGeneration"] == 2
    c = cond.set_condition(c, reasons.READY, "True", reasons.CHILDREN_READY, "ok", 2, "T3")
    assert c[0]["lastTransitionTime"] == "T3"
    c = cond.set_condition(c, reasons.PLANNED, "True", reasons.PLAN_FOUND, "", 2, "T3")
    assert [x["type"] for x in c] == [reasons.PLANNED, reasons.READY]


@pytest.mark.parametrize(
    ("lag", "eta", "expect"),
    [(0.5, 4, reasons.WITHIN_BOUND), (3.5, 4, reasons.NEAR_BOUND), (4.5, 4, reasons.EXCEEDED_BOUND),
     (None, 4, reasons.NO_PROGRESS_YET)],
)
def test_staleness_condition(lag, eta, expect):
    progress = None if lag is None else {"observedStaleness": lag}
    assert cond.staleness_condition(progress, eta)[1] == expect


def test_scaling_needs_consecutive_polls_and_respects_cooldown():
    s = ScalingSettings(grow_after_polls=2, shrink_after_polls=2, cooldown_seconds=60)
    starving = {"trainerIdleFraction": 0.6, "observedStaleness": 0.2}
    near = {"trainerIdleFraction": 0.0, "observedStaleness": 3.8}
    state = scaling.ScaleState()
    d, state = scaling.observe(starving, 4, state, s, now=100)
    assert d == ""
    d, state = scaling.observe({"trainerIdleFraction": 0.0}, 4, state, s, now=101)  # streak broken
    assert d == "" and state.starved_polls == 0
    d, state = scaling.observe(starving, 4, state, s, now=102)
    d, state = scaling.observe(starving, 4, state, s, now=103)
    assert d == "grow"
    state = scaling.ScaleState(extra=1, last_change=103, last_direction="grow")
    d, state = scaling.observe(near, 4, state, s, now=110)
    d, state = scaling.observe(near, 4, state, s, now=111)
    assert d == ""  # cooling down after the grow
    d, state = scaling.observe(near, 4, state, s, now=200)
    assert d == "shrink"


def test_grow_prefers_spot_and_stays_within_budget():
    cluster = build_cluster([node_view(n, OperatorSettings()) for n in hetero_nodes()], [], None,
                            OperatorSettings()).cluster
    plan = make_plan()
    grown = scaling.grow(plan, cluster, max_cost_per_hour=plan.cost_per_hour + 100, spot_allowed=True)
    assert grown is not None and grown.replicas[-1].spot and grown.replicas[-1].gpu == "H20"
    assert grown.cost_per_hour > plan.cost_per_hour
    assert scaling.grow(plan, cluster, max_cost_per_hour=plan.cost_per_hour + 0.01, spot_allowed=True) is None
    assert scaling.shrink(grown, cluster).replicas == plan.replicas


def test_a_storm_of_requests_becomes_one_pass():
    ran: list[tuple[str, str]] = []

    async def main():
        q = WorkQueue(lambda k: ran.append(k), workers=2)
        q.start()
        for _ in range(100):
            q.request(("ns", "a"), 0.2, 1.0)
            q.request(("ns", "b"), 0.2, 1.0)
            await asyncio.sleep(0.002)
        deadline = time.monotonic() + 5
        while (q.pending() or len(ran) < 2) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await q.stop()

    asyncio.run(main())
    assert sorted(ran) == [("ns", "a"), ("ns", "b")]


def test_cap_bounds_the_wait_of_an_endless_storm_and_failures_retry():
    ran: list[float] = []
    fails = {"n": 1}

    def work(key):
        ran.append(time.monotonic())
        if fails["n"]:
            fails["n"] -= 1
            raise RuntimeError("boom")

    async def main():
        q = WorkQueue(work, workers=1)
        q.start()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:  # an event every 10 ms for 1 s, quiet period 0.3 s, cap 0.5 s
            q.request(("ns", "a"), 0.3, 0.5)
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 5
        while len(ran) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await q.stop()
        return t0

    t0 = asyncio.run(main())
    assert 0.4 < ran[0] - t0 < 0.8  # the cap, not the endless quiet period
    assert 2 <= len(ran) <= 5  # the failed pass was retried; the storm did not cause 100 passes


def test_settings_from_env_and_bad_values():
    s = OperatorSettings.from_env({
        "HEXRL_OPERATOR_DEBOUNCE_SECONDS": "2.5", "HEXRL_OPERATOR_POOL_LABEL_KEYS": "a/pool, b/pool",
        "HEXRL_OPERATOR_PRICE_OVERRIDES": '{"H20": 1.5}', "HEXRL_OPERATOR_STANDALONE": "true",
        "HEXRL_OPERATOR_SCALING_POLL_SECONDS": "3",
    })
    assert (s.watching.debounce_seconds, s.discovery.pool_label_keys, s.pricing.price_overrides, s.identity.standalone) == (
        2.5, ("a/pool", "b/pool"), {"H20": 1.5}, True)
    assert s.scaling.poll_seconds == 3.0
    with pytest.raises(ValueError, match="HEXRL_OPERATOR_DEBOUNCE_SECONDS"):
        OperatorSettings.from_env({"HEXRL_OPERATOR_DEBOUNCE_SECONDS": "soon"})


def test_plan_codec_roundtrip():
    plan = make_plan(trainer_nodes=("a", "b"))
    assert plancodec.loads(plancodec.dumps(plan)) == plan
    with pytest.raises(ValueError, match="malformed"):
        plancodec.loads('{"trainer": {}}')


def test_grow_prices_a_gpu_from_the_clusters_catalog_overrides():
    """A pool without a price of its own is priced from the catalog the cluster carries (chart value
    gpuCatalog), not only from the shipped one: a custom GPU must not look free or unaffordable."""
    from dataclasses import replace

    from hexrl.sched.catalog import lookup_gpu

    cluster = build_cluster([node_view(n, OperatorSettings()) for n in hetero_nodes()], [], None,
                            OperatorSettings()).cluster
    unpriced = tuple(replace(p, price_per_gpu_hour=None) for p in cluster.pools)
    h20 = lookup_gpu("H20")
    assert h20 is not None
    dear = replace(h20, price_on_demand=h20.price_on_demand * 10, price_spot=h20.price_spot * 10)
    plan = make_plan()
    budget = plan.cost_per_hour + 2 * h20.price_spot  # affords an H20 at the shipped price, not at 10×
    shipped = scaling.grow(plan, replace(cluster, pools=unpriced), max_cost_per_hour=budget, spot_allowed=True)
    assert shipped is not None and shipped.replicas[-1].gpu == "H20"
    overridden = replace(cluster, pools=unpriced, gpu_overrides=(dear,))
    grown = scaling.grow(plan, overridden, max_cost_per_hour=budget, spot_allowed=True)
    assert grown is None or grown.replicas[-1].gpu != "H20"


def test_kopf_diff_base_is_built_for_rljobs_only():
    import kopf

    from hexrl.k8s.handlers import JobsOnlyDiffBase

    store = JobsOnlyDiffBase(prefix="hexrl.dev", key="last-handled-configuration")
    pod = kopf.Body({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
                     "spec": {"containers": [{"name": "c"}]}})
    job = kopf.Body({"apiVersion": "hexrl.dev/v1alpha1", "kind": "RLJob", "metadata": {"name": "j"},
                     "spec": {"staleness": {"maxPolicyLag": 2}}, "status": {"phase": "Running"}})
    assert store.build(body=pod) == {}
    essence = store.build(body=job)
    assert essence["spec"] == {"staleness": {"maxPolicyLag": 2}} and "status" not in essence


def test_progress_is_read_from_the_coordinator_pod_ip_by_default():
    from k8s_helpers import FakeApi

    from builders import job_pod, running
    from hexrl.k8s.handlers import Operator, progress_url
    from hexrl.k8s.snapshot import pod_view

    op = Operator(OperatorSettings(), FakeApi())
    try:
        assert progress_url(op, "default", "math") is None  # no coordinator pod with an IP yet
        coordinator = job_pod("math-coordinator-7d9f", role="coordinator", status={**running(ready=False),
                                                                                  "podIP": "10.244.1.7"})
        op.store.put_pod(pod_view(coordinator))  # not ready (e.g. its dataset is missing): still polled
        assert progress_url(op, "default", "math") == "http://10.244.1.7:8000/v1/progress"
        via_service = Operator(OperatorSettings().with_values(
            progress_url_template="http://{name}-coordinator.{namespace}.svc:{port}/v1/progress"), FakeApi())
        assert progress_url(via_service, "research", "math") == "http://math-coordinator.research.svc:8000/v1/progress"
        via_service.reconciler.close()  # type: ignore[union-attr]
    finally:
        op.reconciler.close()  # type: ignore[union-attr]
