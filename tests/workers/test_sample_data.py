"""The sample datasets under manifests/examples/data/: the committed files are what scripts/make_sample_data.py
generates, they load through the spec with the GSM8K and MATH column mappings, their worked answers are
consistent and pass the job's math reward, the held-out splits share no problem with training, and the example
job reads the GSM8K file from its ConfigMap."""

from __future__ import annotations

import importlib.util
import json
import re

import pyarrow.parquet as pq
import pytest
import yaml
from workers_builders import REPO

from hexrl.api.dataspec import DatasetSpec
from hexrl.api.models import RLJob
from hexrl_workers.data import FileDataset, check_prompt_template
from hexrl_workers.reward import extract_final_answer, math_answer

pytestmark = pytest.mark.workers

DATA = REPO / "manifests" / "examples" / "data"
GSM8K = {"prompt": "question", "answer": "answer"}
MATH = {"prompt": "problem", "answer": "solution", "metadata": ["level", "type"]}


def _generator():
    spec = importlib.util.spec_from_file_location("make_sample_data", REPO / "scripts" / "make_sample_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_files_are_what_the_generator_writes():
    gen = _generator()
    sets = gen.sample_sets()
    assert (DATA / "gsm8k-configmap.yaml").read_text() == gen.configmap_text(sets)
    for name, records in sets.items():
        if name.endswith(".jsonl"):
            assert (DATA / name).read_text() == gen.jsonl_text(records), name
        else:  # Parquet bytes carry the writer's version: compare the contents
            assert pq.read_table(DATA / name).to_pylist() == records, name


def _load(name: str, columns: dict) -> FileDataset:
    return FileDataset(DatasetSpec.model_validate({"path": str(DATA / name), "columns": columns, "shuffle": False}),
                       job_seed=0)


@pytest.mark.parametrize("split, count", [("train", 50), ("test", 12)])
def test_gsm8k_format_loads_and_its_answers_pass_the_math_reward(split, count):
    ds = _load(f"gsm8k-{split}.jsonl", GSM8K)
    assert ds.records == count
    for i in range(count):
        ex = ds.record(i)
        final = ex.answer.rsplit("\n", 1)[-1]
        assert re.fullmatch(r"#### -?\d+", final), final
        for expr, value in re.findall(r"<<([\d+\-*/ ]+)=(-?\d+)>>", ex.answer):  # calculator annotations hold
            assert eval(expr) == int(value), (expr, value)  # digits and + - * / only (matched above)
        assert math_answer(ex.answer, extract_final_answer(ex.answer)) == 1.0
        assert math_answer(ex.answer, str(int(final[5:]) + 1)) == 0.0


@pytest.mark.parametrize("split, count", [("train", 50), ("test", 12)])
def test_math_format_loads_with_level_and_type_and_its_answers_pass_the_math_reward(split, count):
    ds = _load(f"math-{split}.parquet", MATH)
    assert ds.records == count
    for i in range(count):
        ex = ds.record(i)
        assert re.fullmatch(r"Level [1-5]", ex.metadata["level"]) and ex.metadata["type"]
        boxed = extract_final_answer(ex.answer)
        assert boxed is not None and "\\boxed{" in ex.answer
        assert math_answer(ex.answer, boxed) == 1.0


def test_held_out_splits_share_no_problem_with_training():
    def texts(name: str, columns: dict) -> set[str]:
        ds = _load(name, columns)
        return {ds.record(i).text for i in range(ds.records)}

    assert not texts("gsm8k-train.jsonl", GSM8K) & texts("gsm8k-test.jsonl", GSM8K)
    assert not texts("math-train.parquet", MATH) & texts("math-test.parquet", MATH)


def test_the_example_job_reads_the_gsm8k_file_from_its_config_map(tmp_path):
    job = RLJob.model_validate(yaml.safe_load((REPO / "manifests" / "examples" / "rljob.yaml").read_text()))
    configmap = yaml.safe_load((DATA / "gsm8k-configmap.yaml").read_text())
    assert job.spec.dataset.config_map == configmap["metadata"]["name"]
    for key, text in configmap["data"].items():  # the files as the kubelet mounts them
        (tmp_path / key).write_text(text)
    ds = FileDataset(job.spec.dataset, job.spec.algorithm.seed, path=job.spec.dataset.resolved_path(str(tmp_path)))
    check_prompt_template(job.spec.prompt, ds)
    train = [json.loads(line) for line in (DATA / "gsm8k-train.jsonl").read_text().splitlines()]
    assert sorted(ds.get(i).text for i in range(ds.records)) == sorted(r["question"] for r in train)


def test_the_cpu_example_reads_the_gsm8k_sample_from_the_repository_root(monkeypatch):
    job = RLJob.model_validate(yaml.safe_load((REPO / "manifests" / "examples" / "rljob-gsm8k-tiny.yaml").read_text()))
    monkeypatch.chdir(REPO)  # `hexrl run` starts there
    ds = FileDataset(job.spec.dataset, job.spec.algorithm.seed)
    check_prompt_template(job.spec.prompt, ds)
    assert ds.records == 50 and job.spec.dataset.columns.prompt == "question"
