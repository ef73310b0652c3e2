"""spec.evaluation: defaults, camelCase, the same refusal from pydantic and the CRD's CEL rule, and jobs
without it unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from hexrl.api.crd import spec_schema
from hexrl.api.evalspec import NOTHING_TO_GENERATE
from hexrl.api.models import RLJob

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "manifests" / "examples" / "rljob-tiny.yaml"


def _job(evaluation=None) -> dict:
    raw = yaml.safe_load(TINY.read_text())
    if evaluation is not None:
        raw["spec"]["evaluation"] = evaluation
    return raw


def test_defaults_and_camel_case():
    ev = RLJob.model_validate(_job({"everySteps": 10, "dataset": {"name": "arith-mod10"}})).spec.evaluation
    assert ev is not None and ev.enabled
    assert (ev.every_steps, ev.max_prompts, ev.k, ev.temperature, ev.greedy, ev.at_start) == (10, 64, 4, None, True, True)
    assert ev.dataset is not None and ev.dataset.name == "arith-mod10"
    # the held-out dataset goes on the wire with its own defaults filled in, as the coordinator reads it
    dataset = {"name": "arith-mod10", "format": "auto", "shuffle": True,
               "columns": {"prompt": "prompt", "answer": "answer", "metadata": []}}
    assert ev.wire() == {"everySteps": 10, "dataset": dataset, "maxPrompts": 64, "k": 4,
                         "greedy": True, "atStart": True}


def test_a_job_without_evaluation_has_none():
    assert RLJob.model_validate(_job()).spec.evaluation is None
    assert RLJob.model_validate(_job({"everySteps": 0})).spec.evaluation.enabled is False


def test_nothing_to_generate_is_refused_with_a_sentence():
    with pytest.raises(ValidationError) as err:
        RLJob.model_validate(_job({"everySteps": 5, "greedy": False, "k": 0}))
    assert NOTHING_TO_GENERATE in str(err.value)
    RLJob.model_validate(_job({"everySteps": 0, "greedy": False, "k": 0}))  # off: nothing to refuse


@pytest.mark.parametrize(("field", "value"), [("everySteps", -1), ("maxPrompts", 0), ("k", -1), ("temperature", 0),
                                              ("unknownField", 1)])
def test_out_of_range_fields_name_the_field(field, value):
    with pytest.raises(ValidationError) as err:
        RLJob.model_validate(_job({"everySteps": 5, field: value}))
    assert field in str(err.value)


def test_the_crd_carries_the_same_rule():
    ev = spec_schema()["properties"]["evaluation"]
    assert ev["x-kubernetes-validations"] == [{"rule": "self.everySteps == 0 || self.greedy || self.k > 0",
                                               "message": NOTHING_TO_GENERATE}]
    assert set(ev["properties"]["dataset"]["properties"]) >= {"name", "path"}
