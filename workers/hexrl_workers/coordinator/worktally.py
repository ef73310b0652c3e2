"""Cumulative work per (GPU type, phase), summed from the workers' reports for the operator's calibration.

Rollout workers report, with each push, the tokens they generated and the GPU-seconds they were busy with them
(weights, generation, reward, pushing; not waiting for work); the trainer reports, with each new version, the
tokens of the step and the GPU-seconds of the step and its publishing (`WorkReport`). The
coordinator only adds them up; `/v1/progress` serves the sums (`Progress.observedWork`). The operator reads
them twice and turns the difference into an observed rate, ΔTokens / ΔSeconds, per GPU-second of one GPU
type and phase: a rate over an interval, not since the start, so it follows what the job does now.

The sums start at zero with the coordinator process (they are not checkpointed): a reader that sees a sum
go down knows the coordinator restarted and starts its differences afresh. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable

from hexrl_workers.protocol import WorkReport

__all__ = ["WorkTally"]


class WorkTally:
    """Sums of tokens and GPU-seconds per (GPU type, phase)."""

    def __init__(self) -> None:
        self._sums: dict[tuple[str, str], tuple[int, float]] = {}

    def add(self, reports: Iterable[WorkReport]) -> None:
        """Add the reports' tokens and seconds to their cells (a report of no seconds adds nothing: it
        carries no rate)."""
        for r in reports:
            if r.seconds <= 0:
                continue
            tokens, seconds = self._sums.get((r.gpu, r.phase), (0, 0.0))
            self._sums[(r.gpu, r.phase)] = (tokens + r.tokens, seconds + r.seconds)

    def reports(self) -> list[WorkReport]:
        """The sums, one report per cell, sorted by GPU type then phase."""
        return [WorkReport(gpu=gpu, phase=phase, tokens=tokens, seconds=seconds)  # type: ignore[arg-type]
                for (gpu, phase), (tokens, seconds) in sorted(self._sums.items())]
