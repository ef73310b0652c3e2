"""`RewardRunner`: the job's reward, called like a function, run in a separate reward process with a timeout.

Every reward — built-in or the user's — runs in one long-lived child process (`reward.server`), one
sample per request over a pipe. A sample that overruns `reward.timeoutSeconds` gets the process killed
(SIGKILL: a hung function cannot be interrupted from outside otherwise) and raises `RewardTimeout`; the next
call starts a fresh process (its start-up does not count against a sample's timeout). A function that raised
in the child raises `RewardFailed` here, as does a child that died. Start-up loads the reward once: a bad
spec (missing file, syntax error, unknown function) is a ValueError with the child's sentence.

Why a process for everything, fast built-ins included: a thread cannot be stopped, math_verify's own
timeouts only work in a main thread, and one pipe round trip costs 0.1-0.5 ms per sample
(bench/bench_reward_overhead.py), next to seconds of generation: samples go one at a time, not batched.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time

from hexrl.api.rewardspec import RewardSpec

log = logging.getLogger(__name__)

START_SECONDS = 120.0
"""Longest the reward process may take to load the reward (imports, the user's module, the sandbox check)."""


class RewardTimeout(Exception):
    """The reward of one sample ran past reward.timeoutSeconds."""


class RewardFailed(Exception):
    """The reward function raised (or the reward process died) on one sample."""


class RewardRunner:
    """The job's reward in a killable child process; `runner(completion, answer, prompt)` → float."""

    def __init__(self, spec: RewardSpec, start_seconds: float = START_SECONDS) -> None:
        self.spec = spec
        self.timeout = spec.timeout_seconds
        self.start_seconds = start_seconds
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self.restarts = 0
        """Reward processes killed (timeouts) or found dead since start-up."""
        self._start()
        self._await_ready()  # a bad reward is a start-up error, not a first-sample surprise

    # ------------------------------------------------------------------------------------------ calls

    def __call__(self, completion: str, answer: str, prompt: str = "") -> float:
        with self._lock:
            if self._proc is None:
                self._start()
                self._await_ready()
            assert self._proc is not None and self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps([completion, answer, prompt]).encode() + b"\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                self._kill()
                raise RewardFailed(f"the reward process died ({exc})") from exc
            reply = self._read_line(self.timeout)
        if "error" in reply:
            raise RewardFailed(reply["error"])
        return float(reply["reward"])

    def close(self) -> None:
        with self._lock:
            self._kill(count=False)

    # ------------------------------------------------------------------------------------ process

    def _start(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "hexrl_workers.reward.server", self.spec.model_dump_json(by_alias=True)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        self._buffer = b""

    def _await_ready(self) -> None:
        try:
            reply = self._read_line(self.start_seconds)
        except RewardTimeout:
            raise ValueError(f"the reward process did not load the reward within {self.start_seconds:g} s; "
                             "check that reward.function or reward.file does not block at import") from None
        except RewardFailed as exc:
            raise ValueError(f"the reward process could not start: {exc}") from None
        if "error" in reply:
            self._kill(count=False)
            raise ValueError(reply["error"])

    def _read_line(self, timeout: float) -> dict:
        """The child's next reply; kills it and raises RewardTimeout past `timeout`, RewardFailed if it died."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self._kill()
                raise RewardTimeout(f"the reward took longer than reward.timeoutSeconds ({timeout:g} s)")
            chunk = os.read(fd, 65536)
            if not chunk:
                code = self._proc.wait()
                self._kill()
                raise RewardFailed(f"the reward process died (exit status {code})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _kill(self, count: bool = True) -> None:
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        if count:
            self.restarts += 1
            log.warning("reward process stopped (%d so far); a fresh one starts with the next sample", self.restarts)


def check_reward(spec: RewardSpec) -> None:
    """Raise ValueError (a sentence) when the job's reward cannot be loaded (used before a local run starts)."""
    RewardRunner(spec).close()
