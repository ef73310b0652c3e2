"""Built-in datasets: deterministic per (seed, prompt id), answers drawn uniformly, every problem reachable."""

from __future__ import annotations

from collections import Counter

import pytest

from hexrl_workers.tasks import ArithDigits, ArithMod10, make_dataset

pytestmark = pytest.mark.workers

DRAWS = 14_000


def _answer_shares(ds: ArithDigits) -> dict[str, float]:
    counts = Counter(ds.get(i).answer for i in range(DRAWS))
    return {a: n / DRAWS for a, n in counts.items()}


@pytest.mark.parametrize("cls, answers", [(ArithDigits, 7), (ArithMod10, 10)])
def test_answers_are_drawn_uniformly(cls, answers):
    """The lone problem of a rare answer ("0+0" → 0) comes up as often as any other answer: drawn
    uniformly over problems it would be 1 prompt in 16 and the tiny job's GRPO could lose it."""
    shares = _answer_shares(cls(3))
    assert len(shares) == answers
    for answer, share in shares.items():
        assert abs(share - 1 / answers) < 0.02, (answer, share)


def test_every_problem_is_asked_and_answered_correctly():
    ds = ArithDigits(0)
    seen = {}
    for i in range(DRAWS):
        ex = ds.get(i)
        a, b = (int(x) for x in ex.text[:-1].split("+"))
        assert ex.answer == str(a + b)
        seen[ex.text] = seen.get(ex.text, 0) + 1
    assert len(seen) == 16
    assert seen["0+0="] > seen["1+2="]  # the only problem with answer 0 vs one of four with answer 3


def test_stream_is_deterministic_per_seed_and_prompt_id():
    a, b, c = make_dataset("arith-digits", None, 7), make_dataset("arith-digits", None, 7), ArithDigits(8)
    ids = [0, 5, 1234, 99_999]
    assert [a.get(i) for i in ids] == [b.get(i) for i in ids]
    assert [a.get(i) for i in range(50)] != [c.get(i) for i in range(50)]


def test_mod10_answers_wrap():
    ds = ArithMod10(1)
    for i in range(500):
        ex = ds.get(i)
        x, y = (int(v) for v in ex.text[:-1].split("+"))
        assert ex.answer == str((x + y) % 10)
