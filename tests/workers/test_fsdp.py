"""A trainer pod of two processes (the pod's launcher, FSDP2 over gloo on CPU), against a real coordinator and
rollout worker: uneven row shares and several PPO minibatches per batch (every rank must issue the same
collectives, or the gang hangs), publishing from sharded state, a full checkpoint."""

from __future__ import annotations

import socket
import subprocess
import threading

import pytest
import torch
from workers_builders import CREDENTIALS, PYTHON, TOKENS, subprocess_env, tiny_spec, write_config

from hexrl_workers.coordinator.server import ThreadedCoordinator
from hexrl_workers.runtime import build_coordinator, build_rollout_worker
from hexrl_workers.trainer import checkpoint
from hexrl_workers.weights.client import WeightClient, WeightClientSettings
from hexrl_workers.weights.store import unpack

pytestmark = [pytest.mark.workers, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_fsdp_ranks_train_publish_and_checkpoint(tmp_path):
    # 3 prompts × 3 = 9 rows, micro-batch 2, 2 minibatches: shares of 5 and 4 rows (3 and 2 micro-batches of
    # their own), so a rank runs padding passes and the π_prox pre-pass must match the update's pass count
    spec = tiny_spec(**{"algorithm.totalSteps": 3, "algorithm.promptsPerStep": 3, "algorithm.groupSize": 3,
                        "algorithm.microBatchSize": 2, "algorithm.ppoMinibatches": 2,
                        "checkpoint.everySteps": 3, "weightSync.relay": False,
                            "reward.function": "workers_builders:parity_reward"})
    server = build_coordinator(spec, CREDENTIALS)
    coord = ThreadedCoordinator(server)
    wport, mport = _free_port(), _free_port()
    weights_url = f"http://127.0.0.1:{wport}"
    ckdir = tmp_path / "ck"
    config = write_config(tmp_path, spec, coord.url, weights_url, checkpoint_dir=str(ckdir))
    worker, _ = build_rollout_worker(spec, coord.url, weights_url, TOKENS["rollout"], "w0", relay_host="127.0.0.1",
                                     torch_threads=1, credentials=CREDENTIALS)
    wt = threading.Thread(target=worker.run, daemon=True)
    wt.start()
    procs = []
    try:
        env = subprocess_env(config, LOCAL_WORLD_SIZE="2", HEXRL_DATA_PARALLEL="2", HEXRL_FSDP="true",
                             MASTER_ADDR="127.0.0.1", MASTER_PORT=str(mport), HEXRL_WEIGHTS_PORT=str(wport))
        procs.append(subprocess.Popen([PYTHON, "-m", "hexrl_workers", "trainer"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        # rank 0 serves the weights of the final version until it exits: fetch them while it runs
        import time

        deadline = time.monotonic() + 300  # two ranks + a rollout worker on a loaded 2-core machine
        while server.core.version < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        if server.core.version != 3:
            for p in procs:
                p.kill()
            raise AssertionError("\n".join(p.stderr.read().decode()[-2000:] for p in procs if p.stderr))
        for p in procs:
            assert p.wait(240) == 0, p.stderr.read().decode()[-3000:] if p.stderr else ""
        ck = checkpoint.latest(ckdir)
        assert ck is not None and ck.name == "step-00000003"
        model_state, optim_state, meta = checkpoint.load_full(ck)
        assert meta["policyVersion"] == 3 and optim_state["state"]
        # the gathered weights moved away from the initial ones
        from hexrl_workers.modeling import build_model

        init = build_model(spec).state_dict()
        moved = sum(float((model_state[k] - init[k]).abs().sum()) for k in init)
        assert moved > 0
        # rank 0's final export holds the gathered weights of the last step, the checkpoint's
        from safetensors.torch import load_file

        exported = load_file(ckdir / "hf-final" / "model.safetensors")
        assert set(exported) == set(model_state)
        assert all(torch.equal(exported[k], model_state[k]) for k in exported)
    finally:
        worker.stop()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        wt.join(30)
        coord.close()
        _ = (WeightClient, WeightClientSettings, unpack, torch)
