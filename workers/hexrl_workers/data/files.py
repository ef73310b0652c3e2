"""Records from the user's files: JSONL or Parquet, one file, a directory or a glob of shards.

The files are read by the `datasets` library (`load_dataset("json"|"parquet", data_files=...)`) into Arrow
tables cached under a temporary directory of this process, never from the network (offline mode is forced
before the library is imported). The column mapping (spec.dataset.columns) picks the prompt, answer, id and
metadata columns, which are checked once at load: every failure is a `DatasetError` sentence naming the
file or column and what to do (the coordinator serves it as its DatasetUnavailable reason).
"""

from __future__ import annotations

import glob
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hexrl.api.dataspec import DataFormat, DatasetColumns, DatasetSpec
from hexrl_workers.data.order import EpochOrder
from hexrl_workers.data.records import Example

EXTENSIONS = {".jsonl": DataFormat.jsonl, ".json": DataFormat.jsonl, ".parquet": DataFormat.parquet}
"""File extension → format, for `format: auto` and for picking the data files of a directory."""
BUILDER = {DataFormat.jsonl: "json", DataFormat.parquet: "parquet"}
"""Format → `datasets` packaged builder."""


class DatasetError(ValueError):
    """The files cannot give the records the spec asks for (the message says what to fix)."""


def data_files(path: str) -> list[str]:
    """The files `path` names: itself, the data files of a directory (sorted) or a glob's matches (sorted)."""
    p = Path(path)
    if p.is_file():
        return [str(p)]
    if p.is_dir():
        files = sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix in EXTENSIONS)
        if not files:
            raise DatasetError(f"dataset.path {path!r} is a directory without .jsonl, .json or .parquet files")
        return files
    if glob.has_magic(path):
        files = sorted(f for f in glob.glob(path) if Path(f).is_file())
        if not files:
            raise DatasetError(f"dataset.path {path!r} matches no files; check the pattern and the mounted volume")
        return files
    raise DatasetError(f"dataset.path {path!r} does not exist; give a JSONL or Parquet file, a directory or a glob "
                       "(relative to the mount when dataset.pvc or dataset.configMap is set)")


def file_format(files: list[str], given: DataFormat) -> DataFormat:
    """The format to read `files` with: `given`, or (auto) the one their extensions agree on."""
    if given != DataFormat.auto:
        return DataFormat(given)
    formats = {EXTENSIONS.get(Path(f).suffix) for f in files}
    if None in formats:
        odd = next(f for f in files if Path(f).suffix not in EXTENSIONS)
        raise DatasetError(f"the format of {odd!r} is unknown (not .jsonl, .json or .parquet); set dataset.format "
                           "to jsonl or parquet")
    if len(formats) > 1:
        raise DatasetError(f"dataset.path mixes JSONL and Parquet files ({files[0]!r}, ...); use one format")
    return formats.pop()  # type: ignore[return-value]


def load_table(files: list[str], fmt: DataFormat, cache_dir: str) -> Any:
    """The files as one `datasets.Dataset` (split train), read locally into `cache_dir`."""
    empty = [f for f in files if os.path.getsize(f) == 0]
    if empty:
        raise DatasetError(f"dataset file {empty[0]!r} is empty; it needs at least one record")
    os.environ["HF_DATASETS_OFFLINE"] = "1"  # read before the library's first import: local files only
    import datasets

    datasets.disable_progress_bars()
    try:
        return datasets.load_dataset(BUILDER[fmt], data_files=files, split="train", cache_dir=cache_dir)
    except Exception as exc:  # the library wraps parser errors in its own types; the cause names the line
        cause = exc.__cause__ or exc
        raise DatasetError(f"cannot read {len(files)} {fmt.value} file(s) starting with {files[0]!r} as {fmt.value}: "
                           f"{type(cause).__name__}: {cause}; check the file and dataset.format") from exc


@dataclass(frozen=True)
class _Mapping:
    """The checked column mapping: which columns to read (answer None: no answer column)."""

    prompt: str
    answer: str | None
    extras: dict[str, str]
    """Metadata key → column (the id column under the key `id`)."""


def check_columns(table: Any, columns: DatasetColumns, answer_required: bool) -> _Mapping:
    """The mapping, after checking each mapped column exists and holds usable values."""
    have = list(table.column_names)
    answer = columns.answer
    if answer is not None and answer not in have and not answer_required:
        answer = None  # the old {prompt, answer} format allowed records without answers
    wanted = {"prompt": columns.prompt, "answer": answer, "id": columns.id, **{m: m for m in columns.metadata}}
    for role, col in wanted.items():
        if col is not None and col not in have:
            field = f"dataset.columns.{role}" if role in ("prompt", "answer", "id") else "dataset.columns.metadata"
            raise DatasetError(f"{field} names column {col!r}, which the file does not have; its columns are {have}")
    _check_values(table, columns.prompt, "prompt", (str,))
    if answer is not None:
        _check_values(table, answer, "answer", (str, int, float), allow_null=not answer_required)
    extras = {m: m for m in columns.metadata}
    if columns.id is not None:
        extras["id"] = columns.id
    return _Mapping(columns.prompt, answer, extras)


def _check_values(table: Any, column: str, role: str, types: tuple[type, ...], allow_null: bool = False) -> None:
    """DatasetError naming the first record whose value in `column` is not of `types` (or null, unless allowed)."""
    for row, value in enumerate(table[column]):
        if value is None and allow_null:
            continue
        if value is None or isinstance(value, bool) or not isinstance(value, types):
            kind = "null" if value is None else type(value).__name__
            wanted = "a string" if types == (str,) else "a string or a number"
            raise DatasetError(f"record {row} has a {kind} in column {column!r} (dataset.columns.{role}); every "
                               f"value there must be {wanted}")


class FileDataset:
    """Records of the user's files in a seeded per-epoch order (see `EpochOrder`)."""

    def __init__(self, spec: DatasetSpec, job_seed: int, path: str | None = None) -> None:
        """`path` overrides where the files are (default: spec.resolved_path(), under the data mount)."""
        where = path or spec.resolved_path()
        if where is None:
            raise DatasetError("dataset.path is not set; name the data files or a built-in task")
        self._cache = tempfile.TemporaryDirectory(prefix="hexrl-data-")
        files = data_files(where)
        table = load_table(files, file_format(files, spec.format), self._cache.name)
        if table.num_rows == 0:
            raise DatasetError(f"dataset.path {where!r} has no records")
        answer_required = "answer" in spec.columns.model_fields_set
        self.mapping = check_columns(table, spec.columns, answer_required)
        keep = [self.mapping.prompt, *([self.mapping.answer] if self.mapping.answer else []),
                *self.mapping.extras.values()]
        self.table = table.select_columns(list(dict.fromkeys(keep)))
        self.order = EpochOrder(table.num_rows, spec.shuffle_seed(job_seed), spec.shuffle, spec.epochs)
        self.source = where

    @property
    def records(self) -> int:
        return self.order.records

    @property
    def prompt_count(self) -> int | None:
        return self.order.prompt_count

    def record(self, index: int) -> Example:
        """The record at `index` in file order."""
        row = self.table[index]
        answer = row[self.mapping.answer] if self.mapping.answer else None
        metadata = {key: _json_scalar(row[col]) for key, col in self.mapping.extras.items()}
        return Example(row[self.mapping.prompt], "" if answer is None else str(answer), metadata)

    def get(self, prompt_id: int) -> Example:
        return self.record(self.order.position(prompt_id)[1])


def _json_scalar(value: Any) -> Any:
    """A metadata value as it can travel in JSON and fill a format field (nested values become text)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
