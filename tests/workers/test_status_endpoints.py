"""What the kubelet's probes and Prometheus see: every role's /healthz, /readyz and /metrics on its status port,
over real HTTP on 127.0.0.1 — the pod entry points (`python -m hexrl_workers <role>`) as subprocesses, and
the coordinator that keeps serving (not ready, reason in /v1/progress) when its dataset cannot be loaded."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml
from aiohttp import web
from workers_builders import CREDENTIALS, PYTHON, auth, subprocess_env, tiny_spec, write_config

from hexrl_workers.coordinator.core import CoordinatorCore, CoordinatorSettings
from hexrl_workers.coordinator.server import ThreadedCoordinator, build_coordinator
from hexrl_workers.httpcommon import start_site, stop_site
from hexrl_workers.metrics import Metrics
from hexrl_workers.protocol import Trajectory
from hexrl_workers.statusserver import Readiness, ThreadedStatusServer
from hexrl_workers.tasks import make_dataset

pytestmark = pytest.mark.workers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=2)
    except requests.RequestException:
        return None


def _text(url: str) -> str:
    r = _get(url)
    return r.text if r is not None else ""


def _wait(cond, timeout: float, what: str, proc: subprocess.Popen | None = None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"process exited with {proc.returncode} while waiting for {what}:\n{out[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_start_site_serves_on_the_bound_port_and_stop_site_frees_it():
    """The one start/stop every service uses: port 0 binds a free port and says which; after `stop_site`
    the port is free again; a port already taken raises and leaves nothing serving."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    def app() -> web.Application:
        a = web.Application()
        a.router.add_get("/", hello)
        return a

    async def scenario() -> None:
        runner, port = await start_site(app(), "127.0.0.1", 0)
        assert port > 0
        assert (await asyncio.to_thread(requests.get, f"http://127.0.0.1:{port}/", timeout=5)).text == "hi"
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            with pytest.raises(OSError):
                await start_site(app(), "127.0.0.1", taken.getsockname()[1])
        await stop_site(runner)
        assert await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/") is None
        await stop_site(None)

    asyncio.run(scenario())


def test_status_server_reports_readiness_with_its_reason_liveness_and_metrics():
    metrics, readiness = Metrics("trainer"), Readiness("building the model")
    server = ThreadedStatusServer(metrics, readiness, host="127.0.0.1")
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        r = requests.get(f"{base}/readyz", timeout=5)
        assert r.status_code == 503 and r.json() == {"ready": False, "reason": "building the model"}
        readiness.set_ready()
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
        metrics["hexrl_policy_version"].set(7)
        assert "hexrl_policy_version 7.0" in requests.get(f"{base}/metrics", timeout=5).text
    finally:
        server.close()


def test_coordinator_without_its_dataset_stays_live_not_ready_and_says_why_until_the_config_fixes_it(tmp_path):
    spec = tiny_spec(**{"dataset.name": "gsm8k"})
    with pytest.raises(ValueError, match="gsm8k"):  # `hexrl run` and tests keep the immediate error
        build_coordinator(spec, CREDENTIALS)
    config = write_config(tmp_path, spec, "http://127.0.0.1:1", "http://127.0.0.1:2")
    server = build_coordinator(spec, CREDENTIALS, config_path=str(config), tolerate_data_error=True)
    server.settings.config_poll_seconds = 0.1
    coord = ThreadedCoordinator(server)
    try:
        assert requests.get(f"{coord.url}/healthz", timeout=5).status_code == 200
        ready = requests.get(f"{coord.url}/readyz", timeout=5)
        assert ready.status_code == 503 and "unknown dataset.name 'gsm8k'" in ready.json()["reason"]
        progress = requests.get(f"{coord.url}/v1/progress", headers=auth("operator"), timeout=5).json()
        assert progress["dataError"].startswith("dataset unavailable: unknown dataset.name 'gsm8k'")
        work = requests.post(f"{coord.url}/v1/work", headers=auth("rollout"), timeout=5,
                             json={"workerId": "w", "maxItems": 1, "waitSeconds": 0})
        assert work.status_code == 503 and work.json()["field"] == "dataset"  # 5xx: clients retry, not exit

        fixed = yaml.safe_load(config.read_text())
        fixed["spec"]["dataset"] = {"name": "arith-digits"}
        config.write_text(yaml.safe_dump(fixed))
        _wait(lambda: (r := _get(f"{coord.url}/readyz")) is not None and r.status_code == 200, 10,
              "the coordinator to load the fixed dataset")
        assert requests.get(f"{coord.url}/v1/progress", headers=auth("operator"), timeout=5).json().get("dataError") is None
        work = requests.post(f"{coord.url}/v1/work", headers=auth("rollout"), timeout=5,
                             json={"workerId": "w", "maxItems": 1, "waitSeconds": 0})
        assert work.status_code == 200 and work.json()["items"]
    finally:
        coord.close()


def test_mean_reward_averages_the_last_trained_batches():
    core = CoordinatorCore(CoordinatorSettings(prompts_per_step=1, group_size=2, max_policy_lag=4, reward_window=2),
                           make_dataset("arith-digits", None, 0))
    assert core.mean_reward is None
    for reward in (0.0, 1.0, 0.5):
        (item,) = core.dispatch("w", 1, 0.0)[0]
        for k in range(2):
            core.ingest(Trajectory(item_id=item.item_id, epoch=item.epoch, group_id=item.group_id, group_size=2,
                                   sample_index=k, prompt_id=item.prompt.prompt_id, prompt_tokens=[1, 3],
                                   tokens=[4], logprobs=[-1.0], versions=[core.version], reward=reward,
                                   worker_id="w", finished=True))
        batch = core.take_batch(core.version)
        assert batch is not None
        core.acknowledge(core.version + 1, batch.batch_id)
    assert core.last_reward == 0.5
    assert core.mean_reward == pytest.approx(0.75)  # the last two batches: 1.0 and 0.5


def test_pod_entry_points_serve_probes_on_their_status_ports(tmp_path: Path):
    """A rollout worker (without relay) and a trainer rank, as in their pods: not ready while the coordinator is
    away (the worker waits for it instead of exiting), ready once it answers and — for the trainer — once
    version 0 is published; /metrics on the same port."""
    spec = tiny_spec(**{"weightSync.relay": False, "algorithm.totalSteps": 1000})
    coord_port, relay_port, trainer_port, weights_port = (_free_port() for _ in range(4))
    coord_url = f"http://127.0.0.1:{coord_port}"
    config = write_config(tmp_path, spec, coord_url, f"http://127.0.0.1:{weights_port}",
                          checkpoint_dir=str(tmp_path / "ck"))
    ports = {"HEXRL_RELAY_PORT": str(relay_port), "HEXRL_TRAINER_METRICS_PORT": str(trainer_port),
             "HEXRL_WEIGHTS_PORT": str(weights_port), "HEXRL_POD_IP": "127.0.0.1"}
    procs = {role: subprocess.Popen([PYTHON, "-m", "hexrl_workers", role], env=subprocess_env(config, role, **ports),
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True) for role in ("rollout", "trainer")}
    coord = None
    try:
        for role, port in (("rollout", relay_port), ("trainer", trainer_port)):
            # a list: a Response with a 5xx status is falsy
            (r,) = _wait(lambda p=port: [r] if (r := _get(f"http://127.0.0.1:{p}/readyz")) is not None else None,
                         120, f"the {role}'s /readyz", procs[role])
            assert r.status_code == 503, (role, r.text)
            assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        _wait(lambda: "coordinator" in _text(f"http://127.0.0.1:{trainer_port}/readyz"), 120, "the trainer to build its model and wait for the coordinator", procs["trainer"])
        time.sleep(6)  # past the first log line of the wait: still running, still not ready
        assert all(p.poll() is None for p in procs.values())
        coord = ThreadedCoordinator(build_coordinator(spec, CREDENTIALS), host="127.0.0.1", port=coord_port)
        for role, port in (("rollout", relay_port), ("trainer", trainer_port)):
            _wait(lambda p=port: (r := _get(f"http://127.0.0.1:{p}/readyz")) is not None and r.status_code == 200,
                  120, f"the {role} to become ready", procs[role])
            assert "hexrl_policy_version" in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        weights = requests.get(f"http://127.0.0.1:{weights_port}/v1/weights/latest",
                               headers=auth("rollout"), timeout=5)
        assert weights.status_code == 200  # rank 0 is ready only once the weight service serves a version
    finally:
        for p in procs.values():
            _stop(p)
        if coord is not None:
            coord.close()
    log = procs["rollout"].stdout.read() if procs["rollout"].stdout else ""
    assert "unavailable for" in log, log[-2000:]  # the wait was logged
