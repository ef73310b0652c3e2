"""The job's prompts: built-in tasks and the user's JSONL or Parquet files, as a stream indexed by prompt id.

`dataset_from_spec(spec.dataset, spec.algorithm.seed)` builds what the coordinator (and an evaluation set)
reads; `make_prompt` turns a prompt id into the wire `Prompt`. Modules: `records` (the types), `builtin`
(generated tasks), `files` (the files through the `datasets` library), `order` (the seeded per-epoch order).
"""

from __future__ import annotations

import string

from hexrl.api.dataspec import DatasetSpec, PromptSpec
from hexrl_workers.data.builtin import BUILTIN_DATASETS, ArithDigits, ArithMod10
from hexrl_workers.data.files import DatasetError, FileDataset
from hexrl_workers.data.records import Dataset, DatasetExhausted, Example, make_prompt

__all__ = [
    "BUILTIN_DATASETS", "ArithDigits", "ArithMod10", "Dataset", "DatasetError", "DatasetExhausted", "Example",
    "FileDataset", "check_prompt_template", "dataset_from_spec", "make_dataset", "make_prompt",
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


def check_prompt_template(prompt: PromptSpec, dataset: Dataset) -> None:
    """DatasetError when spec.prompt.template names a field the dataset's records lack (every record has the
    same fields: `prompt` and the mapped metadata columns), so the job stops at load with a sentence instead
    of every prompt failing in the rollout workers."""
    have = {"prompt", *dataset.get(0).metadata}
    wanted = {f for _, f, _, _ in string.Formatter().parse(prompt.template) if f is not None}
    missing = sorted({f.split(".")[0].split("[")[0] for f in wanted} - have)
    if missing:
        raise DatasetError(f"prompt.template uses {{{missing[0]}}}, which the dataset's records do not have; their "
                           f"fields are {sorted(have)} (map a column with dataset.columns.metadata or .id)")
