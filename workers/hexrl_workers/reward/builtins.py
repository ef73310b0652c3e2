"""The built-in reward functions: a completion and the reference answer in, a float out.

- `math-verify`: the answer checked with the `math_verify` library (parsing with LaTeX and expression
  extraction, then symbolic/numeric comparison): boxed answers, fractions, LaTeX (`\\dfrac12`), percentages,
  units, `x = 3`, thousands separators. GSM8K-style `#### 42` answers are understood on either side, and only
  the text after a reasoning model's last `</think>` is graded (the reasoning may mention other numbers).
- `math-answer`: the simple, dependency-free check kept from before (the final answer after `####`, in the
  last `\\boxed{}`, or else the last number, compared numerically); the default.
- `exact-match`: whitespace-trimmed string equality.
- `regex-match` (pattern; `{answer}` stands for the regex-escaped reference answer) and `format` (pattern,
  default a `<think>…</think>` block then an answer): 1.0 when the pattern is found in the completion.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable

from hexrl.api.rewardspec import ANSWER_PLACEHOLDER, DEFAULT_FORMAT_PATTERN

RewardFn = Callable[[str, str, str], float]

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_GSM8K_MARK = "####"
_THINK_END = "</think>"
_MATH_VERIFY_TIMEOUT_SECONDS = 5
"""math_verify's own parse/verify timeout (a SIGALRM, so main thread only); elsewhere the reward runner's
process timeout is the only bound."""


def extract_final_answer(text: str) -> str | None:
    """The final answer of a worked solution, or None when there is none (the `math-answer` rule)."""
    if _GSM8K_MARK in text:
        tail = text.rsplit(_GSM8K_MARK, 1)[1].replace(",", "")
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
    """1.0 when the completion's final answer equals the reference (numerically when both parse). A reference
    that is a worked solution (GSM8K's `... #### 72`, MATH's `... \\boxed{-12}`) is reduced to its final answer
    first, so a dataset's solution column can be the answer column as it is."""
    got = extract_final_answer(completion)
    if got is None:
        return 0.0
    if "####" in answer or "\\boxed{" in answer:
        answer = extract_final_answer(answer) or answer
    a, b = _as_number(got), _as_number(answer)
    if a is not None and b is not None:
        return 1.0 if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) else 0.0
    return 1.0 if got.strip() == answer.strip() else 0.0


def exact_match(completion: str, answer: str, prompt: str = "") -> float:
    """1.0 when the completion is the reference answer, ignoring surrounding whitespace."""
    return 1.0 if completion.strip() == answer.strip() else 0.0


def _graded_part(completion: str) -> str:
    """The part of a completion that holds its answer: after the last </think>, and after `####` if any."""
    text = completion.rsplit(_THINK_END, 1)[-1]
    return text.rsplit(_GSM8K_MARK, 1)[1] if _GSM8K_MARK in text else text


def _gold_text(answer: str) -> str:
    """The reference answer as math_verify parses it best: a bare answer wrapped as LaTeX math (`1/2` alone
    is not extracted, `$1/2$` is), a GSM8K solution cut to what follows `####`."""
    gold = answer.rsplit(_GSM8K_MARK, 1)[1] if _GSM8K_MARK in answer else answer
    gold = gold.strip()
    return gold if ("$" in gold or "\\boxed" in gold or "\\(" in gold) else f"${gold}$"


def math_verify(completion: str, answer: str, prompt: str = "") -> float:
    """1.0 when math_verify finds the completion's answer equal to the reference, else 0.0."""
    from math_verify import parse, verify  # sympy behind it: imported where the reward runs, not at import

    timeout = _MATH_VERIFY_TIMEOUT_SECONDS if threading.current_thread() is threading.main_thread() else None
    gold = parse(_gold_text(answer), parsing_timeout=timeout)
    if not gold:
        gold = parse(answer, parsing_timeout=timeout)
    if not gold:
        return 0.0
    pred = parse(_graded_part(completion), parsing_timeout=timeout)
    if not pred:
        return 0.0
    return 1.0 if verify(gold, pred, timeout_seconds=timeout) else 0.0


def regex_match(pattern: str) -> RewardFn:
    """A reward that is 1.0 when `pattern` (with `{answer}` → the escaped reference) is found in the completion."""
    static = None if ANSWER_PLACEHOLDER in pattern else re.compile(pattern)

    def reward(completion: str, answer: str, prompt: str = "") -> float:
        rx = static or re.compile(pattern.replace(ANSWER_PLACEHOLDER, re.escape(answer.strip())))
        return 1.0 if rx.search(completion) else 0.0

    return reward


def format_reward(pattern: str | None = None) -> RewardFn:
    """A reward that is 1.0 when the completion has the expected shape (default: <think>…</think> then an answer)."""
    rx = re.compile(pattern or DEFAULT_FORMAT_PATTERN)

    def reward(completion: str, answer: str, prompt: str = "") -> float:
        return 1.0 if rx.search(completion) else 0.0

    return reward


SIMPLE_BUILTINS: dict[str, RewardFn] = {
    "math-verify": math_verify, "math-answer": math_answer, "exact-match": exact_match,
}
"""The built-ins that take no parameters."""
