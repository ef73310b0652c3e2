"""The data order of a file dataset: prompt id → (epoch, record index), a seeded shuffle per epoch.

Deterministic in (seed, epoch) alone, so the coordinator's cursor (an integer in the checkpoint) restores the
order exactly. The shuffle is `random.Random(seed * 7919 + epoch)` over the record indexes: the formula the
old JSONL loader used, so a resumed job of that era keeps its order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hexrl_workers.data.records import DatasetExhausted


@dataclass
class EpochOrder:
    """Which record a prompt id reads."""

    records: int
    """Records in the files (> 0)."""
    seed: int
    """Shuffle seed (spec.dataset.seed, else spec.algorithm.seed)."""
    shuffle: bool = True
    """False: every epoch reads the records in file order."""
    epochs: int | None = None
    """Passes over the records; None: endless."""
    _cached: tuple[int, list[int]] | None = field(default=None, repr=False)
    """(epoch, permutation) of the last epoch asked for: prompt ids arrive in order, so one shuffle per epoch."""

    @property
    def prompt_count(self) -> int | None:
        """Prompt ids in all epochs (None: endless)."""
        return None if self.epochs is None else self.epochs * self.records

    def position(self, prompt_id: int) -> tuple[int, int]:
        """(epoch, record index) of `prompt_id`; DatasetExhausted after the last epoch."""
        epoch, offset = divmod(prompt_id, self.records)
        if self.epochs is not None and epoch >= self.epochs:
            raise DatasetExhausted(
                f"prompt {prompt_id} is past the dataset's last epoch ({self.epochs} × {self.records} records)"
            )
        return epoch, self._permutation(epoch)[offset] if self.shuffle else offset

    def _permutation(self, epoch: int) -> list[int]:
        if self._cached is None or self._cached[0] != epoch:
            order = list(range(self.records))
            random.Random(self.seed * 7919 + epoch).shuffle(order)
            self._cached = (epoch, order)
        return self._cached[1]
