"""Planner invariants, cost-model sanity statements from issue 3, replan, views and the CLI's bad input."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import pytest
import yaml
from sched_helpers import make_cluster, make_job
from typer.testing import CliRunner

from hexrl.api import reasons
from hexrl.cli import app
from hexrl.sched import (
    DEFAULT_CATALOG,
    Infeasible,
    Plan,
    plan,
    plan_summary,
    plan_to_json,
    replan,
    replan_or_plan,
    replanning,
)
from hexrl.sched.costmodel import (
    CostModelSettings,
    Workload,
    decode_tokens_per_second,
    training_tokens_per_second,
)
from hexrl.sched.settings import PlannerSettings

pytestmark = pytest.mark.unit

HETERO = make_cluster([("h800", "H800", 8, 3, False), ("h20", "H20", 8, 3, True)])
FAST = PlannerSettings(compute_baselines=False)


def check_invariants(p: Plan, job, cluster):
    cat = DEFAULT_CATALOG
    pools = {q.name: q for q in cluster.pools}
    used: dict[str, int] = {}
    for node, g in zip(p.trainer.nodes, p.trainer.gpus_per_node, strict=True):
        used[node] = used.get(node, 0) + g
    assert sum(p.trainer.gpus_per_node) == p.trainer.gpus
    for r in p.replicas:
        for node in r.nodes:
            used[node] = used.get(node, 0) + r.tensor_parallel
        assert len({n for n in r.nodes}) == r.pipeline_parallel  # TP inside a node, one stage per node
    nodes = {n.name: n for n in cluster.nodes}
    for node, g in used.items():
        assert g <= nodes[node].gpus_free, f"{node}: {g} GPUs used of {nodes[node].gpus_free}"
    for r in p.replicas:
        assert all(nodes[n].pool == r.pool and nodes[n].gpu == r.gpu for n in r.nodes)
        w = Workload.from_spec(job)
        assert decode_tokens_per_second(cat.get(r.gpu), w, r.tensor_parallel, r.pipeline_parallel, CostModelSettings()) is not None
    t = p.trainer
    assert all(nodes[n].pool == t.pool for n in t.nodes)
    assert training_tokens_per_second(
        cat.get(t.gpu), Workload.from_spec(job), t.data_parallel, t.tensor_parallel, t.pipeline_parallel, t.fsdp,
        CostModelSettings(), pools[t.pool].gpus_per_node,
    ) is not None
    if job.budget.max_cost_per_hour is not None:
        assert p.cost_per_hour <= job.budget.max_cost_per_hour * (1 + 1e-9)
    price = sum(
        (cat.get(pools[nodes[n].pool].gpu).price(pools[nodes[n].pool].spot)) * g for n, g in used.items()
    )
    assert p.cost_per_hour == pytest.approx(price, rel=1e-6)
    if job.placement.spot.trainer == "forbidden":
        assert not pools[t.pool].spot
    assert 0 <= p.staleness_predicted <= job.staleness.max_policy_lag
    assert p.tokens_per_second <= min(p.rollout_tokens_per_second, p.training_tokens_per_second) * (1 + 1e-9)


@pytest.mark.parametrize("size", ["0.5B", "1.5B", "7B", "14B"])
@pytest.mark.parametrize("eta", [0, 1, 4])
def test_invariants_on_plans(size, eta):
    job = make_job(size=size, budget=150, eta=eta)
    p = plan(job, HETERO, FAST)
    assert isinstance(p, Plan), p
    check_invariants(p, job, HETERO)
    assert p.solver_status == "Optimal" and p.solver == "HiGHS"


def test_decode_of_7b_on_h100_is_hbm_bound_at_small_batch():
    w = Workload.from_spec(make_job(size="7B"))
    s = replace(CostModelSettings(), max_sequences_per_replica=8)
    e = decode_tokens_per_second(DEFAULT_CATALOG.get("H100"), w, 1, 1, s)
    assert e is not None and e.batch == 8 and e.bound == "hbm"


def test_hbm_rich_gpu_wins_decode_per_dollar_and_loses_training_per_dollar():
    cat = DEFAULT_CATALOG.with_overrides(
        {
            "BW": {"tflopsBf16": 148, "hbmGB": 96, "hbmTBps": 4.0, "intraNodeGBps": 450, "interNodeGBps": 200,
                   "priceOnDemand": 1.85, "priceSpot": 0.9},
            "FL": {"tflopsBf16": 756, "hbmGB": 80, "hbmTBps": 2.0, "intraNodeGBps": 200, "interNodeGBps": 400,
                   "priceOnDemand": 5.28, "priceSpot": 2.6},
        }
    )
    s = CostModelSettings()
    for size in ("1.5B", "7B"):
        w = Workload.from_spec(make_job(size=size))
        bw, fl = cat.get("BW"), cat.get("FL")
        dec = [decode_tokens_per_second(g, w, 1, 1, s).tokens_per_second / g.price_on_demand for g in (bw, fl)]
        trn = [training_tokens_per_second(g, w, 8, 1, 1, True, s, 8).tokens_per_second / (8 * g.price_on_demand) for g in (bw, fl)]
        assert dec[0] > dec[1], f"{size}: decode per $ {dec}"
        assert trn[0] < trn[1], f"{size}: training per $ {trn}"


@pytest.mark.parametrize("size", ["1.5B", "7B"])
def test_larger_eta_never_lowers_throughput(size):
    values = []
    for eta in range(0, 9):
        p = plan(make_job(size=size, budget=150, eta=eta, prompts=8), HETERO, FAST)
        assert isinstance(p, Plan)
        values.append(p.tokens_per_second)
    assert all(b >= a * (1 - 1e-6) for a, b in itertools.pairwise(values)), values
    assert values[-1] > values[0]  # the gate does bind at η = 0 with a small batch


def test_more_budget_never_lowers_throughput():
    prev = 0.0
    for budget in (20, 40, 80, 160, 320):
        p = plan(make_job(size="1.5B", budget=budget), HETERO, FAST)
        assert isinstance(p, Plan)
        assert p.tokens_per_second >= prev * (1 - 1e-6)
        prev = p.tokens_per_second


def test_heterogeneous_beats_homogeneous_baselines_on_same_budget():
    p = plan(make_job(size="7B", budget=150, spot_trainer="allowed"), HETERO)
    assert isinstance(p, Plan)
    feasible = [b for b in p.baselines if b.feasible]
    assert feasible and all(p.tokens_per_second >= b.tokens_per_second * (1 - 1e-6) for b in feasible)
    assert all(b.cost_per_hour <= 150 + 1e-6 for b in feasible)


def test_min_cost_mode_reaches_target_cheaper_than_max_mode():
    target = 20000.0
    p = plan(make_job(size="1.5B", budget=None, target=target), HETERO, FAST)
    assert isinstance(p, Plan) and p.tokens_per_second >= target * (1 - 1e-9)
    q = plan(make_job(size="1.5B", budget=150), HETERO, FAST)
    assert p.cost_per_hour < q.cost_per_hour


def test_trainer_stays_off_spot_and_floor_holds():
    cl = make_cluster([("od", "H800", 8, 2, False), ("spot", "H20", 8, 4, True)])
    job = make_job(size="1.5B", budget=200, floor=0.5)
    p = plan(job, cl, FAST)
    assert isinstance(p, Plan) and p.trainer.pool == "od"
    od = sum(r.tokens_per_second for r in p.replicas if not r.spot)
    assert od >= 0.5 * p.tokens_per_second * (1 - 1e-6)


# ------------------------------------------------------------------------------------ infeasible


def test_budget_too_small_says_what_it_affords():
    r = plan(make_job(size="14B", budget=3), make_cluster([("h20", "H20", 8, 2, False)]), FAST)
    assert isinstance(r, Infeasible) and r.reason == reasons.BUDGET_TOO_SMALL
    assert "per rollout replica" in r.message and "affords 1 H20" in r.message


def test_model_that_fits_nowhere():
    r = plan(make_job(size="14B", budget=100), make_cluster([("l4", "L4", 1, 4, False)]), FAST)
    assert isinstance(r, Infeasible) and r.reason == reasons.MODEL_DOES_NOT_FIT
    assert "14.7B" in r.message and "L4" in r.message


def test_empty_cluster_and_unknown_allow_list():
    from hexrl.sched import Cluster

    r = plan(make_job(), Cluster(pools=(), nodes=()), FAST)
    assert isinstance(r, Infeasible) and r.reason == reasons.NO_ELIGIBLE_GPUS
    r = plan(make_job(gpu_types=["B300"]), HETERO, FAST)
    assert isinstance(r, Infeasible) and r.reason == reasons.UNKNOWN_GPU_TYPE and "B300" in r.message


def test_unreachable_target_reports_the_best_reachable():
    r = plan(make_job(size="1.5B", budget=None, target=1e9), HETERO, FAST)
    assert isinstance(r, Infeasible) and r.reason == reasons.TARGET_UNREACHABLE
    assert "best this cluster reaches" in r.message


def test_plan_does_not_mutate_inputs():
    job = make_job()
    before_job, before_cluster = job.model_dump(), HETERO
    plan(job, HETERO, FAST)
    assert job.model_dump() == before_job and before_cluster == HETERO


# ------------------------------------------------------------------------------------------ replan


def _without(cluster, node_name):
    return replace(cluster, nodes=tuple(replace(n, going_away=True) if n.name == node_name else n for n in cluster.nodes))


def test_replan_after_spot_node_loss_keeps_trainer_and_most_replicas():
    job = make_job(size="1.5B", budget=150)
    p = plan(job, HETERO, FAST)
    assert isinstance(p, Plan)
    lost = next(r.nodes[0] for r in p.replicas if r.spot)
    after = _without(HETERO, lost)
    q = replan(job, after, p, FAST)
    assert isinstance(q, Plan)
    check_invariants(q, job, after)
    assert q.trainer.nodes == p.trainer.nodes
    assert not any(lost in r.nodes for r in q.replicas)
    kinds = {(c.kind, c.role) for c in q.changes}
    assert (("kept", "trainer") in kinds or ("resized", "trainer") in kinds) and ("removed", "rollout") in kinds
    survivors = [r for r in p.replicas if lost not in r.nodes]
    assert sum(1 for r in survivors if r in q.replicas) >= len(survivors) * 0.8


def test_replan_moves_trainer_when_its_node_goes():
    job = make_job(size="1.5B", budget=150)
    p = plan(job, HETERO, FAST)
    after = _without(HETERO, p.trainer.nodes[0])
    q = replan(job, after, p, FAST)
    assert isinstance(q, Plan) and p.trainer.nodes[0] not in q.trainer.nodes
    assert any(c.kind == "moved" and c.role == "trainer" for c in q.changes)


def test_replan_or_plan_is_the_least_change_replan_when_one_exists():
    job = make_job(size="1.5B", budget=150)
    p = plan(job, HETERO, FAST)
    lost = next(r.nodes[0] for r in p.replicas if r.spot)
    after = _without(HETERO, lost)
    q = replan_or_plan(job, after, p, FAST)
    assert isinstance(q, Plan) and q.changes  # a fresh plan would list no changes
    assert replace(q, solve_seconds=0.0) == replace(replan(job, after, p, FAST), solve_seconds=0.0)


def test_replan_or_plan_falls_back_to_a_fresh_plan_when_the_replan_is_infeasible(monkeypatch):
    """The operator's fallback: a re-plan that cannot be placed must not leave the job without a plan."""
    job = make_job(size="1.5B", budget=150)
    p = plan(job, HETERO, FAST)
    after = _without(HETERO, p.trainer.nodes[0])
    refused = Infeasible(reasons.NO_ELIGIBLE_GPUS, "placement failed: scripted")
    monkeypatch.setattr(replanning, "replan", lambda *args, **kwargs: refused)
    q = replan_or_plan(job, after, p, FAST)
    fresh = plan(job, after, FAST)
    assert isinstance(q, Plan) and not q.changes
    assert replace(q, solve_seconds=0.0) == replace(fresh, solve_seconds=0.0)


# ------------------------------------------------------------------------------------------- views


def test_json_view_has_the_stable_keys_and_status_summary():
    p = plan(make_job(size="7B", budget=150, spot_trainer="allowed"), HETERO)
    d = plan_to_json(p)
    for k in ("feasible", "reason", "tokensPerSecond", "samplesPerSecond", "costPerHour", "solveSeconds",
              "bottleneck", "trainer", "rollout", "stalenessPredicted", "homogeneousBaselines", "message",
              "dollarsPerMillionTokens", "changes"):
        assert k in d
    assert {"gpu", "pool", "replicas", "gpusPerReplica", "nodes"} <= set(d["rollout"][0])
    assert {"gpu", "tokensPerSecond", "costPerHour"} <= set(d["homogeneousBaselines"][0])
    json.dumps(d)
    s = plan_summary(p)
    assert s.gpus == p.gpus and s.trainer.gpus == p.trainer.gpus and s.predicted_tokens_per_second == p.tokens_per_second
    assert plan_to_json(Infeasible(reasons.BUDGET_TOO_SMALL, "x"))["feasible"] is False


# ---------------------------------------------------------------------------------------------- CLI

INV = {
    "apiVersion": "hexrl.dev/v1alpha1", "kind": "ClusterInventory",
    "pools": [{"name": "h800", "gpu": "H800", "gpusPerNode": 8, "nodes": 2},
              {"name": "h20", "gpu": "H20", "gpusPerNode": 8, "nodes": 2, "spot": True}],
}


def _job_doc(**budget):
    spec = make_job(size="1.5B").wire()
    spec["budget"] = budget or {"maxCostPerHour": 100}
    return {"apiVersion": "hexrl.dev/v1alpha1", "kind": "RLJob", "metadata": {"name": "t"}, "spec": spec}


def _run(tmp_path, inv, job, *extra):
    (tmp_path / "inv.yaml").write_text(inv if isinstance(inv, str) else yaml.safe_dump(inv))
    (tmp_path / "job.yaml").write_text(job if isinstance(job, str) else yaml.safe_dump(job))
    return CliRunner().invoke(app, ["plan", "-i", str(tmp_path / "inv.yaml"), "-j", str(tmp_path / "job.yaml"), *extra])


def test_cli_json_feasible(tmp_path):
    r = _run(tmp_path, INV, _job_doc(), "--format", "json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["feasible"] and d["tokensPerSecond"] > 0 and d["trainer"]["gpu"] in ("H800", "H20")


def test_cli_table_and_replan(tmp_path):
    after = json.loads(json.dumps(INV))
    after["pools"][1]["nodes"] = 1
    (tmp_path / "after.yaml").write_text(yaml.safe_dump(after))
    r = _run(tmp_path, INV, _job_doc(), "--replan-after", str(tmp_path / "after.yaml"))
    assert r.exit_code == 0, r.output
    assert "Plan" in r.stdout and "trainer" in r.stdout


def test_cli_infeasible_exit_3(tmp_path):
    r = _run(tmp_path, INV, _job_doc(maxCostPerHour=0.5), "--format", "yaml")
    assert r.exit_code == 3, r.output
    assert yaml.safe_load(r.stdout)["reason"] == reasons.BUDGET_TOO_SMALL


@pytest.mark.parametrize(
    ("inv", "job", "needle"),
    [
        ({**INV, "pools": [{**INV["pools"][0], "gpu": "X9"}]}, None, "pools[0].gpu 'X9' is not in the GPU catalog"),
        ("pools: [unclosed", None, "not valid YAML"),
        (INV, "spec: [1", "not valid YAML"),
        (INV, {"apiVersion": "hexrl.dev/v1alpha1", "kind": "RLJob", "spec": {"budget": {"maxCostPerHour": 0}}},
         "spec.model"),
        (INV, "zero-budget", "greater than 0"),
        ({"apiVersion": "hexrl.dev/v1alpha1", "kind": "ClusterInventory", "pools": []}, None, "pools must not be empty"),
        ({"pools": []}, None, "kind is missing"),
        (INV, {"kind": "Pod"}, "expected RLJob"),
    ],
)
def test_cli_bad_input_exit_1_without_traceback(tmp_path, inv, job, needle):
    if job == "zero-budget":
        job = _job_doc(maxCostPerHour=0)
    r = _run(tmp_path, inv, job if job is not None else _job_doc())
    assert r.exit_code == 1, r.output
    assert needle in r.output and "Traceback" not in r.output


def test_cli_missing_file(tmp_path):
    r = CliRunner().invoke(app, ["plan", "-i", str(tmp_path / "nope.yaml"), "-j", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 1 and "cannot read the inventory file" in r.output


def test_replan_after_losing_any_node_places_cleanly():
    """Re-planning keeps old replicas in place only where largest-first packing still works."""
    cl = make_cluster(
        [("a", "H800", 8, 3, False), ("b", "H20", 8, 4, True), ("c", "L40S", 4, 3, True), ("d", "A100-80G", 8, 2, False)],
        inter_pool_gbps=25,
    )
    job = make_job(size="7B", budget=300, prompts=128)
    p = plan(job, cl, FAST)
    assert isinstance(p, Plan)
    check_invariants(p, job, cl)
    for victim in [n.name for n in cl.nodes]:
        after = _without(cl, victim)
        q = replan(job, after, p, FAST)
        assert isinstance(q, Plan), f"{victim}: {q}"
        check_invariants(q, job, after)
        assert all(victim not in r.nodes for r in q.replicas) and victim not in q.trainer.nodes
        full = plan(job, after, FAST)
        assert q.tokens_per_second >= 0.9 * full.tokens_per_second


def test_trainer_takes_fewest_whole_nodes_in_one_zone():
    from hexrl.sched.placement import place_trainer

    cl = make_cluster([("a", "H800", 8, 4, False)])
    nodes, per_node = place_trainer(cl, "a", 12, 1, {"a": 400.0})
    assert len(nodes) == 2 and sorted(per_node) == [4, 8]
