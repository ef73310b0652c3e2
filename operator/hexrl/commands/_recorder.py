"""`hexrl run --record FILE`: sample a running job's coordinator into a recording (`hexrl.sim.recording`).

A `ProgressRecorder` is the local run's observer (`hexrl_workers.local.RunObserver`): when the coordinator
serves it starts a thread that, every `period` seconds, reads `/v1/progress` (with the operator's token) and
the coordinator's `/metrics` (the cumulative trained and generated token counters, which the progress answer
does not carry) and appends one sample; when the run ends it takes a last sample and closes the file. The
header is written when the recorder is made, so a path that cannot be written fails before the job starts.
Every line is flushed as it is written: a killed run leaves a file that replays up to its last sample.

A read that fails (the coordinator busy, a timeout) is skipped with one warning; the run never fails because
of its recording. Samples stop once the coordinator says `done` (later reads would only watch it stop).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hexrl.sim.recording import RecordingHeader, RecordingSample, RecordingWriter, sample_from_progress

log = logging.getLogger(__name__)

READ_TIMEOUT_SECONDS = 5.0
"""How long one read of the coordinator may take before the tick is skipped."""

TRAINED_TOKENS = "hexrl_trained_tokens"
GENERATED_TOKENS = "hexrl_generated_tokens"


def counter_value(metrics_text: str, name: str) -> float:
    """The value of an unlabelled counter in Prometheus text exposition (`name` or `name_total`), 0 if absent."""
    for line in metrics_text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.strip().rpartition(" ")
        if head in (name, f"{name}_total"):
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 0.0


class ProgressRecorder:
    """Writes a recording of one local run (module docstring)."""

    def __init__(self, path: Path, header: RecordingHeader, period: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.writer = RecordingWriter(path, header)
        self.period = period
        self.clock = clock
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._url = self._token = ""
        self._t0 = 0.0
        self._done = False
        self._warned = False
        self._lock = threading.Lock()  # the closing sample must not interleave with a late tick of the thread

    # ------------------------------------------------------------------------------ RunObserver
    def coordinator_up(self, url: str, operator_token: str) -> None:
        self._url, self._token, self._t0 = url, operator_token, self.clock()
        self._thread = threading.Thread(target=self._loop, name="hexrl-recorder", daemon=True)
        self._thread.start()

    def coordinator_closing(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=READ_TIMEOUT_SECONDS * 3)
            self._take()
        with self._lock:
            self._done = True
            self.writer.close()

    # ------------------------------------------------------------------------------ sampling
    def _loop(self) -> None:
        while not self._stop.is_set() and not self._done:
            self._take()
            self._stop.wait(self.period)

    def _get(self, path: str, auth: bool) -> bytes:
        req = urllib.request.Request(self._url + path)
        if auth:
            req.add_header("Authorization", f"Bearer {self._token}")
        with urllib.request.urlopen(req, timeout=READ_TIMEOUT_SECONDS) as resp:
            body: bytes = resp.read()
            return body

    def _read(self) -> RecordingSample:
        t = self.clock() - self._t0
        progress: dict[str, Any] = json.loads(self._get("/v1/progress", auth=True))
        metrics = self._get("/metrics", auth=False).decode("utf-8", "replace")
        return sample_from_progress(t, progress, counter_value(metrics, TRAINED_TOKENS),
                                    counter_value(metrics, GENERATED_TOKENS))

    def _take(self) -> None:
        """One sample, appended (skipped with one warning when the coordinator cannot be read)."""
        with self._lock:
            if self._done:
                return
            try:
                sample = self._read()
            except (OSError, ValueError) as exc:
                if not self._warned:
                    log.warning("recording: cannot read the coordinator (%s); skipping samples until it answers", exc)
                    self._warned = True
                return
            self.writer.write(sample)
            self.samples += 1
            self._done = sample.done
