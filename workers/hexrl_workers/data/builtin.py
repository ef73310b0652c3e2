"""Built-in tasks that need no download: "a+b=" prompts generated from a seed.

`arith-digits` (the default job's task) and `arith-mod10` are endless deterministic streams indexed by
`prompt_id` (the coordinator's cursor), so a checkpoint stores one integer to resume the data order exactly.
"""

from __future__ import annotations

import random
from functools import cached_property

from hexrl_workers.data.records import Example


class ArithDigits:
    """"a+b=" with a, b in 0..3: 16 distinct problems, answers 0..6 (one digit), answer-balanced.

    Sized so that a 2-layer, 64-wide model with a 24-token vocabulary learns it from random init by RL
    alone in about 150 steps on 2 CPU cores (initial reward ≈ 0.05: a random model rarely emits the right
    digit followed by a non-digit), yet not trivial: the answer depends on both operands.

    Each prompt first draws its answer uniformly, then one of the problems with that answer. Drawn
    uniformly over problems instead, the answer 0 (only "0+0") is 1 prompt in 16 while every other
    prompt's wrong samples push the shared model away from emitting "0": on 2 of 8 seeds of an offline
    replay of the tiny job's objective that prior won and "0+0" collapsed onto a wrong digit — an all-wrong
    group carries no GRPO signal, so it never came back and the mean reward stalled near 0.92 (a CI run of
    the real job: 0.86). Balanced answers give every digit the same pull; the same replay then ends at
    0.976-0.986 on all 11 seeds tried (bench/bench_learning_seeds.py). With all single digits (55 or 100
    problems) GRPO from random init stalls around 0.8 for thousands of steps for the same reason.
    """

    prompt_count: int | None = None
    """Endless: every prompt id has a prompt (the `Dataset` protocol's way of saying so)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.problems = [(a, b) for a in range(4) for b in range(4)]

    @staticmethod
    def answer(a: int, b: int) -> int:
        return a + b

    @cached_property
    def _by_answer(self) -> list[list[tuple[int, int]]]:
        groups: dict[int, list[tuple[int, int]]] = {}
        for a, b in self.problems:
            groups.setdefault(self.answer(a, b), []).append((a, b))
        return [groups[k] for k in sorted(groups)]

    def get(self, prompt_id: int) -> Example:
        rng = random.Random(self.seed * 1_000_003 + prompt_id)
        a, b = rng.choice(rng.choice(self._by_answer))
        return Example(f"{a}+{b}=", str(self.answer(a, b)))


class ArithMod10(ArithDigits):
    """"a+b=" with any single digits; the answer is (a + b) mod 10 (100 problems, 10 per answer)."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.problems = [(a, b) for a in range(10) for b in range(10)]

    @staticmethod
    def answer(a: int, b: int) -> int:
        return (a + b) % 10


BUILTIN_DATASETS = {"arith-digits": ArithDigits, "arith-mod10": ArithMod10}
"""Task name (spec.dataset.name) → class; keep `hexrl.api.dataspec.BUILTIN_TASKS` in step."""
