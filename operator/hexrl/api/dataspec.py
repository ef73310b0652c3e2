"""The RLJob's data and prompt fields: `spec.dataset` (what to train on) and `spec.prompt` (how a record
becomes the model's input).

A dataset is a built-in task (`name`) or records in files the user provides (`path`): JSONL or Parquet, one
file, a directory or a glob of shards, with `columns` naming which column holds the prompt, the reference
answer, an id and extra metadata. The files live in the coordinator's filesystem (the only role that
reads them): a PersistentVolumeClaim (`pvc`) or a ConfigMap (`configMap`) that the operator mounts
read-only at `DATA_MOUNT_DIR` in the coordinator pod, `path` then being relative to that mount; or a path in
the image. The data order is a seeded shuffle per epoch (`shuffle`, `seed`), for `epochs` epochs or forever.

The prompt is built in the rollout worker: `template` makes the user message from the record (Python
`str.format` fields: `prompt` and the metadata columns), and the tokenizer's chat template (or
`chatTemplateOverride`) wraps it with the optional `systemPrompt`.

Pure: models and path arithmetic only (no file I/O), like the rest of `hexrl.api`.
"""

from __future__ import annotations

import posixpath
import string
from enum import StrEnum
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

# models.py imports this module right after defining `_Model` (the package imports models first), so the
# base class is there when this runs.
from hexrl.api.models import _Model

DATA_MOUNT_DIR = "/data"
"""Where the operator mounts `dataset.pvc` or `dataset.configMap` (read-only) in the coordinator pod."""
BUILTIN_TASKS = ("arith-digits", "arith-mod10")
"""Built-in task names (`hexrl_workers.data.builtin`); listed here so the spec's description can name them."""


class DataFormat(StrEnum):
    auto = "auto"
    jsonl = "jsonl"
    parquet = "parquet"


class DatasetColumns(_Model):
    """Which column of the files holds what; the defaults read {"prompt", "answer"} records."""

    prompt: str = Field("prompt", min_length=1, description="Column of the prompt text, e.g. `question` or `problem`.")
    answer: str | None = Field(
        "answer", min_length=1,
        description="Column of the reference answer given to the reward function, e.g. `answer` or `solution` "
        "(null: no answer column; the reward sees an empty answer).",
    )
    id: str | None = Field(
        None, min_length=1, description="Column of a record id, kept in the prompt's metadata as `id` (optional)."
    )
    metadata: list[str] = Field(
        default_factory=list,
        description="Further columns carried with the prompt (e.g. `level`, `type`): usable as `{level}` in "
        "prompt.template and passed along to the rollout worker.",
    )


class DatasetSpec(_Model):
    """The prompts (with reference answers) to train on; if unloadable: Ready=False, reason DatasetUnavailable."""

    name: str = Field(
        "arith-digits", min_length=1,
        description=f"Built-in task name ({', '.join(BUILTIN_TASKS)}); ignored when `path` is set.",
    )
    path: str | None = Field(
        None, min_length=1,
        description="Data files: a JSONL or Parquet file, a directory of them or a glob (`train-*.parquet`). "
        f"Relative to the mount ({DATA_MOUNT_DIR}) when `pvc` or `configMap` is set, else a path in the "
        "coordinator's filesystem (overrides `name`).",
    )
    format: DataFormat = Field(
        DataFormat.auto, description="auto (from the file extension: .jsonl/.json or .parquet), jsonl or parquet."
    )
    columns: DatasetColumns = Field(default_factory=DatasetColumns, description="Column mapping of the files.")
    shuffle: bool = Field(True, description="Shuffle the records, differently each epoch (false: file order).")
    seed: int | None = Field(
        None, ge=0, description="Seed of the shuffle (unset: spec.algorithm.seed); the same seed gives the same order."
    )
    epochs: int | None = Field(
        None, ge=1,
        description="Passes over the files; after the last one the coordinator hands out no new prompts and "
        "reports datasetExhausted (unset: cycle forever).",
    )
    pvc: str | None = Field(
        None, min_length=1,
        description=f"PersistentVolumeClaim holding the files, mounted read-only at {DATA_MOUNT_DIR} in the "
        "coordinator pod.",
    )
    config_map: str | None = Field(
        None, min_length=1,
        description=f"ConfigMap holding small files (one key per file), mounted read-only at {DATA_MOUNT_DIR} in the "
        "coordinator pod.",
    )

    cel_rules: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "!(has(self.pvc) && has(self.configMap))",
            "message": "dataset: set at most one of pvc and configMap",
        },
        {
            "rule": "!(has(self.pvc) || has(self.configMap)) || (has(self.path) && !self.path.startsWith('/'))",
            "message": f"dataset.path is required with dataset.pvc or dataset.configMap and is relative to "
            f"{DATA_MOUNT_DIR} (no leading /)",
        },
    ]

    @model_validator(mode="after")
    def _mount_and_path(self) -> DatasetSpec:
        if self.pvc is not None and self.config_map is not None:
            raise ValueError("dataset: set at most one of pvc and configMap")
        if (self.pvc or self.config_map) and (self.path is None or self.path.startswith("/")):
            raise ValueError(
                f"dataset.path is required with dataset.pvc or dataset.configMap and is relative to "
                f"{DATA_MOUNT_DIR} (no leading /)"
            )
        return self

    @property
    def mounted(self) -> bool:
        """Whether the files come from a volume the operator mounts (a PVC or a ConfigMap)."""
        return self.pvc is not None or self.config_map is not None

    def resolved_path(self, mount_dir: str = DATA_MOUNT_DIR) -> str | None:
        """Where the coordinator reads the files: `path` under `mount_dir` when a volume is mounted."""
        if self.path is None or not self.mounted:
            return self.path
        return posixpath.join(mount_dir, self.path)

    def shuffle_seed(self, job_seed: int) -> int:
        """The shuffle's seed: `seed`, else the job's (spec.algorithm.seed)."""
        return job_seed if self.seed is None else self.seed


class ChatTemplateUse(StrEnum):
    auto = "auto"
    none = "none"


DEFAULT_PROMPT_TEMPLATE = "{prompt}"


class PromptSpec(_Model):
    """How a dataset record becomes the token ids a rollout worker generates from."""

    chat_template: ChatTemplateUse = Field(
        ChatTemplateUse.auto,
        description="auto: wrap the user message with the tokenizer's chat template when it has one (or "
        "chatTemplateOverride); none: tokenize the plain text.",
    )
    system_prompt: str | None = Field(
        None, description="A system message before the user message (in plain text: its own paragraph before it)."
    )
    template: str = Field(
        DEFAULT_PROMPT_TEMPLATE, min_length=1,
        description="The user message, a Python format string over the record: {prompt} and the metadata columns, "
        "e.g. `{prompt}\\nPut the final answer after ####.` (write {{ and }} for literal braces).",
    )
    chat_template_override: str | None = Field(
        None, min_length=1, description="A Jinja chat template used instead of the tokenizer's own."
    )

    @field_validator("template")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
        except ValueError as exc:
            raise ValueError(
                f"prompt.template is not a valid format string ({exc}); write {{prompt}} for the record's "
                "prompt and {{ }} for literal braces"
            ) from exc
        if any(f == "" or f.isdigit() for f in fields):
            raise ValueError("prompt.template uses a positional field {}; name it, e.g. {prompt}")
        return value
