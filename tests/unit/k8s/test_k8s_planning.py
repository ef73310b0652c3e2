"""The planning part alone (`planning.Planning`): when it asks the planner, what it commits to the ledger,
how other jobs' plans reserve GPUs, and what it remembers of a no — through `plan_and_commit` and `scale`,
with a scripted planner and no API."""

from __future__ import annotations

import pytest
from k8s_helpers import hetero_nodes, make_plan, rljob

from hexrl.api.models import RLJobSpec
from hexrl.k8s import render, scaling
from hexrl.k8s.jobmemory import JobMemories, Trigger, spec_key
from hexrl.k8s.planning import Planning
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import node_view
from hexrl.k8s.store import Store
from hexrl.sched.types import Infeasible

pytestmark = pytest.mark.unit
S = OperatorSettings()
NO = Infeasible(reason="Unschedulable", message="no node has 8 free H800")


class Scripted:
    """Answers each call with the next scripted result; records (call, free GPUs per node it was shown)."""

    def __init__(self, *results):
        self.results = list(results)
        self.calls: list[tuple[str, dict[str, int]]] = []

    def _next(self, call, cluster):
        self.calls.append((call, {n.name: n.gpus_free for n in cluster.nodes}))
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]

    def plan(self, spec, cluster):
        return self._next("plan", cluster)

    def replan(self, current, cluster, spec, *, trainer_may_move=True):
        return self._next(f"replan(trainer_may_move={trainer_may_move})", cluster)


def setup(*results, settings=S):
    store = Store()
    for n in hetero_nodes():
        store.put_node(node_view(n, settings))
    planner = Scripted(*results)
    memories = JobMemories()
    planning = Planning(store, settings, memories, planner.plan, planner.replan)
    return planning, planner, memories, store


def ref(name="math"):
    return render.JobRef(name, "default", f"uid-{name}", 1)


def spec(**overrides):
    return RLJobSpec.model_validate({**rljob("math")["spec"], **overrides})


def deployed(mem, s):
    """What the apply part records after deploying: the spec key the plan was made for."""
    mem.stored.spec_key = spec_key(s)


def test_a_first_plan_is_committed_and_says_why_the_planner_was_asked():
    planning, planner, memories, _ = setup(make_plan())
    mem = memories.get("uid-math")
    commit = planning.plan_and_commit(ref(), spec(), mem)
    assert commit.decision.trigger is Trigger.FIRST and commit.decision.plan == make_plan()
    assert mem.plan == make_plan() and [c for c, _ in planner.calls] == ["plan"]


def test_an_unchanged_spec_and_cluster_do_not_ask_the_planner_again():
    planning, planner, memories, _ = setup(make_plan())
    mem = memories.get("uid-math")
    planning.plan_and_commit(ref(), spec(), mem)
    deployed(mem, spec())
    again = planning.plan_and_commit(ref(), spec(), mem)
    assert again.decision.trigger is None and again.decision.plan is mem.plan
    assert len(planner.calls) == 1


def test_a_spec_change_replans_and_may_move_the_trainer():
    planning, planner, memories, _ = setup(make_plan(), make_plan(trainer_nodes=("h800-ondemand-1",)))
    mem = memories.get("uid-math")
    planning.plan_and_commit(ref(), spec(), mem)
    deployed(mem, spec())
    changed = spec(budget={"maxCostPerHour": 500})
    commit = planning.plan_and_commit(ref(), changed, mem)
    assert commit.decision.trigger is Trigger.SPEC
    assert planner.calls[-1][0] == "replan(trainer_may_move=True)"
    assert mem.plan.trainer.nodes == ("h800-ondemand-1",)


def test_a_lost_node_replans_without_moving_a_surviving_trainer_and_counts_the_loss():
    planning, planner, memories, store = setup(make_plan(), make_plan(rollout=(("h20-spot", "H20", "h20-spot-0", 1, True),)))
    mem = memories.get("uid-math")
    planning.plan_and_commit(ref(), spec(), mem)
    deployed(mem, spec())
    store.drop_node("h20-spot-1")
    commit = planning.plan_and_commit(ref(), spec(), mem)
    assert commit.decision.trigger is Trigger.CLUSTER and commit.decision.lost == 1
    assert planner.calls[-1][0] == "replan(trainer_may_move=False)"


def test_another_jobs_committed_plan_holds_its_gpus_in_this_jobs_snapshot():
    planning, planner, memories, _ = setup(make_plan())
    planning.plan_and_commit(ref("a"), spec(), memories.get("uid-a"))
    planning.plan_and_commit(ref("b"), spec(), memories.get("uid-b"))
    first_view, second_view = planner.calls[0][1], planner.calls[1][1]
    assert first_view["h800-ondemand-0"] == 8 and second_view["h800-ondemand-0"] == 0
    assert second_view["h20-spot-1"] == first_view["h20-spot-1"] - 1


def test_a_no_without_a_running_plan_is_reported_and_not_asked_again_until_something_changes():
    planning, planner, memories, store = setup(NO)
    mem = memories.get("uid-math")
    first = planning.plan_and_commit(ref(), spec(), mem)
    assert first.decision.plan is None and first.decision.infeasible == NO
    repeat = planning.plan_and_commit(ref(), spec(), mem)
    assert repeat.decision.infeasible == NO and repeat.decision.trigger is None and len(planner.calls) == 1
    store.put_node(node_view(hetero_nodes()[0] | {"metadata": {**hetero_nodes()[0]["metadata"], "name": "h800-new",
                                                                "uid": "new"}}, S))
    planning.plan_and_commit(ref(), spec(), mem)
    assert len(planner.calls) == 2  # capacity appeared: worth asking again


def test_a_rejected_change_keeps_the_running_plan_and_remembers_the_no():
    planning, _, memories, _ = setup(make_plan(), NO)
    mem = memories.get("uid-math")
    planning.plan_and_commit(ref(), spec(), mem)
    deployed(mem, spec())
    commit = planning.plan_and_commit(ref(), spec(budget={"maxCostPerHour": 1}), mem)
    assert commit.decision.plan == make_plan() and commit.decision.infeasible is None
    assert mem.rejected_change == NO


def test_concurrent_planning_replans_a_job_whose_gpus_another_job_took_meanwhile():
    store = Store()
    for n in hetero_nodes():
        store.put_node(node_view(n, S))
    memories = JobMemories()
    views: list[dict[str, int]] = []
    moved = make_plan(trainer_nodes=("h800-ondemand-1",))

    def planner(s, cluster):
        views.append({n.name: n.gpus_free for n in cluster.nodes})
        if len(views) == 1:  # job a planned without a lock: job b commits the same trainer GPUs meanwhile
            planning.plan_and_commit(ref("b"), s, memories.get("uid-b"))
            return make_plan()
        return make_plan() if len(views) == 2 else moved

    planning = Planning(store, S.with_values(planning="concurrent"), memories, planner)
    commit = planning.plan_and_commit(ref("a"), spec(), memories.get("uid-a"))
    assert planning.conflicts == 1 and len(views) == 3
    assert views[2]["h800-ondemand-0"] == 0  # the re-plan saw b's committed trainer
    assert commit.decision.plan == moved == memories.get("uid-a").plan
    assert memories.get("uid-b").plan == make_plan()


def test_scale_grows_rollout_onto_free_spot_capacity_and_shrinks_only_what_it_added():
    planning, _, memories, _ = setup(make_plan())
    mem = memories.get("uid-math")
    planning.plan_and_commit(ref(), spec(), mem)
    grown, state = planning.scale(ref(), mem, spec(), "grow", scaling.ScaleState())
    assert grown is not None and len(grown.replicas) == 4 and state.extra == 1 and mem.plan is grown
    shrunk, state = planning.scale(ref(), mem, spec(), "shrink", state)
    assert shrunk is not None and len(shrunk.replicas) == 3 and state.extra == 0
    nothing, state = planning.scale(ref(), mem, spec(), "shrink", state)
    assert nothing is None and mem.plan is shrunk


def test_cluster_base_is_rebuilt_only_when_the_nodes_change():
    planning, _, _, store = setup(make_plan())
    first = planning.cluster_base(*store.nodes_versioned())
    assert planning.cluster_base(*store.nodes_versioned()) is first
    store.drop_node("h20-spot-2")
    assert planning.cluster_base(*store.nodes_versioned()) is not first
