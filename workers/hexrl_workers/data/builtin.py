"""Tokenizers and prompt datasets for jobs that run without any download.

The default job needs a tokenizer and a task that exist offline: `CharTokenizer` maps each character of a
small alphabet to one id (after three specials), and `arith-digits` generates "a+b=" prompts whose
answer is a single digit. The dataset is a deterministic stream indexed by `prompt_id` (the coordinator's
cursor), so a checkpoint stores one integer to resume the data order exactly.

`dataset.path` (JSONL of {"prompt": ..., "answer": ...}) replaces the built-in task; the stream then
cycles through the file in a seeded, per-epoch shuffled order.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

from hexrl_workers.protocol import Prompt


class Tokenizer(Protocol):
    pad_id: int
    bos_id: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...


CHAR_ALPHABET = "0123456789+-*= "
"""Characters of the built-in tokenizer (ids 3.. in this order)."""


class CharTokenizer:
    """One id per character: 0 = pad, 1 = bos, 2 = eos, then `CHAR_ALPHABET`; unknown ids decode to ''."""

    pad_id = 0
    bos_id = 1
    eos_id = 2

    def __init__(self, alphabet: str = CHAR_ALPHABET) -> None:
        self.alphabet = alphabet
        self._to_id = {c: i + 3 for i, c in enumerate(alphabet)}

    @property
    def size(self) -> int:
        return len(self.alphabet) + 3

    def encode(self, text: str) -> list[int]:
        missing = sorted({c for c in text if c not in self._to_id})
        if missing:
            raise ValueError(f"characters {missing!r} are not in the built-in tokenizer's alphabet {self.alphabet!r}")
        return [self.bos_id] + [self._to_id[c] for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.alphabet[i - 3] for i in ids if 3 <= i < 3 + len(self.alphabet))


class HFTokenizer:
    """A `transformers` tokenizer loaded from a local model directory."""

    def __init__(self, path: str) -> None:
        from transformers import AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.eos_id = int(self._tok.eos_token_id if self._tok.eos_token_id is not None else 0)
        self.pad_id = int(self._tok.pad_token_id if self._tok.pad_token_id is not None else self.eos_id)
        self.bos_id = int(self._tok.bos_token_id if self._tok.bos_token_id is not None else self.eos_id)

    def encode(self, text: str) -> list[int]:
        ids = list(self._tok.encode(text))
        return ids or [self.bos_id]

    def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True))


# ------------------------------------------------------------------------------------------ datasets


@dataclass(frozen=True)
class Example:
    text: str
    answer: str


class Dataset(Protocol):
    def get(self, prompt_id: int) -> Example: ...


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


class JsonlDataset:
    """Records {"prompt": str, "answer": str} from a file, cycled in a seeded order per epoch."""

    def __init__(self, path: str, seed: int) -> None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"dataset.path {path!r} does not exist; give a JSONL file of prompt/answer records")
        self.records: list[Example] = []
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                self.records.append(Example(str(obj["prompt"]), str(obj.get("answer", ""))))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: expected a JSON object with a 'prompt' key ({exc})") from exc
        if not self.records:
            raise ValueError(f"dataset.path {path!r} has no records")
        self.seed = seed

    def get(self, prompt_id: int) -> Example:
        epoch, idx = divmod(prompt_id, len(self.records))
        order = list(range(len(self.records)))
        random.Random(self.seed * 7919 + epoch).shuffle(order)
        return self.records[order[idx]]


BUILTIN_DATASETS = {"arith-digits": ArithDigits, "arith-mod10": ArithMod10}


def make_dataset(name: str, path: str | None, seed: int) -> Dataset:
    if path:
        return JsonlDataset(path, seed)
    if name not in BUILTIN_DATASETS:
        raise ValueError(f"unknown dataset.name {name!r}; built-in tasks: {sorted(BUILTIN_DATASETS)} (or set dataset.path)")
    return BUILTIN_DATASETS[name](seed)


def make_prompt(dataset: Dataset, prompt_id: int) -> Prompt:
    ex = dataset.get(prompt_id)
    return Prompt(prompt_id=prompt_id, text=ex.text, answer=ex.answer)
