"""The committed CRD is exactly what the models generate, and it is a structural schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from hexrl.api import models as m
from hexrl.api.crd import FILENAME, crd, crd_yaml, peering_crds
from hexrl.cli import app

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "crds" / FILENAME


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key in ("properties",):
            for name, child in node.get(key, {}).items():
                out += _walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            out += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_committed_crd_matches_models() -> None:
    assert COMMITTED.exists(), "crds/rljobs.hexrl.dev.yaml is missing: run `make crds`"
    assert COMMITTED.read_text() == crd_yaml(), "the committed CRD drifted from hexrl.api.models: run `make crds`"


def test_check_command_fails_on_drift(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_text(crd_yaml().replace("minimum: 0", "minimum: 1", 1))
    result = CliRunner().invoke(app, ["crds", "generate", "--out", str(tmp_path), "--check"])
    assert result.exit_code == 1
    assert "make crds" in result.output and "-" in result.output


def test_check_command_passes_when_current(tmp_path: Path) -> None:
    assert CliRunner().invoke(app, ["crds", "generate", "--out", str(tmp_path)]).exit_code == 0
    assert CliRunner().invoke(app, ["crds", "generate", "--out", str(tmp_path), "--check"]).exit_code == 0


def test_schema_is_structural(schema: dict[str, Any]) -> None:
    for path, node in _walk(schema):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "$defs"} & node.keys(), path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("additionalProperties") is not False, path


def test_preserve_unknown_fields_only_where_kopf_keeps_state(schema: dict[str, Any]) -> None:
    preserved = [p for p, n in _walk(schema) if n.get("x-kubernetes-preserve-unknown-fields")]
    assert preserved == [".status.kopf"]


def test_every_cel_rule_of_the_models_is_in_the_schema(schema: dict[str, Any]) -> None:
    in_schema = {v["rule"] for _, n in _walk(schema) for v in n.get("x-kubernetes-validations", [])}
    models = [c for c in vars(m).values() if isinstance(c, type) and issubclass(c, m._Model)]
    rules = {r["rule"] for c in models for r in c.cel_rules}
    assert rules, "the models declare CEL rules"
    assert rules <= in_schema


def test_constraints_carried_over(schema: dict[str, Any]) -> None:
    spec = schema["properties"]["spec"]
    lag = spec["properties"]["staleness"]["properties"]["maxPolicyLag"]
    assert (lag["type"], lag["minimum"], lag["maximum"]) == ("integer", 0, 64)
    lr = spec["properties"]["algorithm"]["properties"]["learningRate"]
    assert lr["minimum"] == 0 and lr["exclusiveMinimum"] is True
    assert spec["properties"]["algorithm"]["properties"]["name"]["enum"] == [a.value for a in m.AlgorithmName]
    assert set(spec["required"]) == {"model", "generation", "budget"}
    # Object sections with Python defaults are defaulted by the API server too.
    assert spec["properties"]["algorithm"]["default"] == {}
    conds = schema["properties"]["status"]["properties"]["conditions"]
    assert conds["x-kubernetes-list-map-keys"] == ["type"]


def test_names_columns_and_subresource() -> None:
    obj = crd()
    names = obj["spec"]["names"]
    assert names["shortNames"] == ["rlj"] and "hexrl" in names["categories"]
    version = obj["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Phase", "GPUs", "Tokens/s", "$/h", "Staleness", "Reward", "Age"]
    status_schema = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    for col in version["additionalPrinterColumns"][:-1]:
        node = status_schema
        for part in col["jsonPath"].removeprefix(".status.").split("."):
            node = node["properties"][part]  # every column points at a field of the status schema
        assert node["type"] == col["type"], col


def test_yaml_round_trips() -> None:
    assert yaml.safe_load(crd_yaml()) == crd()


def test_peering_crds_match_the_manifest_the_chart_ships() -> None:
    """`hexrl operator --prepare` installs kopf's peering CRDs from code: the same documents as the manifest."""
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "operator" / "peering.yaml").read_text())
            if d and d["kind"] == "CustomResourceDefinition"]
    assert peering_crds() == docs
