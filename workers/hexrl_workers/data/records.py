"""What every dataset hands the coordinator: an `Example` per prompt id, and the `Prompt` made of it.

A dataset is a deterministic function of the prompt id (the coordinator's cursor, saved in checkpoints), so
resuming a job replays exactly the data order it would have seen. A finite dataset (`prompt_count` set)
raises `DatasetExhausted` for ids past its last epoch; the coordinator then hands out no new prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from hexrl_workers.protocol import Prompt


@dataclass(frozen=True)
class Example:
    """One record: the prompt text, the reference answer and the record's metadata columns."""

    text: str
    answer: str
    metadata: dict[str, Any] = field(default_factory=dict)
    """Metadata column → value (JSON scalars), for the prompt template and the reward; empty for built-ins."""


class DatasetExhausted(LookupError):
    """The prompt id lies past the dataset's last epoch (spec.dataset.epochs)."""


class Dataset(Protocol):
    @property
    def prompt_count(self) -> int | None:
        """Prompt ids the dataset has (records × epochs); None: endless."""

    def get(self, prompt_id: int) -> Example: ...


def make_prompt(dataset: Dataset, prompt_id: int) -> Prompt:
    """The wire `Prompt` of `prompt_id` (DatasetExhausted past the end of a finite dataset)."""
    ex = dataset.get(prompt_id)
    return Prompt(prompt_id=prompt_id, text=ex.text, answer=ex.answer, metadata=ex.metadata or None)
