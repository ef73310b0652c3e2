"""The job's prompts: built-in tasks and the user's JSONL or Parquet files, as a stream indexed by prompt id.

`dataset_from_spec(spec.dataset, spec.algorithm.seed)` builds what the coordinator (and an evaluation set)
reads; `make_prompt` turns a prompt id into the wire `Prompt`. Modules: `records` (the types), `builtin`
(generated tasks), `files` (the files through the `datasets` library), `order` (the seeded per-epoch order).
"""

from __future__ import annotations

from hexrl.api.dataspec import DatasetSpec
from hexrl_workers.data.builtin import BUILTIN_DATASETS, ArithDigits, ArithMod10
from hexrl_workers.data.files import DatasetError, FileDataset
from hexrl_workers.data.records import Dataset, DatasetExhausted, Example, make_prompt

__all__ = [
    "BUILTIN_DATASETS", "ArithDigits", "ArithMod10", "Dataset", "DatasetError", "DatasetExhausted", "Example",
    "FileDataset", "dataset_from_spec", "make_dataset", "make_prompt",
]


def dataset_from_spec(spec: DatasetSpec, seed: int) -> Dataset:
    """The dataset `spec` describes; `seed` is the job's (spec.algorithm.seed), used unless spec.seed is set.

    Raises DatasetError (a ValueError) or OSError with a sentence saying what to fix."""
    if spec.path:
        return FileDataset(spec, seed)
    if spec.name not in BUILTIN_DATASETS:
        raise DatasetError(f"unknown dataset.name {spec.name!r}; built-in tasks: {sorted(BUILTIN_DATASETS)} "
                           "(or set dataset.path to JSONL or Parquet files)")
    return BUILTIN_DATASETS[spec.name](spec.shuffle_seed(seed))


def make_dataset(spec: DatasetSpec | str, path: str | None = None, seed: int = 0) -> Dataset:
    """`dataset_from_spec(spec, seed)`; also takes the old (name, path, seed) arguments."""
    if isinstance(spec, DatasetSpec):
        return dataset_from_spec(spec, seed)
    return dataset_from_spec(DatasetSpec(name=spec, path=path), seed)
