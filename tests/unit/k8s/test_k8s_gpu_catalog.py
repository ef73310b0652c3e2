"""GPU catalog overrides in the operator: settings (env/flag) → snapshot → planner (DESIGN.md §4, issue #6)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from k8s_helpers import hetero_nodes, ready_node
from typer.testing import CliRunner

from builders import rljob
from hexrl.api.models import RLJobSpec
from hexrl.cli import app
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import build_cluster, node_view
from hexrl.sched import plan
from hexrl.sched.catalog import DEFAULT_CATALOG, CatalogError
from hexrl.sched.types import Plan

pytestmark = pytest.mark.unit

B300_PRODUCT = "NVIDIA-B300-SXM6-288GB"
B300 = {
    "tflopsBf16": 2250, "hbmGB": 288, "hbmTBps": 8.0, "intraNodeGBps": 900, "interNodeGBps": 50,
    "priceOnDemand": 9.5, "priceSpot": 4.1, "aliases": ["B300-SXM6", B300_PRODUCT],
}


def b300_node(name: str = "b300-0") -> dict:
    node = ready_node(name, gpu="H100", pool_name="b300-pool")
    node["metadata"]["labels"]["nvidia.com/gpu.product"] = B300_PRODUCT  # what GPU feature discovery would say
    return node


def snapshot(nodes: list[dict], settings: OperatorSettings):
    return build_cluster([node_view(n, settings) for n in nodes], [], None, settings)


def test_unknown_product_becomes_a_pool_once_the_catalog_names_it():
    assert DEFAULT_CATALOG.canonical(B300_PRODUCT) is None  # the premise: the shipped catalog lacks it
    plain = snapshot([b300_node()], OperatorSettings())
    assert not plain.cluster.pools and B300_PRODUCT in plain.warnings[0] and "gpuCatalog" in plain.warnings[0]

    settings = OperatorSettings().with_values(gpu_catalog={"B300": B300})
    snap = snapshot([b300_node(), b300_node("b300-1")], settings)
    assert not snap.warnings
    (pool,) = snap.cluster.pools
    assert (pool.name, pool.gpu, pool.gpus_per_node) == ("b300-pool", "B300", 8)
    assert pool.price_per_gpu_hour == pytest.approx(9.5)  # from the override's priceOnDemand
    assert [s.name for s in snap.cluster.gpu_overrides] == ["B300"]
    assert snap.cluster.gpu_overrides[0].tflops_bf16 == pytest.approx(2250)


def test_price_map_and_node_label_still_win_over_catalog_prices():
    settings = OperatorSettings().with_values(gpu_catalog={"B300": B300}, price_overrides={"b300-pool": 7.0})
    assert snapshot([b300_node()], settings).cluster.pools[0].price_per_gpu_hour == pytest.approx(7.0)
    labelled = b300_node()
    labelled["metadata"]["labels"]["hexrl.dev/price-per-gpu-hour"] = "6.25"
    only_catalog = OperatorSettings().with_values(gpu_catalog={"B300": B300})
    assert snapshot([labelled], only_catalog).cluster.pools[0].price_per_gpu_hour == pytest.approx(6.25)


def test_an_overridden_tflops_changes_the_planners_throughput():
    """Doubling H800 TFLOPS through the settings must raise the trainer's predicted tokens/s."""
    job = RLJobSpec.model_validate(rljob(budget__maxCostPerHour=400)["spec"])
    base = OperatorSettings()
    h800 = DEFAULT_CATALOG.get("H800")
    fast = OperatorSettings().with_values(gpu_catalog={"H800": {"tflopsBf16": h800.tflops_bf16 * 2}})
    base_snap, fast_snap = snapshot(hetero_nodes(), base), snapshot(hetero_nodes(), fast)
    assert base_snap.cluster.gpu_overrides == ()
    assert fast_snap.cluster.gpu_overrides[0].tflops_bf16 == pytest.approx(h800.tflops_bf16 * 2)
    # The hardware the planner sees is otherwise identical (same pools, same prices).
    assert [(p.name, p.gpu, p.price_per_gpu_hour) for p in base_snap.cluster.pools] == [
        (p.name, p.gpu, p.price_per_gpu_hour) for p in fast_snap.cluster.pools]
    slow_plan, fast_plan = plan(job, base_snap.cluster), plan(job, fast_snap.cluster)
    assert isinstance(slow_plan, Plan) and isinstance(fast_plan, Plan)
    assert slow_plan.trainer.gpu == fast_plan.trainer.gpu == "H800"
    per_gpu = [p.trainer.tokens_per_second / (p.trainer.data_parallel * p.trainer.tensor_parallel
                                              * p.trainer.pipeline_parallel) for p in (slow_plan, fast_plan)]
    assert per_gpu[1] > 1.2 * per_gpu[0]


def test_catalog_is_built_once_per_override_set():
    a = OperatorSettings().with_values(gpu_catalog={"B300": B300})
    b = replace(a, log_level="DEBUG")
    assert a.catalog() is b.catalog()  # not rebuilt per node or per settings copy
    assert a.gpu_overrides() is b.gpu_overrides()
    assert OperatorSettings().catalog() is DEFAULT_CATALOG
    assert "B300" in a.catalog() and "B300" not in OperatorSettings().catalog()


def test_env_json_reaches_the_settings():
    s = OperatorSettings.from_env({"HEXRL_OPERATOR_GPU_CATALOG": json.dumps({"B300": B300, "H20": {"priceSpot": 0.9}})})
    assert s.catalog().get(B300_PRODUCT).name == "B300"
    assert s.catalog().get("H20").price_spot == pytest.approx(0.9)
    assert OperatorSettings.from_env({"HEXRL_OPERATOR_GPU_CATALOG": "{}"}).discovery.gpu_catalog == {}


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ({"H800": {"tflopsBf16": "fast"}}, ["H800", "tflopsBf16", "must be a positive number"]),
        ({"H800": {"tflops": 1}}, ["H800", "tflops", "not a GPU catalog field"]),
        ({"B300": {"tflopsBf16": 2250}}, ["B300", "new GPU type", "hbmGB"]),
        ({"B300": {**B300, "aliases": "B300-SXM6"}}, ["B300", "aliases", "list of strings"]),
        ({"H800": 5}, ["H800", "mapping"]),
        (["H800"], ["JSON object"]),
    ],
)
def test_bad_env_catalog_is_refused_naming_gpu_and_field(value, names):
    with pytest.raises(ValueError) as err:
        OperatorSettings.from_env({"HEXRL_OPERATOR_GPU_CATALOG": json.dumps(value)})
    assert "HEXRL_OPERATOR_GPU_CATALOG" in str(err.value)
    for name in names:
        assert name in str(err.value)


def test_bad_catalog_fails_at_construction():
    with pytest.raises(CatalogError, match=r"gpu_catalog\.H800\.hbmGB"):
        OperatorSettings().with_values(gpu_catalog={"H800": {"hbmGB": -1}})


def run_operator(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["operator", *args], env=env)


def test_cli_refuses_a_bad_catalog_in_the_environment():
    r = run_operator(env={"HEXRL_OPERATOR_GPU_CATALOG": '{"H800": {"tflopsBf16": -3}}'})
    assert r.exit_code == 1 and "HEXRL_OPERATOR_GPU_CATALOG" in r.output and "tflopsBf16" in r.output
    assert "Traceback" not in r.output


def test_cli_gpu_catalog_flag_refuses_bad_files(tmp_path):
    missing = run_operator("--gpu-catalog", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 1 and "does not exist" in missing.output
    listy = tmp_path / "list.yaml"
    listy.write_text("- H800\n")
    r = run_operator("--gpu-catalog", str(listy))
    assert r.exit_code == 1 and "mapping of GPU name" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("B300: {tflopsBf16: 2250}\n")
    r = run_operator("--gpu-catalog", str(bad))
    assert r.exit_code == 1 and "B300" in r.output and "hbmGB" in r.output and "Traceback" not in r.output
