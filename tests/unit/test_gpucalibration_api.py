"""The GPUCalibration API: the committed CRD is what the models generate, structural, cluster-scoped, with
printer columns a platform team reads; the models refuse what cannot be a factor."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from test_crd_generated import _walk
from typer.testing import CliRunner

from hexrl.api import gpucalibration as gc
from hexrl.api.crd import CALIBRATION_FILENAME, calibration_crd, calibration_crd_yaml
from hexrl.cli import app

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_calibration_crd_matches_the_models() -> None:
    for where in (ROOT / "crds", ROOT / "charts" / "hexrl" / "crds"):
        assert (where / CALIBRATION_FILENAME).read_text() == calibration_crd_yaml(), f"{where}: run `make crds chart`"


def test_the_check_command_fails_when_the_calibration_crd_drifts(tmp_path: Path) -> None:
    assert CliRunner().invoke(app, ["crds", "generate", "--out", str(tmp_path)]).exit_code == 0
    target = tmp_path / CALIBRATION_FILENAME
    target.write_text(target.read_text().replace("scope: Cluster", "scope: Namespaced"))
    result = CliRunner().invoke(app, ["crds", "generate", "--out", str(tmp_path), "--check"])
    assert result.exit_code == 1 and "make crds" in result.output


def test_the_calibration_crd_is_cluster_scoped_structural_and_has_useful_columns() -> None:
    doc = calibration_crd()
    assert doc["spec"]["scope"] == "Cluster" and doc["spec"]["names"]["kind"] == "GPUCalibration"
    version = doc["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Learning", "Cells", "Factors", "Updated", "Age"]
    schema = version["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "$defs"} & node.keys(), path
        assert "type" in node, f"{path} has no type"
    spec = schema["properties"]["spec"]
    assert spec["properties"]["learning"]["default"] is True
    assert "exists_one" in spec["x-kubernetes-validations"][0]["rule"]
    assert "default" in schema["x-kubernetes-validations"][0]["rule"]
    assert yaml.safe_load(calibration_crd_yaml()) == doc


@pytest.mark.parametrize("factor", [0, -1.0, 1e9])
def test_a_pinned_factor_must_be_a_positive_sane_number(factor: float) -> None:
    with pytest.raises(ValidationError, match="factor"):
        gc.PinnedFactor(gpu="H20", phase="decode", factor=factor)


def test_an_empty_object_means_learning_with_nothing_pinned() -> None:
    obj = gc.GPUCalibration.model_validate({"metadata": {"name": "default"}})
    assert obj.spec.learning is True and obj.spec.pinned == []
