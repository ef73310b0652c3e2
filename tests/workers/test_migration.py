"""Token-level migration: SIGTERM a real rollout worker process mid-generation; another continues."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from workers_builders import CREDENTIALS, PYTHON, TOKENS, subprocess_env, tiny_spec, write_config

from hexrl_workers.coordinator.server import ThreadedCoordinator
from hexrl_workers.coordinator_client import CoordinatorClient
from hexrl_workers.runtime import build_coordinator

pytestmark = [pytest.mark.workers, pytest.mark.slow]


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _start(config, name: str) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", "hexrl_workers", "rollout"],
                            env=subprocess_env(config, "rollout", HOSTNAME=name), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_sigterm_hands_partials_to_another_worker_which_continues_from_the_last_token(tmp_path):
    # A large vocabulary makes EOS rare, so responses run long enough to be cut mid-generation.
    spec = tiny_spec(**{
        "model.shape.vocab": 2048, "generation.maxNewTokens": 1500, "generation.meanNewTokens": 1000,
        "algorithm.groupSize": 2, "algorithm.promptsPerStep": 4, "algorithm.totalSteps": 1,
        "weightSync.relay": False,
    })
    server = build_coordinator(spec, CREDENTIALS)
    coord = ThreadedCoordinator(server)
    core = server.core
    config = write_config(tmp_path, spec, coord.url, "http://127.0.0.1:9")  # version 0 never needs a pull
    procs = []
    try:
        a = _start(config, "worker-a")
        procs.append(a)
        _wait(lambda: any(lease.worker_id == "worker-a" for lease in core.leases.values()), 240, "worker-a to take work")
        time.sleep(0.3)
        a.send_signal(signal.SIGTERM)
        assert a.wait(30) == 0, a.stdout.read() if a.stdout else ""
        partials = [(gid, spec_.model_copy(deep=True)) for gid, spec_ in core.continuations if spec_.prefix_tokens]
        assert partials, "worker-a finished before the SIGTERM; nothing was migrated"
        assert core.partials_received == len(partials)
        assert all(0 < len(s.prefix_tokens) < 1500 for _, s in partials)
        assert not core.leases, "worker-a left work unaccounted for"

        b = _start(config, "worker-b")
        procs.append(b)
        _wait(lambda: len(core.ready) == 4, 360, "worker-b to complete every group")
        for gid, s in partials:
            traj = core.groups[gid].done[s.sample_index]
            n = len(s.prefix_tokens)
            assert traj.tokens[:n] == s.prefix_tokens  # continued from exactly its last token
            assert traj.logprobs[:n] == s.prefix_logprobs
            assert traj.versions[:n] == s.prefix_versions
            assert traj.worker_id == "worker-b"
            assert len(traj.tokens) > n or traj.finished
        assert core.partials_migrated == len(partials)

        # the trainer's view: one batch with every prompt exactly once, none lost
        client = CoordinatorClient(coord.url, TOKENS["trainer"])
        batch = client.batch(0, wait_seconds=10)
        assert batch is not None and len(batch.trajectories) == 8
        client.new_version(1, batch.batch_id)
        assert sorted(core.trained_prompt_ids) == list(range(core.cursor)) == [0, 1, 2, 3]
        assert b.wait(120) == 0  # the job is done: worker-b exits by itself
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        coord.close()
