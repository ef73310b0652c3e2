"""The `code` reward: run the completion's program against the reference tests in the sandbox.

The program is the last ```python (or ```py, or bare ```) block of the completion after any </think>, else
that whole text. The reference answer holds the tests, in one of two documented formats:

- **stdin/stdout cases**, JSON: a list of `{"input": "...", "output": "..."}` objects, or an object
  `{"inputs": [...], "outputs": [...]}` (the APPS/TACO layout). Each case is one sandboxed run of the program
  with that standard input; it passes when the output equals the expected one up to trailing whitespace on
  each line and trailing blank lines. Judged from outside the sandbox.
- **Python test code** (anything that is not such JSON): run after the program in the same interpreter; each
  top-level `assert` is one test (the statements before it are its setup); code without a top-level assert
  (e.g. `def check(f): ...` then `check(solution)`) is one test. The tests share the program's interpreter, so
  a program that tampers with it (e.g. rebinds builtins) could pass them — as in every exec-based checker;
  use stdin/stdout cases when that matters.

The reward is the fraction of tests passed (`scoring: fraction`) or 1/0 for all/any failing
(`scoring: all`). Anything that goes wrong in the sandbox — syntax error, crash, a limit, the wall deadline
(shared by all of a sample's runs) — fails the tests concerned: the reward is low, never an error.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from dataclasses import dataclass

from hexrl.api.rewardspec import CodeTestSpec
from hexrl_workers.reward.builtins import RewardFn
from hexrl_workers.reward.sandbox import SandboxLimits, run_sandboxed

log = logging.getLogger(__name__)
_FENCE = re.compile(r"```[ \t]*(python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_program(completion: str) -> str:
    """The program in a completion: its last ```python block (else last bare ``` block), else all of it."""
    text = completion.rsplit("</think>", 1)[-1]
    blocks = _FENCE.findall(text)
    tagged = [body for lang, body in blocks if lang]
    if tagged or blocks:
        return (tagged or [body for _, body in blocks])[-1]
    return text


@dataclass(frozen=True)
class IoCase:
    """One stdin/stdout test."""

    stdin: str
    expected: str


def parse_io_cases(answer: str) -> list[IoCase] | None:
    """The stdin/stdout cases the answer holds, or None when it is not that JSON (then it is test code)."""
    try:
        data = json.loads(answer)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("inputs"), list) and isinstance(data.get("outputs"), list):
        data = [{"input": i, "output": o} for i, o in zip(data["inputs"], data["outputs"], strict=False)]
    if not isinstance(data, list) or not all(isinstance(c, dict) and "input" in c and "output" in c for c in data):
        return None
    return [IoCase(str(c["input"]), str(c["output"])) for c in data]


def _normalized(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()).rstrip()


def _io_passed(program: str, cases: list[IoCase], limits: SandboxLimits, deadline: float) -> int:
    passed = 0
    for case in cases:
        if time.monotonic() >= deadline:
            break  # the rest fail: the sample's time is up
        run = run_sandboxed(program, limits, deadline, stdin=case.stdin)
        out = run.stdout.decode(errors="replace")
        passed += run.returncode == 0 and _normalized(out) == _normalized(case.expected)
    return passed


def _asserts_passed(program: str, tests: str, limits: SandboxLimits, deadline: float) -> tuple[int, int]:
    run = run_sandboxed(program, limits, deadline, tests=tests)
    try:
        passed, total = (int(x) for x in run.result.split()[:2])
    except ValueError:  # the run died before reporting (a limit, the deadline, a SyntaxError in the tests)
        return 0, 1
    return (min(passed, total), total) if total > 0 else (0, 1)


def score_program(program: str, answer: str, limits: SandboxLimits, scoring: str = "fraction") -> float:
    """The fraction (or all-or-nothing) of the answer's tests that `program` passes."""
    deadline = time.monotonic() + limits.wall_seconds
    cases = parse_io_cases(answer)
    if cases is not None:
        passed, total = _io_passed(program, cases, limits, deadline), len(cases)
    else:
        passed, total = _asserts_passed(program, answer, limits, deadline)
    if total == 0:
        return 0.0
    if scoring == "all":
        return 1.0 if passed == total else 0.0
    return passed / total


def code_reward(spec: CodeTestSpec | None = None) -> RewardFn:
    """The code reward with the spec's sandbox limits and scoring."""
    spec = spec or CodeTestSpec()
    limits = SandboxLimits.from_spec(spec)

    def reward(completion: str, answer: str, prompt: str = "") -> float:
        try:
            return score_program(extract_program(completion), answer, limits, spec.scoring)
        except (OSError, subprocess.SubprocessError) as exc:  # e.g. a full /tmp: the sample scores 0, not an error
            log.warning("code reward: the sandbox could not run (%s); scoring 0", exc)
            return 0.0

    return reward
