"""Datasets from files: JSONL, Parquet and a directory of Parquet shards through the `datasets` library, the
column mapping, errors as sentences, the seeded per-epoch order, the epochs limit and the coordinator's cursor
across a checkpoint-style restore."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hexrl.api.dataspec import DatasetSpec, PromptSpec
from hexrl_workers.coordinator.core import CoordinatorCore, CoordinatorSettings
from hexrl_workers.data import (
    DatasetError,
    DatasetExhausted,
    FileDataset,
    check_prompt_template,
    dataset_from_spec,
    make_dataset,
    make_prompt,
)

pytestmark = pytest.mark.workers

RECORDS = [{"question": f"What is {i} + {i}?", "answer": f"#### {2 * i}", "level": f"Level {i % 5 + 1}", "uid": f"q{i}"}
           for i in range(20)]


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _parquet(path: Path, records: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


MAPPING = {"prompt": "question", "answer": "answer", "id": "uid", "metadata": ["level"]}


def _spec(path: Path | str, **kw) -> DatasetSpec:
    return DatasetSpec.model_validate({"path": str(path), "columns": MAPPING, **kw})


def _in_file_order(ds) -> list[str]:
    return [ds.record(i).text for i in range(ds.records)]


@pytest.mark.parametrize("layout", ["jsonl", "parquet", "parquet-shards", "glob"])
def test_each_format_loads_every_record_with_the_column_mapping(tmp_path, layout):
    if layout == "jsonl":
        path = _jsonl(tmp_path / "train.jsonl", RECORDS)
    elif layout == "parquet":
        path = _parquet(tmp_path / "train.parquet", RECORDS)
    else:
        (tmp_path / "shards").mkdir()
        for k in range(3):  # shards of 7, 7 and 6 records; file names sort in order
            _parquet(tmp_path / "shards" / f"train-{k:05d}.parquet", RECORDS[7 * k:7 * k + 7])
        path = tmp_path / "shards" if layout == "parquet-shards" else tmp_path / "shards" / "train-*.parquet"
    ds = FileDataset(_spec(path, shuffle=False), job_seed=0)
    assert ds.records == len(RECORDS)
    assert _in_file_order(ds) == [r["question"] for r in RECORDS]
    ex = ds.record(3)
    assert (ex.text, ex.answer, ex.metadata) == ("What is 3 + 3?", "#### 6", {"level": "Level 4", "id": "q3"})


def test_the_prompt_carries_the_metadata_and_an_old_prompt_answer_file_still_loads(tmp_path):
    ds = FileDataset(_spec(_jsonl(tmp_path / "t.jsonl", RECORDS), shuffle=False), job_seed=0)
    assert make_prompt(ds, 1).metadata == {"level": "Level 2", "id": "q1"}
    old = _jsonl(tmp_path / "old.jsonl", [{"prompt": "1+1=", "answer": "2"}, {"prompt": "2+2="}])
    legacy = make_dataset("ignored", str(old), 3)  # the old (name, path, seed) call, no answer in one record
    assert sorted((legacy.get(i).text, legacy.get(i).answer) for i in range(2)) == [("1+1=", "2"), ("2+2=", "")]
    no_answers = make_dataset("ignored", str(_jsonl(tmp_path / "q.jsonl", [{"prompt": "3+3="}])), 0)
    assert no_answers.get(0).answer == ""


def _error(spec: DatasetSpec) -> str:
    with pytest.raises(DatasetError) as info:
        FileDataset(spec, job_seed=0)
    return str(info.value)


def test_errors_are_sentences_naming_the_problem(tmp_path):
    good = _jsonl(tmp_path / "good.jsonl", RECORDS)
    assert "does not exist" in _error(_spec(tmp_path / "missing.jsonl"))
    assert "matches no files" in _error(_spec(tmp_path / "nothing-*.parquet"))
    (tmp_path / "empty-dir").mkdir()
    assert "without .jsonl, .json or .parquet files" in _error(_spec(tmp_path / "empty-dir"))
    csv = tmp_path / "train.csv"
    csv.write_text("question,answer\n1,2\n")
    assert "format of" in _error(_spec(csv)) and "dataset.format" in _error(_spec(csv))
    (tmp_path / "empty.jsonl").write_text("")
    assert "is empty" in _error(_spec(tmp_path / "empty.jsonl"))
    msg = _error(DatasetSpec.model_validate({"path": str(good), "columns": {"prompt": "problem"}}))
    assert "dataset.columns.prompt names column 'problem'" in msg and "'question'" in msg and "'answer'" in msg
    msg = _error(DatasetSpec.model_validate({"path": str(good), "columns": {"prompt": "question", "answer": "sol"}}))
    assert "dataset.columns.answer names column 'sol'" in msg
    assert "dataset.columns.metadata names column 'topic'" in _error(
        _spec(good, columns={**MAPPING, "metadata": ["topic"]}))
    numbers = _jsonl(tmp_path / "numbers.jsonl", [{"question": 7, "answer": "1"}])
    assert "record 0 has a int in column 'question'" in _error(_spec(numbers, columns={"prompt": "question"}))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "a", "answer": "1"}\n{"question": \n')
    assert "cannot read" in _error(_spec(broken, columns={"prompt": "question"}))
    as_parquet = _error(_spec(good, format="parquet"))
    assert "cannot read" in as_parquet and "dataset.format" in as_parquet


def test_an_unknown_built_in_name_lists_the_built_ins():
    with pytest.raises(DatasetError, match=r"unknown dataset.name 'gsm8k'.*arith-digits"):
        dataset_from_spec(DatasetSpec(name="gsm8k"), 0)


def test_same_seed_same_order_each_epoch_differs_and_no_shuffle_keeps_file_order(tmp_path):
    path = _parquet(tmp_path / "t.parquet", RECORDS)
    n = len(RECORDS)
    a, b = FileDataset(_spec(path), job_seed=5), FileDataset(_spec(path), job_seed=5)
    other = FileDataset(_spec(path, seed=6), job_seed=5)  # dataset.seed overrides the job's
    epoch0 = [a.get(i).text for i in range(n)]
    epoch1 = [a.get(i).text for i in range(n, 2 * n)]
    assert epoch0 == [b.get(i).text for i in range(n)]
    assert sorted(epoch0) == sorted(epoch1) == sorted(r["question"] for r in RECORDS)  # each epoch: every record
    assert epoch0 != epoch1
    assert epoch0 != [other.get(i).text for i in range(n)]
    plain = FileDataset(_spec(path, shuffle=False), job_seed=5)
    assert [plain.get(i).text for i in range(2 * n)] == [r["question"] for r in RECORDS] * 2


def test_the_epochs_limit_ends_the_stream(tmp_path):
    ds = FileDataset(_spec(_jsonl(tmp_path / "t.jsonl", RECORDS), epochs=2), job_seed=0)
    assert ds.prompt_count == 2 * len(RECORDS)
    ds.get(2 * len(RECORDS) - 1)
    with pytest.raises(DatasetExhausted):
        ds.get(2 * len(RECORDS))


def _core(dataset, prompts_per_step: int = 2) -> CoordinatorCore:
    return CoordinatorCore(CoordinatorSettings(prompts_per_step=prompts_per_step, group_size=2, max_policy_lag=1000),
                           dataset)


def test_an_exhausted_dataset_hands_out_no_new_prompts_and_is_reported(tmp_path):
    ds = FileDataset(_spec(_jsonl(tmp_path / "t.jsonl", RECORDS[:5]), epochs=1), job_seed=0)
    core = _core(ds, prompts_per_step=2)
    items, reason = core.dispatch("w", 100, now=0.0)
    assert len(items) == 5 and reason == "dataset-exhausted"
    assert core.dataset_exhausted
    assert sorted(i.prompt.text for i in items) == sorted(r["question"] for r in RECORDS[:5])
    assert core.dispatch("w", 100, now=1.0) == ([], "dataset-exhausted")
    assert not core.done  # five groups outstanding: two more batches can still be trained


def test_the_cursor_resumes_the_same_prompts_after_a_restore(tmp_path):
    path = _jsonl(tmp_path / "t.jsonl", RECORDS)
    spec = _spec(path, epochs=3)
    first = _core(dataset_from_spec(spec, 11))
    first.dispatch("w", 7, now=0.0)
    snap = json.loads(json.dumps(first.snapshot()))  # as the trainer's checkpoint stores it
    expected = [i.prompt for i in first.dispatch("w", 30, now=1.0)[0]]
    resumed = _core(dataset_from_spec(spec, 11))  # a new process: the files loaded again
    resumed.restore(snap)
    again = [i.prompt for i in resumed.dispatch("w", 50, now=2.0)[0]]
    # the 7 groups in flight at the snapshot come back first (one item per sample), then the stream goes on
    assert {p.prompt_id for p in again[:14]} == set(range(7))
    fresh = again[14:14 + len(expected)]
    assert len(fresh) == len(expected) == 30
    assert [(p.prompt_id, p.text, p.answer, p.metadata) for p in fresh] == \
        [(p.prompt_id, p.text, p.answer, p.metadata) for p in expected]


def test_the_prompt_template_is_checked_against_the_records_fields(tmp_path):
    ds = FileDataset(_spec(_jsonl(tmp_path / "t.jsonl", RECORDS)), job_seed=0)
    check_prompt_template(PromptSpec(template="[{level}] {prompt} ({id})"), ds)
    with pytest.raises(DatasetError, match=r"prompt.template uses \{topic\}.*\['id', 'level', 'prompt'\]"):
        check_prompt_template(PromptSpec(template="{topic}: {prompt}"), ds)
