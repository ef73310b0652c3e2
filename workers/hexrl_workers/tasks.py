"""Tokenizers of the job's model, and the dataset names kept importable from here.

`CharTokenizer` maps each character of a small alphabet to one id (after three specials): the built-in
tasks' tokenizer, which needs no download and has no chat template. `HFTokenizer` wraps a `transformers`
tokenizer loaded from the local model directory (and its chat template, see `hexrl_workers.rollout.prompts`).

The datasets moved to `hexrl_workers.data`; `make_dataset`, `make_prompt` and the built-in task classes
are re-exported here for callers of the old module.
"""

from __future__ import annotations

from typing import Any, Protocol

from hexrl_workers.data import (
    BUILTIN_DATASETS,
    ArithDigits,
    ArithMod10,
    Dataset,
    DatasetExhausted,
    Example,
    dataset_from_spec,
    make_dataset,
    make_prompt,
)

__all__ = [
    "BUILTIN_DATASETS", "CHAR_ALPHABET", "ArithDigits", "ArithMod10", "CharTokenizer", "Dataset", "DatasetExhausted",
    "Example", "HFTokenizer", "Tokenizer", "dataset_from_spec", "make_dataset", "make_prompt",
]


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

    @property
    def hf(self) -> Any:
        """The `transformers` tokenizer itself (for its chat template)."""
        return self._tok

    def encode(self, text: str) -> list[int]:
        ids = list(self._tok.encode(text))
        return ids or [self.bos_id]

    def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True))
