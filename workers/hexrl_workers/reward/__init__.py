"""Verifiable rewards: a completion and the reference answer in, a float out.

- `builtins`: math-verify, math-answer, exact-match, regex-match, format; `code` + `sandbox`: the code
  reward and its confined subprocess;
- `build`: `spec.reward` → one callable (built-ins, `module:function`, a function from a file, weighted terms);
- `runner`: `RewardRunner`, which runs that callable in a reward process with `reward.timeoutSeconds` (the
  rollout worker calls it), and `server`, that process.

`load_reward(name)` (a built-in name or `module:function`, in-process, no timeout) stays for benchmarks and
tests that score without a job spec.
"""

from __future__ import annotations

from hexrl_workers.reward.build import import_callable
from hexrl_workers.reward.builtins import (
    SIMPLE_BUILTINS,
    RewardFn,
    exact_match,
    extract_final_answer,
    math_answer,
)

__all__ = ["RewardFn", "exact_match", "extract_final_answer", "load_reward", "math_answer"]


def load_reward(name: str) -> RewardFn:
    """The reward function called `name` (a parameterless built-in or `module:function`); ValueError if none."""
    if name in SIMPLE_BUILTINS:
        return SIMPLE_BUILTINS[name]
    if ":" not in name:
        raise ValueError(f"unknown reward.function {name!r}; use one of {sorted(SIMPLE_BUILTINS)} or 'module:function'")
    return import_callable(name)
