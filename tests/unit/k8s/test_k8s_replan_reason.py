"""When a change of the cluster is worth a planner call for a job (`replanpolicy.replan_reason`).

The bench's 20 jobs arriving together used to make 25 re-plans (130 MILP solves): every job re-planned whenever
another job's pods joined one of its nodes, though they only took GPUs its plan left free."""

from __future__ import annotations

from dataclasses import replace

import pytest
from k8s_helpers import make_plan

from hexrl.k8s.replanpolicy import plan_basis, replan_reason
from hexrl.sched.types import Cluster, NodeInfo, PoolInfo

pytestmark = pytest.mark.unit

PLAN = make_plan()  # trainer 8 GPUs on h800-ondemand-0; rollout 2 GPUs on h20-spot-0, 1 on h20-spot-1


def cluster(**changes: dict) -> Cluster:
    """Two pools of two 8-GPU nodes; `changes` maps a node name to NodeInfo fields to override."""
    nodes = [NodeInfo(f"h800-ondemand-{i}", "h800-ondemand", "H800", 8) for i in range(2)]
    nodes += [NodeInfo(f"h20-spot-{i}", "h20-spot", "H20", 8, spot=True) for i in range(2)]
    nodes = [replace(n, **changes.get(n.name, {})) for n in nodes if changes.get(n.name) != {"gone": True}]
    pools = (PoolInfo("h800-ondemand", "H800", 8), PoolInfo("h20-spot", "H20", 8, spot=True))
    return Cluster(pools=pools, nodes=tuple(nodes))


BASIS = plan_basis(cluster())


def test_nothing_changed_needs_no_planner_call():
    assert replan_reason(BASIS, cluster(), PLAN) == ""


def test_other_jobs_filling_the_free_part_of_a_shared_node_do_not_matter():
    # the plan uses 2 of h20-spot-0's 8 GPUs: another job taking the other 6 breaks nothing
    assert replan_reason(BASIS, cluster(**{"h20-spot-0": {"gpus_used_by_others": 6}}), PLAN) == ""


def test_losing_capacity_the_plan_does_not_use_does_not_matter():
    busy = {"h800-ondemand-1": {"going_away": True}, "h20-spot-1": {"gpus_used_by_others": 7}}
    assert replan_reason(BASIS, cluster(**busy), PLAN) == ""
    assert replan_reason(BASIS, cluster(**{"h800-ondemand-1": {"gone": True}}), PLAN) == ""


def test_a_node_of_the_plan_that_no_longer_fits_or_goes_away_matters():
    assert "h20-spot-0" in replan_reason(BASIS, cluster(**{"h20-spot-0": {"gpus_used_by_others": 7}}), PLAN)
    assert "h800-ondemand-0" in replan_reason(BASIS, cluster(**{"h800-ondemand-0": {"going_away": True}}), PLAN)
    assert "gone" in replan_reason(BASIS, cluster(**{"h20-spot-1": {"gone": True}}), PLAN)


def test_capacity_appearing_matters_even_for_a_job_without_a_plan():
    busy = plan_basis(cluster(**{"h800-ondemand-1": {"gpus_used_by_others": 8}}))
    assert "capacity appeared" in replan_reason(busy, cluster(), PLAN)
    assert "capacity appeared" in replan_reason(busy, cluster(), None)
    # a node that flapped NotReady and came back is no gain over what the last answer saw
    flapped = plan_basis(cluster())
    assert replan_reason(flapped, cluster(**{"h800-ondemand-1": {"going_away": True}}), PLAN) == ""
    assert replan_reason(flapped, cluster(), PLAN) == ""


def test_a_new_node_a_pool_change_and_a_fresh_process_matter():
    bigger = replace(cluster(), nodes=(*cluster().nodes, NodeInfo("h20-spot-2", "h20-spot", "H20", 8, spot=True)))
    assert "capacity appeared" in replan_reason(BASIS, bigger, PLAN)
    repriced = replace(cluster(), pools=(cluster().pools[0], replace(cluster().pools[1], price_per_gpu_hour=0.5)))
    assert replan_reason(BASIS, repriced, PLAN) == "the pools changed"
    assert replan_reason(None, cluster(), PLAN) != ""
