"""GPU catalog lookups and inventory parsing: names, aliases, overrides and clear errors."""

from __future__ import annotations

import pytest

from hexrl.sched import (
    DEFAULT_CATALOG,
    InventoryError,
    UnknownGPUError,
    canonical_gpu_name,
    cluster_to_inventory,
    lookup_gpu,
    parse_inventory,
)

pytestmark = pytest.mark.unit

REQUIRED = ["H100", "H200", "H800", "H20", "A100-80G", "A100-40G", "L40S", "L4", "A10G", "RTX4090", "MI300X"]


def test_catalog_is_versioned_with_sources_and_complete():
    assert DEFAULT_CATALOG.version and DEFAULT_CATALOG.sources
    for name in REQUIRED:
        g = DEFAULT_CATALOG.get(name)
        assert g.tflops_bf16 > 0 and g.hbm_gb > 0 and g.hbm_tbps > 0
        assert g.intra_node_gbps > 0 and g.inter_node_gbps > 0
        assert 0 < g.price_spot < g.price_on_demand


def test_catalog_numbers_from_the_brief():
    h20, h800 = DEFAULT_CATALOG.get("H20"), DEFAULT_CATALOG.get("H800")
    assert (h20.tflops_bf16, h20.hbm_gb, h20.hbm_tbps, h20.price_on_demand) == (148, 96, 4.0, 1.85)
    assert (h800.tflops_bf16, h800.hbm_gb, h800.hbm_tbps, h800.price_on_demand) == (756, 80, 3.35, 5.28)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("NVIDIA-H100-80GB-HBM3", "H100"),
        ("nvidia-h100-80gb-hbm3", "H100"),
        ("NVIDIA-H100-80GB-HBM3-SHARED", "H100"),
        ("h20", "H20"),
        ("NVIDIA-H20", "H20"),
        ("NVIDIA-A100-SXM4-80GB", "A100-80G"),
        ("NVIDIA-A100-SXM4-40GB", "A100-40G"),
        ("a100_80g", "A100-80G"),
        ("NVIDIA-GeForce-RTX-4090", "RTX4090"),
        ("AMD-Instinct-MI300X", "MI300X"),
        ("NVIDIA-L40S", "L40S"),
        ("NVIDIA-L4", "L4"),
        ("NVIDIA-A10G", "A10G"),
        ("H2", None),
        ("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", None),
    ],
)
def test_lookup_by_name_alias_and_gfd_product(given, expected):
    assert canonical_gpu_name(given) == expected
    assert (lookup_gpu(given) is None) == (expected is None)


def test_unknown_gpu_error_lists_known_types():
    with pytest.raises(UnknownGPUError) as e:
        DEFAULT_CATALOG.get("B300")
    assert "B300" in str(e.value) and "H800" in str(e.value)


def test_overrides_return_a_new_catalog_and_leave_the_default_alone():
    cat = DEFAULT_CATALOG.with_overrides(
        {
            "h800": {"tflopsBf16": 989},
            "B200": {
                "tflopsBf16": 2250, "hbmGB": 192, "hbmTBps": 8, "intraNodeGBps": 900,
                "interNodeGBps": 400, "priceOnDemand": 6, "priceSpot": 3,
            },
        }
    )
    assert cat.get("H800").tflops_bf16 == 989
    assert DEFAULT_CATALOG.get("H800").tflops_bf16 == 756
    assert cat.get("b200").hbm_gb == 192 and "B200" not in DEFAULT_CATALOG


def test_a_new_type_must_be_complete():
    from hexrl.sched import CatalogError

    with pytest.raises(CatalogError, match=r"B200.*needs"):
        DEFAULT_CATALOG.with_overrides({"B200": {"tflopsBf16": 2250}})


@pytest.mark.parametrize(("value", "problem"), [
    (1.2, r"catalog\.H20\.trainMfu must be a fraction of peak in \(0, 1\], got 1\.2"),
    (0, r"catalog\.H20\.trainMfu must be a positive number, got 0"),
    ("high", r"catalog\.H20\.trainMfu must be a positive number, got 'high'"),
])
def test_a_measured_efficiency_override_is_a_fraction_of_peak(value, problem):
    from hexrl.sched import CatalogError

    with pytest.raises(CatalogError, match=problem):
        DEFAULT_CATALOG.with_overrides({"H20": {"trainMfu": value}})


def test_a_measured_efficiency_drives_the_cost_model_for_that_type_only():
    from hexrl.sched.costmodel import CostModelSettings, train_mfu

    s = CostModelSettings()
    tuned = DEFAULT_CATALOG.with_overrides({"H20": {"trainMfu": 0.3, "efficiencySources": ["my-h20-run"]}})
    assert train_mfu(tuned.get("H20"), s) == 0.3 and tuned.get("H20").efficiency_sources == ("my-h20-run",)
    assert train_mfu(tuned.get("L40S"), s) == s.train_mfu
    with pytest.raises(Exception, match="efficiencySources must be a list of strings"):
        DEFAULT_CATALOG.with_overrides({"H20": {"efficiencySources": "my-h20-run"}})


def _inv(**pool_overrides):
    pool = {"name": "h800", "gpu": "H800", "gpusPerNode": 8, "nodes": 3}
    pool.update(pool_overrides)
    return {"apiVersion": "hexrl.dev/v1alpha1", "kind": "ClusterInventory", "pools": [pool]}


def test_parse_inventory_builds_named_nodes():
    doc = {
        "apiVersion": "hexrl.dev/v1alpha1",
        "kind": "ClusterInventory",
        "interPoolGBps": 2.5,
        "pools": [
            {"name": "h800-ondemand", "gpu": "NVIDIA-H800", "gpusPerNode": 8, "nodes": 3, "zone": "zone-a",
             "pricePerGpuHour": 5.0, "interNodeGBps": 5},
            {"name": "h20-spot", "gpu": "H20", "gpusPerNode": 4, "nodes": 2, "spot": True,
             "preemptionsPerNodeHour": 0.05, "gpuMemoryGB": 96},
        ],
    }
    c = parse_inventory(doc)
    assert [n.name for n in c.nodes] == ["h800-ondemand-0", "h800-ondemand-1", "h800-ondemand-2", "h20-spot-0", "h20-spot-1"]
    assert c.inter_pool_gbps == 2.5
    p0, p1 = c.pools
    assert p0.gpu == "H800" and p0.price_per_gpu_hour == 5.0 and p0.inter_node_gbps == 5 and p0.zone == "zone-a"
    assert p1.spot and p1.preemptions_per_node_hour == 0.05 and p1.gpu_memory_gb == 96
    assert all(n.spot for n in c.nodes_of("h20-spot")) and sum(n.gpus for n in c.nodes) == 32
    # round trip through the camelCase view
    again = parse_inventory(cluster_to_inventory(c))
    assert again == c


def test_inventory_catalog_section_overrides_types():
    doc = _inv()
    doc["catalog"] = {"H800": {"tflopsBf16": 989}}
    c = parse_inventory(doc)
    assert [g.tflops_bf16 for g in c.gpu_overrides] == [989]


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        (_inv(gpusPerNode=0), "pools[0].gpusPerNode must be a positive integer"),
        (_inv(gpusPerNode="eight"), "pools[0].gpusPerNode must be an integer"),
        (_inv(nodes=-1), "pools[0].nodes must be a non-negative integer"),
        (_inv(gpu="X9"), "pools[0].gpu 'X9' is not in the GPU catalog"),
        (_inv(colour="red"), "pools[0].colour is not a known field"),
        (_inv(spot="maybe"), "pools[0].spot must be true or false"),
        (_inv(pricePerGpuHour=-1), "pools[0].pricePerGpuHour must be a non-negative number"),
        (_inv(preemptionsPerNodeHour=0.1), "only spot pools are preempted"),
        (_inv(name="Bad_Name"), "pools[0].name must be a DNS label"),
        ({**_inv(), "kind": "Cluster"}, "kind must be 'ClusterInventory'"),
        ({**_inv(), "pools": []}, "pools must not be empty"),
        ({"apiVersion": "hexrl.dev/v1alpha1", "kind": "ClusterInventory"}, "pools is required"),
        ({**_inv(), "interPoolGBps": 0}, "interPoolGBps must be a positive number"),
        ({**_inv(), "catalog": {"H800": {"tflopsBf16": "fast"}}}, "catalog.H800.tflopsBf16 must be a positive number"),
        ([1, 2], "must be a YAML mapping"),
        (None, "must be a YAML mapping"),
    ],
)
def test_bad_inventories_name_the_field(doc, needle):
    with pytest.raises(InventoryError) as e:
        parse_inventory(doc)
    assert needle in str(e.value)


def test_duplicate_pool_names():
    doc = _inv()
    doc["pools"].append(dict(doc["pools"][0]))
    with pytest.raises(InventoryError, match=r"pools\[1\].name 'h800' is used twice"):
        parse_inventory(doc)


def test_parse_inventory_does_not_mutate_its_input():
    import copy

    doc = _inv()
    before = copy.deepcopy(doc)
    parse_inventory(doc)
    assert doc == before
