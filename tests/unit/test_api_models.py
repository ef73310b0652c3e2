"""The RLJob models accept the example job and reject every invalid example, naming the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from builders import rljob
from hexrl.api.models import RLJob

ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((ROOT / "manifests" / "examples" / "invalid").glob("*.yaml"))


def expected_field(path: Path) -> str:
    m = re.search(r"^# expect: (\S+)$", path.read_text(), re.MULTILINE)
    assert m, f"{path.name} needs an '# expect: <field path>' comment"
    return m[1]


def test_enough_invalid_examples() -> None:
    assert len(INVALID) >= 12


def test_example_job_is_valid() -> None:
    job = RLJob.model_validate(yaml.safe_load((ROOT / "manifests" / "examples" / "rljob.yaml").read_text()))
    assert job.spec.staleness.max_policy_lag == 4
    assert job.spec.budget.max_cost_per_hour == 180


EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
NUMBER_AS_TEXT = re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][0-9]+$")
"""What YAML 1.2 (kubectl) reads as a number but YAML 1.1 (PyYAML, and so most Python users) as a string."""


def strings_that_look_like_numbers(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings_that_look_like_numbers(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings_that_look_like_numbers(v)]
    return [node] if isinstance(node, str) and NUMBER_AS_TEXT.match(node) else []


@pytest.mark.parametrize("path", EXAMPLES + INVALID, ids=lambda p: p.name)
def test_example_numbers_are_numbers_to_every_yaml_reader(path: Path) -> None:
    """`1.54e9` is a number to kubectl but a string to PyYAML: a user who edits an example in Python and
    applies it gets a schema error. The examples write exponents with a sign (`1.54e+9`)."""
    for document in yaml.safe_load_all(path.read_text()):
        assert not strings_that_look_like_numbers(document), f"{path.name}: write the exponent with a sign"


def test_builder_job_is_valid_and_overrides_apply() -> None:
    job = RLJob.model_validate(rljob(staleness__maxPolicyLag=2, budget={"targetTokensPerSecond": 5000}))
    assert job.spec.staleness.max_policy_lag == 2
    assert job.spec.budget.target_tokens_per_second == 5000 and job.spec.budget.max_cost_per_hour is None


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_example_rejected_naming_the_field(path: Path) -> None:
    """The same files the API server must reject (tests/e2e/test_api_crd.py) fail pydantic validation too."""
    want = expected_field(path)
    with pytest.raises(ValidationError) as info:
        RLJob.model_validate(yaml.safe_load(path.read_text()))
    errors = info.value.errors()
    locs = [".".join(str(p) for p in e["loc"]) for e in errors]
    # A field error points at the field; a cross-field rule at the object that holds the fields; a rule on
    # the whole object names the field in its message.
    assert any(
        loc == want or (want.startswith(loc + ".") and loc not in ("", "spec")) or (loc and loc.startswith(want))
        or (not loc and want in e["msg"])
        for loc, e in zip(locs, errors, strict=True)
    ), f"{path.name}: expected an error at {want}, got {locs}"


def test_wire_round_trip_uses_camel_case() -> None:
    job = RLJob.model_validate(rljob())
    wire = job.wire()
    assert wire["spec"]["staleness"] == {"maxPolicyLag": 4}
    assert RLJob.model_validate(wire) == job


@pytest.mark.parametrize("name", ["grpo", "rloo", "dr_grpo"])
def test_every_estimator_needs_a_group(name: str) -> None:
    RLJob.model_validate(rljob(algorithm__name=name, algorithm__groupSize=2))
    with pytest.raises(ValidationError, match="groupSize must be at least 2"):
        RLJob.model_validate(rljob(algorithm__name=name, algorithm__groupSize=1))


def test_ppo_is_refused_with_what_to_use_instead() -> None:
    """ppo was accepted and silently ran GRPO (with groupSize 1 it learned nothing): it needs a critic."""
    with pytest.raises(ValidationError, match=r"needs a value critic.*use grpo, rloo or dr_grpo"):
        RLJob.model_validate(rljob(algorithm__name="ppo", algorithm__groupSize=1))
