"""Atomic checkpoints: kill the trainer during a checkpoint write and between steps; resume."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time

import pytest
import torch
from workers_builders import CREDENTIALS, PYTHON, TOKENS, subprocess_env, tiny_spec, write_config

from hexrl_workers.coordinator.server import ThreadedCoordinator
from hexrl_workers.protocol import WorkResponse
from hexrl_workers.rollout.worker import RolloutSettings, RolloutWorker
from hexrl_workers.runtime import build_coordinator, build_rollout_worker
from hexrl_workers.trainer import checkpoint
from hexrl_workers.weights.client import WeightPullError

pytestmark = [pytest.mark.workers, pytest.mark.slow]

CRASHING_TRAINER = """
import os, signal, sys
from hexrl_workers.trainer import checkpoint
real_commit = checkpoint._commit
def commit(tmp, final):
    if final.name == "step-00000004":
        os.kill(os.getpid(), signal.SIGKILL)  # dies with the files written but not yet renamed
    real_commit(tmp, final)
checkpoint._commit = commit
from hexrl_workers.__main__ import main
sys.exit(main(["trainer"]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _trained_linear(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    optim = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(5, 3)).sum().backward()
    optim.step()
    return model, optim


def test_checkpoint_write_is_atomic_and_unit_roundtrip(tmp_path):
    model, optim = _trained_linear(0)
    checkpoint.save(tmp_path, 2, model, optim, lambda: {"policyVersion": 2, "coordinator": {}})
    (tmp_path / ".tmp-step-00000004").mkdir()  # a write that never completed
    (tmp_path / ".tmp-step-00000004" / "__0_0.distcp").write_bytes(b"half")
    assert checkpoint.latest(tmp_path).name == "step-00000002"
    other, other_optim = _trained_linear(1)  # different weights and moments, overwritten by the load
    meta = checkpoint.load_into(checkpoint.latest(tmp_path), other, other_optim)
    assert meta["policyVersion"] == 2 and meta["step"] == 2
    for (name, p), q in zip(model.named_parameters(), other.parameters(), strict=True):
        assert torch.equal(p, q), name
        assert torch.equal(optim.state[p]["exp_avg_sq"], other_optim.state[q]["exp_avg_sq"]), name
    full_model, full_optim, _ = checkpoint.load_full(checkpoint.latest(tmp_path))
    assert torch.equal(full_model["0.weight"], model[0].weight) and full_optim["state"]
    checkpoint.save(tmp_path, 4, model, optim, lambda: {"policyVersion": 4, "coordinator": {}}, keep=1)
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000004"]  # pruned and cleaned
    checkpoint.save(tmp_path, 4, other, other_optim, lambda: {"policyVersion": 4, "coordinator": {}}, keep=1)
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000004"]  # re-saved in place


def test_kill_during_write_and_between_steps_then_resume(tmp_path):
    spec = tiny_spec(**{"algorithm.totalSteps": 8, "checkpoint.everySteps": 2, "algorithm.promptsPerStep": 4,
                        "weightSync.relay": False})
    server = build_coordinator(spec, CREDENTIALS)
    core = server.core
    restores: list[dict] = []
    real_restore = core.restore

    def recording_restore(snap):
        real_restore(snap)
        restores.append({
            "version": core.version,
            "groups_match": set(core.groups) == {g["groupId"] for g in snap["groups"]},
            "buffered": core.buffer_depth,
            "snapshot_buffered": sum(len(g["done"]) for g in snap["groups"]),
        })

    core.restore = recording_restore
    coord = ThreadedCoordinator(server)
    port = _free_port()
    weights_url = f"http://127.0.0.1:{port}"
    ckdir = tmp_path / "ck"
    config = write_config(tmp_path, spec, coord.url, weights_url, checkpoint_dir=str(ckdir))
    env = subprocess_env(config, HEXRL_WEIGHTS_PORT=str(port))
    worker, _ = build_rollout_worker(spec, coord.url, weights_url, TOKENS["rollout"], "w0", relay_host="127.0.0.1",
                                     torch_threads=1, credentials=CREDENTIALS)
    wt = threading.Thread(target=worker.run, daemon=True)
    wt.start()
    procs: list[subprocess.Popen] = []
    try:
        # phase 1: the trainer dies inside the write of the step-4 checkpoint
        script = tmp_path / "crashing_trainer.py"
        script.write_text(CRASHING_TRAINER)
        p1 = subprocess.Popen([PYTHON, str(script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(p1)
        assert p1.wait(360) == -signal.SIGKILL
        names = sorted(p.name for p in ckdir.iterdir())
        assert "step-00000002" in names and "step-00000004" not in names
        assert any(n.startswith(".tmp-step-00000004") for n in names)
        assert core.version == 4  # the coordinator saw step 4 trained; the checkpoint of it is incomplete

        # phase 2: resume from step 2; the coordinator is rolled back to the checkpoint's state
        p2 = subprocess.Popen([PYTHON, "-m", "hexrl_workers", "trainer"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        procs.append(p2)
        _wait(lambda: len(restores) == 1, 240, "the resumed trainer to restore the coordinator")
        assert restores[0]["version"] == 2
        assert restores[0]["groups_match"] and restores[0]["buffered"] == restores[0]["snapshot_buffered"]
        # kill it between steps, once the step-4 checkpoint exists and training went beyond it
        _wait(lambda: (ckdir / "step-00000004").is_dir() and core.version >= 5, 240, "training past step 4")
        p2.send_signal(signal.SIGKILL)
        p2.wait(30)
        assert checkpoint.latest(ckdir).name in ("step-00000004", "step-00000006")
        expected = int(checkpoint.latest(ckdir).name.split("-")[1])
        snap = json.loads((checkpoint.latest(ckdir) / "meta.json").read_text())["coordinator"]
        assert snap["version"] == expected

        # phase 3: resume from the last complete checkpoint and finish the job
        p3 = subprocess.Popen([PYTHON, "-m", "hexrl_workers", "trainer"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        procs.append(p3)
        assert p3.wait(480) == 0, p3.stderr.read().decode()[-2000:] if p3.stderr else ""
        if core.version != expected or len(restores) > 1:
            assert restores[1]["version"] == expected and restores[1]["groups_match"]
        assert core.version == 8 and core.trained_steps == 8
        assert len(core.trained_prompt_ids) == len(set(core.trained_prompt_ids)) == 8 * 4
        assert checkpoint.latest(ckdir).name == "step-00000008"
    finally:
        worker.stop()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        wt.join(30)
        coord.close()


class _AheadEngine:
    """Holds version 5 while the job has rolled back to 4; records whether it was asked to generate."""

    version = 5

    def __init__(self) -> None:
        self.generated = 0

    def generate(self, reqs, stop):  # pragma: no cover - the test fails if this runs
        self.generated += 1
        return []


class _Weights:
    def __init__(self) -> None:
        self.asked: list[int] = []

    def pull(self, version, into=None):
        self.asked.append(version)
        raise WeightPullError(f"version {version} is not held here (held: [])")


class _Coordinator:
    def __init__(self, worker) -> None:
        self.worker = worker
        self.pushed: list = []
        spec = tiny_spec()
        core = build_coordinator(spec, CREDENTIALS).core
        core.version = 4
        self.items, _ = core.dispatch("w", 1, now=0.0)

    def work(self, worker_id, max_items, wait):
        if len(self.pushed) >= 2:
            self.worker.stop()
        return WorkResponse(items=self.items, policy_version=4)

    def push(self, batch):
        self.pushed.append(batch)


def test_worker_ahead_of_a_rolled_back_job_returns_its_work_instead_of_generating():
    engine, weights = _AheadEngine(), _Weights()
    worker = RolloutWorker(RolloutSettings(worker_id="w", rollback_retry_seconds=0.01), engine, None, None,
                           None, weights)
    worker.coord = coord = _Coordinator(worker)
    worker.run()
    assert engine.generated == 0
    assert weights.asked and set(weights.asked) == {4}  # kept asking for the job's version
    ids = [i.item_id for i in coord.items]
    assert coord.pushed and all(b.released_item_ids == ids and not b.trajectories for b in coord.pushed)


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "empty", "delete a shard", "garble meta.json"])
def test_a_damaged_newest_checkpoint_is_passed_over_for_the_newest_intact_one(tmp_path, damage):
    model, optim = _trained_linear(0)
    checkpoint.save(tmp_path, 2, model, optim, lambda: {"policyVersion": 2, "coordinator": {}})
    checkpoint.save(tmp_path, 4, model, optim, lambda: {"policyVersion": 4, "coordinator": {}})
    newest = tmp_path / "step-00000004"
    shard = next(newest.glob("__0_*.distcp"))
    data = bytearray(shard.read_bytes())
    if damage == "flip a byte":
        data[len(data) // 2] ^= 0x01  # inside tensor data: loads without complaint unless checked
        shard.write_bytes(bytes(data))
    elif damage == "truncate":
        shard.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "empty":
        shard.write_bytes(b"")
    elif damage == "delete a shard":
        shard.unlink()
    else:
        (newest / "meta.json").write_text('{"policyVersion": 4, "fi')
    assert checkpoint.problems(newest), damage
    assert checkpoint.problems(tmp_path / "step-00000002") == []
    skipped: list[tuple] = []
    chosen = checkpoint.latest_intact(tmp_path, on_skip=lambda p, why: skipped.append((p.name, why)))
    assert chosen is not None and chosen.name == "step-00000002"
    assert skipped and skipped[0][0] == "step-00000004"
    other, other_optim = _trained_linear(1)
    assert checkpoint.load_into(chosen, other, other_optim)["policyVersion"] == 2
