"""Download a new policy version while the engine generates, so the swap between waves is a copy only.

The rollout worker swaps weights between waves (it must generate with exactly the coordinator's version,
see `RolloutWorker.maybe_update_weights`). Without this, the download itself happened there too, and the
engine stood still for the whole pull. The prefetcher runs beside generation: every `poll_seconds` it asks
the coordinator for the job's version and, when that differs from the engine's, pulls it into a spare
buffer. At the next wave boundary the worker `take`s exactly the version it needs — the prefetched blob
when it is that one, else it pulls it then (waiting for a pull of it already under way rather than pulling
twice). This is what the cost model and the simulator assume: the download overlaps generation and only
the copy into the engine pauses it (costmodel.py, "Weight-update pause").

Without `job_version` (nothing to poll) there is no thread and every version is pulled at the boundary.

One pull at a time: the weight client keeps per-client state (verified chunks, relays it stopped trusting),
so the prefetch thread and the worker's own pulls share it under one lock. Memory: one blob, reused from
version to version — the worker hands back the blob the engine has copied in, and the next pull writes into
it (allocating and page-faulting a fresh buffer per version cost as much as the transfer: a pull reached
15 % of the link, not 60-98 %). Safe: the engine copies the weights in, and a relay server keeps its own copy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from hexrl_workers.protocol import WeightManifest
from hexrl_workers.weights.client import WeightClient, WeightPullError

log = logging.getLogger(__name__)

__all__ = ["PrefetchSettings", "WeightPrefetcher"]


@dataclass(frozen=True)
class PrefetchSettings:
    """Knobs of the weight prefetcher."""

    poll_seconds: float = 1.0
    """How often the prefetch thread asks the coordinator for the job's version, seconds (default 1: a new
    version starts downloading within a second of being announced, a cheap GET the rest of the time)."""


class WeightPrefetcher:
    """Pulls the job's version in the background; `take(v)` hands out exactly version v."""

    def __init__(
        self, weights: WeightClient, engine_version: Callable[[], int],
        job_version: Callable[[], int | None] | None = None, settings: PrefetchSettings | None = None,
    ) -> None:
        self.weights = weights
        self.engine_version = engine_version
        self.job_version = job_version
        """The coordinator's current version (None when it cannot be read: try again at the next poll); None:
        nothing to poll, no prefetching."""
        self.s = settings or PrefetchSettings()
        self._lock = threading.Lock()
        self._ready: tuple[WeightManifest, bytearray] | None = None
        self._spare: bytearray | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handed: int | None = None
        """The version `take` last handed out: the engine has it or is copying it in (its own version changes
        only when the copy is done), so polling must not fetch it again meanwhile."""
        self.prefetched = 0
        """Versions handed out from a finished background pull (the rest were pulled at the wave boundary)."""

    def start(self) -> None:
        if self._thread is None and self.job_version is not None:
            self._thread = threading.Thread(target=self._loop, name="weight-prefetch", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling; a pull under way finishes in the background thread (it is a daemon)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.s.poll_seconds):
            try:
                self.poll_once()
            except Exception as exc:  # the thread must outlive any one failure; the worker pulls itself then
                log.warning("weight prefetch: %s", exc)

    def poll_once(self) -> bool:
        """Pull the job's version when the engine and the prefetched blob both differ from it; True if pulled."""
        version = self.job_version() if self.job_version is not None else None
        if version is None or version in (self.engine_version(), self._handed) or self._holds(version):
            return False
        with self._lock:
            if self._holds(version) or version == self._handed or self._stop.is_set():
                return False
            try:
                self._ready = self.weights.pull(version, into=self._buffer())
            except WeightPullError as exc:
                log.info("weight prefetch of version %d failed (%s); the worker pulls it when it needs it",
                         version, exc)
                return False
        return True

    def take(self, version: int) -> tuple[WeightManifest, bytearray]:
        """Exactly `version`: the prefetched blob, or pulled now (raises WeightPullError like a pull)."""
        with self._lock:
            if self._holds(version):
                assert self._ready is not None
                got, self._ready = self._ready, None
                self.prefetched += 1
            else:
                got = self.weights.pull(version, into=self._buffer())
            self._handed = version
            return got

    def recycle(self, blob: bytearray) -> None:
        """A blob the engine has copied in (and a relay has its own copy of): the next pull writes into it."""
        self._spare = blob

    def _holds(self, version: int) -> bool:
        ready = self._ready
        return ready is not None and ready[0].version == version

    def _buffer(self) -> bytearray | None:
        """A buffer to pull into: an outdated prefetched blob, else the spare (caller holds the lock)."""
        if self._ready is not None:
            outdated, self._ready = self._ready[1], None
            return outdated
        spare, self._spare = self._spare, None
        return spare
