"""The reward part of the RLJob spec (`spec.reward`): which function scores a completion, with what limits.

A reward is one function — a built-in (`BUILTIN_REWARDS`), a Python callable `module:function` importable in
the worker image, or a function defined in a Python file (`file`, e.g. from a ConfigMap the operator mounts
read-only at `REWARD_MOUNT_DIR` in rollout pods) — or a weighted sum of such terms (`terms`, e.g.
correctness + 0.1 × format). Every reward runs in a reward process that is killed at `timeoutSeconds`.

The rules are checked here (pydantic, for files the CLI reads) and the simple cross-field ones again as CEL
rules (the API server), with the same sentences.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from hexrl.api.models import _Model

BUILTIN_REWARDS = ("math-verify", "math-answer", "exact-match", "regex-match", "format", "code")
"""Names of the built-in reward functions (see hexrl_workers.reward)."""
PATTERN_REWARDS = ("regex-match", "format")
"""Built-ins that take `pattern`."""
ANSWER_PLACEHOLDER = "{answer}"
"""Replaced, in a regex-match pattern, by the reference answer (regex-escaped)."""
DEFAULT_FORMAT_PATTERN = r"(?s)^\s*<think>.+?</think>\s*\S"
"""The `format` reward's default: a <think>…</think> block first, then a non-empty answer."""
REWARD_MOUNT_DIR = "/etc/hexrl/reward"
"""Where `reward.configMap` is mounted (read-only) in rollout pods; point `reward.file` into it."""
DEFAULT_REWARD = "math-answer"
"""The reward when neither function nor terms is given (kept from before: the simple numeric check)."""
MAX_TERMS = 16
"""Most terms in a weighted reward (each runs for every sample)."""

_TERMS_REPLACE = "reward.terms replaces reward.function, file, pattern and code: set them inside each term"
_PATTERN_REQUIRED = "{where}.pattern is required by regex-match: give the regular expression to search for"
_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_]\w*$")


class CodeTestSpec(_Model):
    """Limits of the `code` reward's sandbox: each test run is a subprocess with these rlimits and no network."""

    cpu_seconds: int = Field(5, ge=1, le=300, description="CPU seconds of each test process (RLIMIT_CPU).")
    memory_mib: int = Field(
        1024, ge=64, le=65536, description="Address space of each test process, MiB (RLIMIT_AS): a larger "
        "allocation fails inside the program.",
    )
    wall_seconds: float = Field(
        5.0, gt=0, le=300, description="Wall time of all of one sample's tests, seconds; the tests are killed "
        "(their whole process group) at it and the sample scores 0. Must be below reward.timeoutSeconds.",
    )
    file_size_mib: int = Field(16, ge=0, le=1024, description="Largest file a test process may write, MiB.")
    open_files: int = Field(64, ge=16, le=4096, description="Open file descriptors of each test process.")
    scoring: Literal["fraction", "all"] = Field(
        "fraction", description="fraction: the reward is the fraction of tests passed; all: 1 only when every "
        "test passes, else 0.",
    )


class RewardFunctionSpec(_Model):
    """One reward function and its parameters (shared by the single reward and each term)."""

    function: str = Field(
        DEFAULT_REWARD, min_length=1, max_length=253,
        description="A built-in (math-verify: robust math answer check; math-answer: simple numeric check; "
        "exact-match; regex-match; format; code: run the reference tests), a Python callable `module:function` "
        "in the worker image, or, with `file`, the name of a function defined in that file. The callable "
        "receives (completion, answer, prompt) and returns a number.",
    )
    file: str | None = Field(
        None, max_length=4096, description="Absolute path of a Python file that defines `function` (e.g. in the "
        f"ConfigMap named by reward.configMap, mounted at {REWARD_MOUNT_DIR}).",
    )
    pattern: str | None = Field(
        None, max_length=4096, description="Python regular expression of regex-match (required; "
        f"`{ANSWER_PLACEHOLDER}` stands for the reference answer) and format (default "
        f"`{DEFAULT_FORMAT_PATTERN}`); searched in the completion.",
    )
    code: CodeTestSpec | None = Field(None, description="Sandbox limits of the code reward (default limits if unset).")

    def problems(self, where: str) -> list[str]:
        """Sentences naming what is wrong with this function's fields (`where`: e.g. `reward.terms[1]`)."""
        return [p for p in (self._function_problem(where), self._pattern_problem(where),
                            self._code_problem(where)) if p]

    def _function_problem(self, where: str) -> str | None:
        if self.file is not None:
            if not self.file.startswith("/") or not self.file.endswith(".py"):
                return (f"{where}.file must be the absolute path of a Python file ending in .py (e.g. "
                        f"{REWARD_MOUNT_DIR}/reward.py), not {self.file!r}")
            if not _IDENTIFIER.match(self.function):
                return (f"{where}.function must name a function defined in {where}.file (a Python identifier such "
                        f"as 'score'), not {self.function!r}")
            return None
        if self.function in BUILTIN_REWARDS or _CALLABLE.match(self.function):
            return None
        return (f"{where}.function {self.function!r} is neither a built-in reward ({', '.join(BUILTIN_REWARDS)}) "
                f"nor a Python callable 'module:function'; use one of those, or set {where}.file to load a "
                "function from a file")

    def _pattern_problem(self, where: str) -> str | None:
        uses_pattern = self.file is None and self.function in PATTERN_REWARDS
        if self.pattern is None:
            if uses_pattern and self.function == "regex-match":
                return _PATTERN_REQUIRED.format(where=where)
            return None
        if not uses_pattern:
            return f"{where}.pattern is only used by {' and '.join(PATTERN_REWARDS)}; remove it"
        try:
            re.compile(self.pattern.replace(ANSWER_PLACEHOLDER, "answer"))
        except re.error as exc:
            return f"{where}.pattern is not a valid Python regular expression ({exc}); fix it"
        return None

    def _code_problem(self, where: str) -> str | None:
        if self.code is not None and (self.file is not None or self.function != "code"):
            return f"{where}.code only configures the code reward; remove it or set {where}.function to code"
        return None

    def code_wall_seconds(self) -> float:
        """Wall time this function's sandbox may take per sample (0 unless it is the code reward)."""
        if self.file is None and self.function == "code":
            return (self.code or CodeTestSpec()).wall_seconds
        return 0.0


class RewardTermSpec(RewardFunctionSpec):
    """One term of a weighted reward: weight × function(completion, answer, prompt)."""

    weight: float = Field(1.0, ge=-1000, le=1000, description="Factor of this term in the sum (may be negative).")


class RewardSpec(RewardFunctionSpec):
    """The verifiable reward: one function or a weighted sum of terms, run with a timeout in a reward process."""

    # a sample whose reward raises, is not finite or overruns the timeout is dropped and counted, never trained on

    function: str | None = Field(  # type: ignore[assignment]  # None: math-answer, unless terms are set
        None, min_length=1, max_length=253,
        description="The reward function (default math-answer; leave unset when `terms` is set): a built-in "
        "(math-verify: robust math answer check; math-answer: simple numeric check; exact-match; regex-match; "
        "format; code: run the reference tests), a Python callable `module:function` in the worker image, or, "
        "with `file`, the name of a function defined in that file. The callable receives (completion, answer, "
        "prompt) and returns a number.",
    )
    terms: list[RewardTermSpec] | None = Field(
        None, min_length=1, max_length=MAX_TERMS, description="A weighted sum of reward functions (e.g. "
        "math-verify + 0.1 × format); when set, function, file, pattern and code belong inside the terms.",
    )
    timeout_seconds: float = Field(
        10.0, ge=0.1, le=600, description="Longest one sample's reward may run, seconds; past it the reward "
        "process is killed and restarted and the sample is dropped (counted as reward-timeout).",
    )
    config_map: str | None = Field(
        None, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description=f"A ConfigMap (in the job's namespace) mounted read-only at {REWARD_MOUNT_DIR} in rollout pods, "
        "e.g. holding the Python file named by `file`.",
    )

    cel_rules: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "!has(self.terms) || (!has(self.function) && !has(self.file) && !has(self.pattern) "
            "&& !has(self.code))",
            "message": _TERMS_REPLACE,
        },
        {
            "rule": "!has(self.function) || has(self.file) || self.function != 'regex-match' || has(self.pattern)",
            "message": _PATTERN_REQUIRED.format(where="reward"),
        },
    ]

    @model_validator(mode="after")
    def _consistent(self) -> RewardSpec:
        if self.terms is None and self.function is None:
            # no schema default: the API server would fill it in and a stored job with terms would look inconsistent
            self.function = DEFAULT_REWARD
        problems = self._terms_problems() if self.terms is not None else self.problems("reward")
        if problems:
            raise ValueError(problems[0])
        wall = sum(f.code_wall_seconds() for f in self.functions())
        if wall >= self.timeout_seconds:
            raise ValueError(
                f"the code reward's wallSeconds ({wall:g} s in all) must be below reward.timeoutSeconds "
                f"({self.timeout_seconds:g} s), or the reward process is killed before the tests end; raise "
                "reward.timeoutSeconds or lower wallSeconds"
            )
        return self

    def _terms_problems(self) -> list[str]:
        if any(getattr(self, k) is not None for k in ("function", "file", "pattern", "code")):
            return [_TERMS_REPLACE]
        return [p for k, t in enumerate(self.terms or []) for p in t.problems(f"reward.terms[{k}]")]

    def functions(self) -> list[RewardFunctionSpec]:
        """The functions this reward runs: its terms, or itself."""
        return list(self.terms) if self.terms is not None else [self]
