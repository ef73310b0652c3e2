"""The RLJob's held-out evaluation: `spec.evaluation` (what to evaluate, how often) and the summary of one
evaluated policy version (`status.progress.evaluation`, also served by the coordinator's /v1/progress).

Every `everySteps` trainer steps the coordinator evaluates the new policy version on the first `maxPrompts`
prompts of a held-out dataset: one greedy response per prompt (temperature 0) and `k` sampled responses at
`temperature`, all scored by the job's reward function. A response is *correct* when its reward is at least
`CORRECT_REWARD` (0.5): the built-in rewards are 0/1, and a shaped reward above one half means the answer
was accepted. pass@k is Chen et al.'s (2021) unbiased estimator over the n = k samples drawn.

Imported by `hexrl.api.models` after `DatasetSpec` is defined (this module builds on it and on `_Model`).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from hexrl.api.dataspec import DatasetSpec
from hexrl.api.models import _Model

CORRECT_REWARD = 0.5
"""A response whose reward is at least this counts as correct (greedy accuracy, pass@k)."""


NOTHING_TO_GENERATE = ("evaluation: greedy is false and k is 0, so nothing would be generated; set greedy: true "
                       "or k ≥ 1 (or everySteps: 0 to turn evaluation off)")


class EvalSpec(_Model):
    """A held-out set evaluated every N trainer steps (greedy accuracy and pass@k)."""

    every_steps: int = Field(
        0, ge=0, description="Evaluate every N trainer steps (policy versions N, 2N, …); 0 turns evaluation off."
    )
    dataset: DatasetSpec | None = Field(
        None, description="The held-out prompts, same options as spec.dataset (unset: spec.dataset read with another "
        "seed — a different stream for built-in tasks; for a file give a held-out file here).",
    )
    max_prompts: int = Field(
        64, ge=1, le=100_000, description="Prompts per evaluation: the first maxPrompts of the held-out set, in order."
    )
    k: int = Field(
        4, ge=0, le=256, description="Sampled responses per prompt for pass@k (0: greedy only; at most 256, "
        "which keeps one prompt's results in one small request)."
    )
    temperature: float | None = Field(
        None, gt=0, le=10, description="Temperature of the k sampled responses (unset: spec.generation.temperature)."
    )
    greedy: bool = Field(True, description="Also generate one greedy (temperature 0) response per prompt.")
    at_start: bool = Field(True, description="Also evaluate the initial weights (policy version 0).")

    cel_rules: ClassVar[list[dict[str, str]]] = [
        {"rule": "self.everySteps == 0 || self.greedy || self.k > 0", "message": NOTHING_TO_GENERATE},
    ]

    @model_validator(mode="after")
    def _something_to_generate(self) -> EvalSpec:
        if self.every_steps > 0 and not self.greedy and self.k == 0:
            raise ValueError(NOTHING_TO_GENERATE)
        return self

    @property
    def enabled(self) -> bool:
        return self.every_steps > 0


class EvalSummary(_Model):
    """The numbers of one evaluated policy version."""

    version: int = Field(..., ge=0, description="The policy version evaluated (trainer steps).")
    prompts: int = Field(..., ge=0, description="Held-out prompts evaluated.")
    greedy_accuracy: float | None = Field(
        None, description="Share of prompts whose greedy response has reward ≥ 0.5 (unset without greedy).")
    greedy_mean_reward: float | None = Field(None, description="Mean reward of the greedy responses.")
    k: int = Field(0, ge=0, description="Sampled responses per prompt (n = k in the pass@k estimator).")
    pass_at_k: float | None = Field(
        None, description="Mean over prompts of 1 − C(n−c, k)/C(n, k), c = correct samples (unset when k = 0).")
    pass_at_1: float | None = Field(None, description="The same estimator at k = 1: the mean share of correct samples.")
