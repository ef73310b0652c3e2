"""Verifiable reward functions: a completion and the reference answer in, a float out.

Built-ins: `math-answer` (the final answer — after `####`, inside the last `\\boxed{}`, or else the last
number — compared numerically), `exact-match` (whitespace-trimmed string equality). Any other name of
the form `module:function` is imported; the callable receives `(completion, answer, prompt)` and
returns a number.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable

RewardFn = Callable[[str, str, str], float]

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def extract_final_answer(text: str) -> str | None:
    """The final answer of a worked solution, or None when there is none."""
    if "####" in text:
        tail = text.rsplit("####", 1)[1].replace(",", "")
        nums = _NUMBER.findall(tail)
        return nums[0] if nums else (tail.strip() or None)
    boxed = _BOXED.findall(text)
    if boxed:
        return boxed[-1].strip()
    nums = _NUMBER.findall(text.replace(",", ""))
    return nums[-1] if nums else None


def _as_number(s: str) -> float | None:
    s = s.strip().replace(",", "")
    try:
        if "/" in s:
            num, den = s.split("/", 1)
            return float(num) / float(den)
        return float(s)
    except (ValueError, ZeroDivisionError):
        return None


def math_answer(completion: str, answer: str, prompt: str = "") -> float:
    """1.0 when the completion's final answer equals the reference (numerically when both parse)."""
    got = extract_final_answer(completion)
    if got is None:
        return 0.0
    a, b = _as_number(got), _as_number(answer)
    if a is not None and b is not None:
        return 1.0 if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) else 0.0
    return 1.0 if got.strip() == answer.strip() else 0.0


def exact_match(completion: str, answer: str, prompt: str = "") -> float:
    return 1.0 if completion.strip() == answer.strip() else 0.0


BUILTIN: dict[str, RewardFn] = {"math-answer": math_answer, "exact-match": exact_match}


def load_reward(name: str) -> RewardFn:
    """The reward function called `name`; a clear ValueError when it cannot be found."""
    if name in BUILTIN:
        return BUILTIN[name]
    if ":" not in name:
        raise ValueError(f"unknown reward.function {name!r}; use one of {sorted(BUILTIN)} or 'module:function'")
    mod_name, fn_name = name.split(":", 1)
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"reward.function {name!r} cannot be loaded: {exc}") from exc
    if not callable(fn):
        raise ValueError(f"reward.function {name!r} is not callable")
    return fn
