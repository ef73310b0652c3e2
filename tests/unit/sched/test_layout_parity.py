"""Parity: every trainer and rollout layout the planner can emit is one the runtime executes.

For every GPU type of the catalog and several model shapes, every candidate in the planner's search space
(not only the chosen plan) is placed as the planner places it, turned into the trainer pods' layout, and
checked by the same `TrainerLayout.check` the trainer runs at start-up (world = DP×TP, TP inside a pod and
dividing the heads, no PP). Rollout candidates must have no PP and a TP the engine can split the heads
over. (tests/unit/k8s/test_k8s_render.py renders chosen plans into trainer pods and parses them back.)
"""

from __future__ import annotations

import pytest
from sched_helpers import SHAPES, make_cluster, make_job

from hexrl.api.trainerlayout import TrainerLayout
from hexrl.sched import DEFAULT_CATALOG, Infeasible, plan
from hexrl.sched.placement import PlacementError, place_trainer
from hexrl.sched.searchspace import build_search_space
from hexrl.sched.settings import PlannerSettings

pytestmark = pytest.mark.unit
SETTINGS = PlannerSettings(compute_baselines=False)


def _cases():
    for gpu in DEFAULT_CATALOG.names:
        for size in SHAPES:
            yield gpu, size


@pytest.mark.parametrize("gpu,size", list(_cases()))
def test_every_candidate_layout_is_executable(gpu, size):
    job = make_job(size, budget=None, target=1e9)
    cluster = make_cluster([("a", gpu, 8, 3, False), ("b", gpu, 4, 2, False)])
    built = build_search_space(job, cluster, SETTINGS)
    if isinstance(built, Infeasible):
        assert "memory" in built.message.lower() or built.reason, built
        return
    shape = job.model.shape
    bw = {p.info.name: p.inter_gbps for p in built.pools}
    checked = 0
    for m in built.train:
        try:
            _, gpus = place_trainer(cluster, m.pool.info.name, m.dp * m.pp, m.tp, bw)
        except PlacementError:
            continue
        layout = TrainerLayout(tuple(gpus), m.dp, m.tp, m.pp, m.fsdp)
        assert layout.problems(shape) == [], (gpu, size, layout.describe())
        checked += 1
    assert checked or not built.train
    heads = shape.attention_heads or shape.hidden_size // shape.head_dim
    for r in built.rollout:
        assert r.pp == 1, (gpu, size, r.tp, r.pp)
        assert heads % r.tp == 0 and (shape.kv_heads % r.tp == 0 or r.tp % shape.kv_heads == 0), (gpu, size, r.tp)


def test_a_model_no_node_holds_is_infeasible_not_pipelined():
    """A 14B model on 2×16 GB GPUs per node needs PP across nodes, which nothing executes."""
    job = make_job("14B", budget=None, target=1e9)
    cluster = make_cluster([("t4", "T4", 2, 4, False)])
    result = plan(job, cluster, SETTINGS)
    assert isinstance(result, Infeasible), result
