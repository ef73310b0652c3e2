"""Observed work for the operator's online calibration: the rollout worker reports its engine's generated
tokens and GPU-seconds (tagged with the pod's GPU type), the trainer its step's tokens and GPU-seconds, and
the coordinator serves the sums per (GPU type, phase) in /v1/progress."""

from __future__ import annotations

import json
import time

import pytest
import requests
from workers_builders import CREDENTIALS, auth, tiny_spec

from hexrl_workers.coordinator.server import ThreadedCoordinator
from hexrl_workers.coordinator.worktally import WorkTally
from hexrl_workers.coordinator_client import split_by_group
from hexrl_workers.protocol import TrajectoryBatchIn, WorkItem, WorkReport
from hexrl_workers.rollout.engine import GenResult
from hexrl_workers.rollout.worker import RolloutSettings, RolloutWorker
from hexrl_workers.runtime import build_coordinator
from hexrl_workers.tasks import CharTokenizer

pytestmark = pytest.mark.workers


def test_the_tally_sums_per_gpu_type_and_phase_and_ignores_reports_without_seconds():
    tally = WorkTally()
    tally.add([WorkReport(gpu="L4", phase="decode", tokens=100, seconds=2.0),
               WorkReport(gpu="H20", phase="train", tokens=50, seconds=1.0)])
    tally.add([WorkReport(gpu="L4", phase="decode", tokens=30, seconds=0.5),
               WorkReport(gpu="L4", phase="decode", tokens=999, seconds=0.0)])
    assert [(r.gpu, r.phase, r.tokens, r.seconds) for r in tally.reports()] == [
        ("H20", "train", 50, 1.0), ("L4", "decode", 130, 2.5)]


def test_a_report_with_negative_work_is_refused():
    with pytest.raises(ValueError, match="seconds"):
        WorkReport(gpu="L4", phase="decode", tokens=1, seconds=-1.0)
    with pytest.raises(ValueError, match="phase"):
        WorkReport.model_validate({"gpu": "L4", "phase": "sleep", "tokens": 1, "seconds": 1.0})


class _SlowEngine:
    """Generates three tokens per request and takes `seconds` per call."""

    version = 0

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def generate(self, reqs, stop=None):
        time.sleep(self.seconds)
        return [GenResult(tokens=[6, 7, 2], logprobs=[-1.0] * 3, versions=[0] * 3, finished=True) for _ in reqs]


def _item(group_size: int = 2) -> WorkItem:
    return WorkItem.model_validate({"itemId": 7, "groupId": 2, "groupSize": group_size, "policyVersion": 0,
                                    "prompt": {"promptId": 4, "text": "1+2=", "answer": "3"},
                                    "samples": [{"sampleIndex": k} for k in range(group_size)]})


def test_the_rollout_worker_reports_generated_tokens_over_its_gpu_seconds():
    settings = RolloutSettings(worker_id="w", gpu_type="L4", gpus=2)
    worker = RolloutWorker(settings, _SlowEngine(0.2), CharTokenizer(), lambda *a: 1.0, None, None)
    out = worker.process([_item(group_size=2)])
    [report] = out.work
    assert (report.gpu, report.phase, report.tokens) == ("L4", "decode", 6)
    assert 0.4 <= report.seconds < 0.4 + 0.5, "busy seconds × 2 GPUs"


def test_a_rollout_worker_without_a_gpu_type_reports_nothing():
    worker = RolloutWorker(RolloutSettings(worker_id="w"), _SlowEngine(0.0), CharTokenizer(), lambda *a: 1.0,
                           None, None)
    assert worker.process([_item()]).work == []


def test_split_pushes_carry_the_work_once():
    body = TrajectoryBatchIn(worker_id="w", work=[WorkReport(gpu="L4", phase="decode", tokens=5, seconds=1.0)])
    worker = RolloutWorker(RolloutSettings(worker_id="w", gpu_type="L4"), _SlowEngine(0.0), CharTokenizer(),
                           lambda *a: 1.0, None, None)
    body.trajectories = worker.process([_item(2)]).trajectories
    parts = split_by_group(body)
    assert sum(len(p.work) for p in parts) == 1 and parts[-1].work == body.work


@pytest.fixture
def coord():
    c = ThreadedCoordinator(build_coordinator(tiny_spec(**{"algorithm.promptsPerStep": 1}), CREDENTIALS))
    yield c
    c.close()


def _post(c, path, body, role):
    r = requests.post(c.url + path, data=json.dumps(body), timeout=10,
                      headers={**auth(role), "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    return r.json()


def _traj(item: dict, sample: int) -> dict:
    return {"itemId": item["itemId"], "epoch": item["epoch"], "groupId": item["groupId"],
            "groupSize": item["groupSize"], "sampleIndex": sample, "promptId": item["prompt"]["promptId"],
            "promptTokens": [1, 5], "tokens": [6, 2], "logprobs": [-1.0, -0.5], "versions": [0, 0], "reward": 1.0}


def test_progress_serves_the_cumulative_work_of_pushes_and_versions(coord):
    work = {"gpu": "L4", "phase": "decode", "tokens": 40, "seconds": 2.0}
    item = _post(coord, "/v1/work", {"workerId": "w", "maxItems": 1}, "rollout")["items"][0]
    trajs = [_traj(item, k) for k in range(item["groupSize"])]
    _post(coord, "/v1/trajectories", {"workerId": "w", "trajectories": trajs, "work": [work]}, "rollout")
    _post(coord, "/v1/trajectories", {"workerId": "w", "work": [{**work, "tokens": 20, "seconds": 1.0}]}, "rollout")
    batch = _post(coord, "/v1/batch", {"trainerVersion": 0, "waitSeconds": 0}, "trainer")
    _post(coord, "/v1/version", {"version": 1, "batchId": batch["batchId"], "work": [{"gpu": "H20", "phase": "train", "tokens": 64,
                                                         "seconds": 0.5}]}, "trainer")
    progress = requests.get(coord.url + "/v1/progress", headers=auth("operator"), timeout=10).json()
    assert progress["observedWork"] == [
        {"wireVersion": 1, "gpu": "H20", "phase": "train", "tokens": 64, "seconds": 0.5},
        {"wireVersion": 1, "gpu": "L4", "phase": "decode", "tokens": 60, "seconds": 3.0},
    ]


def test_the_trainer_reports_the_steps_tokens_over_the_gangs_gpu_seconds():
    from types import SimpleNamespace

    from hexrl_workers.trainer.loop import Trainer, TrainerSettings

    gang = SimpleNamespace(s=TrainerSettings(coordinator_url="http://x", gpu_type="H800", world_size=4))
    stats = {"seconds": 2.0, "tokens_per_second": 512.0}
    [report] = Trainer._work_report(gang, stats, 2.5)  # type: ignore[arg-type]
    assert (report.gpu, report.phase, report.tokens, report.seconds) == ("H800", "train", 1024, 10.0)
    untagged = SimpleNamespace(s=TrainerSettings(coordinator_url="http://x"))
    assert Trainer._work_report(untagged, stats, 2.5) == []  # type: ignore[arg-type]
