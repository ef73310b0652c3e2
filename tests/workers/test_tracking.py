"""Experiment tracking from the real trainer: a tracker that fails is dropped with one warning and training goes
on; stopping the trainer (what SIGTERM does in a pod) closes every run cleanly; the fan-out isolates backends."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import pytest
from tracking_readers import tensorboard_steps, wandb_history, wandb_records
from workers_builders import CREDENTIALS, TOKENS, tiny_spec

from hexrl.api.models import RLJobSpec
from hexrl_workers.coordinator.server import ThreadedCoordinator
from hexrl_workers.runtime import build_coordinator, build_rollout_worker
from hexrl_workers.tracking import FanOut, flatten
from hexrl_workers.trainer.loop import Trainer, TrainerSettings

pytestmark = pytest.mark.workers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _train_until(spec: RLJobSpec, ckdir: Path, steps: int, stop_after: int | None = None) -> Trainer:
    """The real trainer with a coordinator and one rollout worker in this process; `stop_after`: set the
    trainer's stop event (as its SIGTERM handler does) once that many steps are trained."""
    coord = ThreadedCoordinator(build_coordinator(spec, CREDENTIALS))
    port = _free_port()
    stop = threading.Event()
    trainer = Trainer(spec, TrainerSettings(
        coordinator_url=coord.url, token=TOKENS["trainer"], credentials=CREDENTIALS, checkpoint_dir=str(ckdir),
        total_steps=steps, weights_port=port, torch_threads=1, batch_wait_seconds=1.0, job_name="track-test",
    ), stop=stop)
    worker, _ = build_rollout_worker(spec, coord.url, f"http://127.0.0.1:{port}", TOKENS["rollout"], "w0",
                                     relay_host="127.0.0.1", torch_threads=1, credentials=CREDENTIALS)
    threads = [threading.Thread(target=worker.run, daemon=True)]
    if stop_after is not None:
        def stopper() -> None:
            while trainer.version < stop_after and not stop.is_set():
                time.sleep(0.05)
            stop.set()
        threads.append(threading.Thread(target=stopper, daemon=True))
    for t in threads:
        t.start()
    try:
        trainer.run(stop)
    finally:
        trainer.close()
        worker.stop()
        threads[0].join(30)
        coord.close()
    return trainer


def _spec(tracking: dict) -> RLJobSpec:
    return tiny_spec(**{"algorithm.promptsPerStep": 2, "algorithm.groupSize": 2, "checkpoint.everySteps": 100,
                        "export.atEnd": False, "tracking": tracking})


def test_a_failing_tracker_is_dropped_with_one_warning_and_training_goes_on(tmp_path, caplog):
    closed = _free_port()  # nothing listens there
    spec = _spec({"mlflow": {"trackingUri": f"http://127.0.0.1:{closed}", "experiment": "x"}})
    with caplog.at_level(logging.WARNING, logger="hexrl_workers.tracking"):
        trainer = _train_until(spec, tmp_path / "ck", steps=2)
    assert trainer.version == 2 and set(trainer.tracker.failed) == {"mlflow"}
    warnings = [r.getMessage() for r in caplog.records if r.name == "hexrl_workers.tracking"]
    assert len(warnings) == 1 and "training continues without it" in warnings[0]
    assert tensorboard_steps(tmp_path / "ck" / "tensorboard", "train/loss") == [1, 2]


def test_stopping_the_trainer_closes_every_run_cleanly(tmp_path):
    spec = _spec({"wandb": {"project": "p", "mode": "offline", "dir": str(tmp_path / "wb")},
                  "tensorboard": {"dir": str(tmp_path / "tb")},
                  "mlflow": {"trackingUri": (tmp_path / "mlruns").as_uri(), "runName": "stopped"}})
    trainer = _train_until(spec, tmp_path / "ck", steps=10_000, stop_after=2)
    assert 2 <= trainer.version < 10_000
    logged = tensorboard_steps(tmp_path / "tb", "train/reward")
    assert logged == list(range(1, trainer.version + 1))
    run_file = next((tmp_path / "wb" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert [int(r["_step"]) for r in wandb_history(str(run_file))] == logged
    assert wandb_records(str(run_file))[-1].WhichOneof("record_type") == "exit"  # finish() ended the run

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    [run] = client.search_runs([client.get_experiment_by_name("hexrl").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "stopped"
    assert run.data.params["algorithm.groupSize"] == "2"


class _Recorder:
    def __init__(self, name: str, fail_in: str | None = None) -> None:
        self.name, self.fail_in, self.calls = name, fail_in, []

    def start(self, params):
        self._call("start")

    def log(self, step, scalars):
        self._call("log")

    def close(self):
        self._call("close")

    def _call(self, method: str) -> None:
        self.calls.append(method)
        if method == self.fail_in:
            raise ConnectionError("no route to host")


def test_fan_out_drops_a_broken_backend_and_keeps_the_others(caplog):
    good, bad = _Recorder("good"), _Recorder("bad", fail_in="log")
    fan = FanOut([good, bad])
    fan.start({})
    with caplog.at_level(logging.WARNING, logger="hexrl_workers.tracking"):
        for step in range(3):
            fan.log(step, {"loss": 1.0})
    fan.close()
    assert good.calls == ["start", "log", "log", "log", "close"]
    assert bad.calls == ["start", "log", "close"]  # closed once when dropped, never called again
    assert fan.failed == {"bad": "ConnectionError: no route to host"}
    assert len(caplog.records) == 1


def test_wandb_online_without_credentials_is_dropped_not_fatal(tmp_path, monkeypatch, caplog):
    from hexrl_workers.tracking import TensorBoardTracker, WandbTracker

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a key
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "10")
    fan = FanOut([WandbTracker("p", None, "r", "online", str(tmp_path / "wb")), TensorBoardTracker(str(tmp_path / "tb"))])
    with caplog.at_level(logging.WARNING, logger="hexrl_workers.tracking"):
        fan.start({"a": 1})
        fan.log(1, {"loss": 0.5})
        fan.close()
    assert set(fan.failed) == {"wandb"} and len(caplog.records) == 1
    assert tensorboard_steps(tmp_path / "tb", "train/loss") == [1]


def test_tensorboard_curve_of_a_restarted_trainer_does_not_double_back(tmp_path):
    """A trainer that logged steps 1-5, died, and resumed from its step-3 checkpoint logs 4-6 again."""
    from hexrl_workers.tracking import TensorBoardTracker

    for first, last in ((1, 5), (4, 6)):
        tracker = TensorBoardTracker(str(tmp_path), first_step=first)
        tracker.start({})
        for step in range(first, last + 1):
            tracker.log(step, {"loss": float(step)})
        tracker.close()
        time.sleep(1.1)  # event file names carry the second they were opened
    assert tensorboard_steps(tmp_path, "train/loss") == [1, 2, 3, 4, 5, 6]


def test_flatten_joins_nested_keys_with_dots():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2]}) == {"a.b": 1, "a.c.d": "x", "e": "[1, 2]"}
