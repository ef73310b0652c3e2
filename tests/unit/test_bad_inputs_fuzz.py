"""Fuzzing the CLI's loaders with hypothesis: whatever a file holds, the result is a parsed model or the project's
`InputError` (one sentence) — never another exception — and it comes back in bounded time (hypothesis' deadline,
set generously; no timing assertion of our own).

Three kinds of input: arbitrary text and bytes (the reader and the YAML/JSON parser), random documents of the right
shape (the models, with numbers drawn from every kind including .inf, .nan, huge integers and booleans), and the
good example files with one value replaced.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hexrl.commands._inputs import InputError, load_gpu_catalog, load_inventory, load_job

ROOT = Path(__file__).resolve().parents[2]
GOOD_JOB: dict[str, Any] = yaml.safe_load((ROOT / "manifests/examples/rljob.yaml").read_text())
GOOD_INVENTORY: dict[str, Any] = yaml.safe_load((ROOT / "manifests/clusters/small.yaml").read_text())

FUZZ = settings(max_examples=150, deadline=5_000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])

numbers = st.one_of(
    st.integers(), st.integers(min_value=-(10**30), max_value=10**30), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.sampled_from([0, -1, 1, 2**63, 10**400, "Infinity", "-inf", "NaN", "1e400", "", None]),
)
scalars = st.one_of(numbers, st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                           max_size=4), max_leaves=12)


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _dump(doc: Any) -> str:
    """YAML the way a user would write it; non-finite floats come out as .inf/.nan, huge integers as digits."""
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def _load_all(path: Path) -> None:
    """Every loader on the same file: each either parses or raises InputError."""
    for loader in (load_job, load_inventory, load_gpu_catalog):
        try:
            loader(path)
        except InputError as exc:
            assert str(exc) and "Traceback" not in str(exc)


def _set(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(doc))
    node = out
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value
    return out


JOB_FIELDS = [
    "spec.budget.maxCostPerHour", "spec.model.shape.parameters", "spec.model.shape.layers", "spec.model.shape.vocab",
    "spec.algorithm.groupSize", "spec.algorithm.promptsPerStep", "spec.algorithm.learningRate",
    "spec.generation.maxNewTokens", "spec.generation.meanNewTokens", "spec.generation.temperature",
    "spec.staleness.maxPolicyLag", "spec.placement.spot.onDemandRolloutFloor", "spec.checkpoint.everySteps",
    "spec.weightSync.chunkMb", "apiVersion", "kind", "metadata.name", "spec",
]
INVENTORY_FIELDS = [
    "interPoolGBps", "pools.0.nodes", "pools.0.gpusPerNode", "pools.1.pricePerGpuHour",
    "pools.1.preemptionsPerNodeHour", "pools.0.interNodeGBps", "pools.0.gpuMemoryGB", "pools.0.spot", "pools.0.gpu",
    "apiVersion", "kind", "pools",
]


@FUZZ
@given(text=st.text(max_size=400))
def test_any_text_parses_or_is_refused(tmp_path: Path, text: str) -> None:
    _load_all(_write(tmp_path, "text.yaml", text))


@FUZZ
@given(data=st.binary(max_size=400))
def test_any_bytes_parse_or_are_refused(tmp_path: Path, data: bytes) -> None:
    _load_all(_write(tmp_path, "bytes.yaml", data))


@FUZZ
@given(doc=values)
def test_any_structure_as_yaml_or_json_parses_or_is_refused(tmp_path: Path, doc: Any) -> None:
    _load_all(_write(tmp_path, "doc.yaml", _dump(doc)))
    try:
        text = json.dumps(doc)  # JSON with NaN/Infinity literals, as Python writes it
    except ValueError:
        return
    _load_all(_write(tmp_path, "doc.json", text))


@FUZZ
@given(field=st.sampled_from(JOB_FIELDS), value=values)
def test_a_job_with_one_value_replaced_parses_or_names_the_problem(tmp_path: Path, field: str, value: Any) -> None:
    path = _write(tmp_path, "job.yaml", _dump(_set(GOOD_JOB, field, value)))
    try:
        job = load_job(path)
    except InputError as exc:
        assert str(path) in str(exc)
        return
    # Accepted: then every number in it is finite and no true/false stands for a number.
    for number in _numbers(job.spec.model_dump()):
        assert math.isfinite(number)


@FUZZ
@given(field=st.sampled_from(INVENTORY_FIELDS), value=values)
def test_an_inventory_with_one_value_replaced_parses_or_names_the_problem(tmp_path: Path, field: str, value: Any) -> None:
    path = _write(tmp_path, "inv.yaml", _dump(_set(GOOD_INVENTORY, field, value)))
    try:
        cluster = load_inventory(path)
    except InputError as exc:
        assert str(path) in str(exc)
        return
    for pool in cluster.pools:
        assert isinstance(pool.gpus_per_node, int) and not isinstance(pool.gpus_per_node, bool)
        for number in (pool.price_per_gpu_hour, pool.inter_node_gbps, pool.preemptions_per_node_hour):
            assert number is None or math.isfinite(number)


@FUZZ
@given(gpu=st.sampled_from(["H100", "L4", "NEW-GPU"]), fields=st.dictionaries(
    st.sampled_from(["tflopsBf16", "hbmGB", "hbmTBps", "intraNodeGBps", "interNodeGBps", "priceOnDemand", "priceSpot"]),
    numbers, max_size=7))
def test_catalog_overrides_are_finite_and_positive_or_refused(tmp_path: Path, gpu: str, fields: dict[str, Any]) -> None:
    doc = _set(GOOD_INVENTORY, "catalog", {gpu: fields})
    path = _write(tmp_path, "inv.yaml", _dump(doc))
    try:
        load_inventory(path)
    except InputError:
        return
    for wire, value in fields.items():
        assert not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
        assert value > 0 or (value == 0 and wire.startswith("price"))


def _numbers(tree: Any) -> list[float]:
    out: list[float] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, int | float) and not isinstance(node, bool):
            out.append(float(node))
    return out


@FUZZ
@given(rows=st.lists(st.fixed_dictionaries({"time": values, "pool": st.sampled_from(["l4-spot", "h100-ondemand", "x"])},
                                           optional={"node": scalars, "event": st.sampled_from(["preempt", "return", "x"])}),
                     max_size=5),
       as_csv=st.booleans())
@example(rows=[{"time": 10**400, "pool": "l4-spot"}], as_csv=False)  # once an OverflowError from float()
def test_a_trace_parses_or_is_refused_with_exit_1(tmp_path: Path, rows: list[dict[str, Any]], as_csv: bool) -> None:
    """`hexrl simulate --trace`: events, or the command's own clear exit (status 1) — never another exception."""
    import typer

    from hexrl.commands.simulate import _load_trace
    from hexrl.sched import parse_inventory

    cluster = parse_inventory(GOOD_INVENTORY)
    if as_csv:
        text = "time,pool,node,event\n" + "".join(
            f"{r['time']},{r['pool']},{r.get('node', '')},{r.get('event', '')}\n" for r in rows)
        path = _write(tmp_path, "trace.csv", text)
    else:
        path = _write(tmp_path, "trace.yaml", _dump({"events": rows}))
    try:
        events = _load_trace(path, cluster)
    except typer.Exit as exc:
        assert exc.exit_code == 1
        return
    assert all(math.isfinite(e.time_s) and e.time_s >= 0 for e in events)
