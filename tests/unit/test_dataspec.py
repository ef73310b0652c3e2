"""spec.dataset and spec.prompt: where the files are read, which seed orders them, and sentences for bad fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hexrl.api.dataspec import DATA_MOUNT_DIR, DatasetSpec, PromptSpec
from hexrl.api.models import RLJobSpec

pytestmark = pytest.mark.unit


def _error(cls, **fields) -> str:
    with pytest.raises(ValidationError) as info:
        cls.model_validate(fields)
    return str(info.value)


def test_a_mounted_dataset_reads_its_path_under_the_data_dir():
    assert DatasetSpec(pvc="math", path="gsm8k/train.jsonl").resolved_path() == f"{DATA_MOUNT_DIR}/gsm8k/train.jsonl"
    assert DatasetSpec.model_validate({"configMap": "cm", "path": "t.jsonl"}).resolved_path("/mnt") == "/mnt/t.jsonl"
    assert DatasetSpec(path="/srv/train.parquet").resolved_path() == "/srv/train.parquet"  # in the image
    assert DatasetSpec().resolved_path() is None  # a built-in task


def test_the_dataset_seed_overrides_the_jobs():
    assert DatasetSpec().shuffle_seed(7) == 7
    assert DatasetSpec(seed=3).shuffle_seed(7) == 3


def test_bad_dataset_fields_are_refused_with_what_to_do():
    assert "at most one of pvc and configMap" in _error(DatasetSpec, pvc="a", configMap="b", path="t.jsonl")
    assert "dataset.path is required" in _error(DatasetSpec, pvc="a")
    assert "relative to /data" in _error(DatasetSpec, pvc="a", path="/data/t.jsonl")
    assert "format" in _error(DatasetSpec, path="t.csv", format="csv")
    assert "epochs" in _error(DatasetSpec, path="t.jsonl", epochs=0)


def test_a_prompt_template_must_be_a_format_string_with_named_fields():
    assert PromptSpec(template="{prompt}\nPut the final answer after ####. {{literal}}").template
    assert "not a valid format string" in _error(PromptSpec, template="{prompt")
    assert "positional field" in _error(PromptSpec, template="{} and {prompt}")
    assert "'auto' or 'none'" in _error(PromptSpec, chatTemplate="always")


def test_the_job_spec_carries_prompt_and_max_prompt_tokens_on_the_wire():
    spec = RLJobSpec.model_validate({
        "model": {"name": "m", "source": {"builtin": "tiny-random"},
                  "shape": {"parameters": 1e5, "layers": 2, "hiddenSize": 64, "kvHeads": 2, "headDim": 16, "vocab": 24}},
        "generation": {"promptTokens": 5, "maxNewTokens": 2, "meanNewTokens": 2, "maxPromptTokens": 64},
        "budget": {"maxCostPerHour": 1},
        "prompt": {"systemPrompt": "Be brief.", "chatTemplate": "none"},
        "dataset": {"pvc": "data", "path": "train.parquet", "columns": {"prompt": "problem", "answer": "solution",
                                                                          "metadata": ["level"]}},
    })
    wire = spec.wire()
    assert wire["prompt"]["systemPrompt"] == "Be brief." and wire["generation"]["maxPromptTokens"] == 64
    assert wire["dataset"]["columns"] == {"prompt": "problem", "answer": "solution", "metadata": ["level"]}
    assert RLJobSpec.model_validate(wire) == spec
