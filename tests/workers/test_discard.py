"""Samples a rollout worker cannot use (a reward that raised or returned NaN, a prompt too long): the worker
reports them, the coordinator abandons the whole group, counts it by reason, never trains on it, and does
not queue the prompt again."""

from __future__ import annotations

import json
import math

import pytest
import requests
from workers_builders import CREDENTIALS, auth, tiny_spec

from hexrl_workers.coordinator.server import ThreadedCoordinator
from hexrl_workers.protocol import DiscardedSample, WorkItem
from hexrl_workers.rollout.engine import GenResult
from hexrl_workers.rollout.worker import RolloutSettings, RolloutWorker
from hexrl_workers.runtime import build_coordinator
from hexrl_workers.tasks import CharTokenizer

pytestmark = pytest.mark.workers


@pytest.fixture
def coord():
    c = ThreadedCoordinator(build_coordinator(tiny_spec(**{"algorithm.promptsPerStep": 1}), CREDENTIALS))
    yield c
    c.close()


def _post(c, path, body, role="rollout"):
    return requests.post(c.url + path, data=json.dumps(body), timeout=10,
                         headers={**auth(role), "Content-Type": "application/json"})


def _traj(item: dict, sample: int) -> dict:
    return {"itemId": item["itemId"], "epoch": item["epoch"], "groupId": item["groupId"],
            "groupSize": item["groupSize"], "sampleIndex": sample, "promptId": item["prompt"]["promptId"],
            "promptTokens": [1, 5], "tokens": [6, 2], "logprobs": [-1.0, -0.5], "versions": [0, 0], "reward": 1.0}


def test_a_discarded_sample_abandons_its_group_which_is_counted_and_never_trained(coord):
    first = _post(coord, "/v1/work", {"workerId": "w", "maxItems": 1}).json()["items"][0]
    discard = {"itemId": first["itemId"], "epoch": first["epoch"], "groupId": first["groupId"], "sampleIndex": 0,
               "promptId": first["prompt"]["promptId"], "reason": "reward-error", "detail": "ZeroDivisionError"}
    r = _post(coord, "/v1/trajectories", {"workerId": "w", "discarded": [discard]})
    assert r.status_code == 200, r.text
    # the rest of the group is void: its other samples are refused, so no batch can hold any of them
    rest = [_traj(first, k) for k in range(1, first["groupSize"])]
    r = _post(coord, "/v1/trajectories", {"workerId": "w", "trajectories": rest})
    assert r.json()["accepted"] == 0 and r.json()["dropped"] == len(rest), r.text
    batch = _post(coord, "/v1/batch", {"trainerVersion": 0, "waitSeconds": 0}, role="trainer")
    assert batch.status_code == 204, batch.text
    # the gate admits a fresh prompt in its place; the abandoned prompt is not handed out again
    nxt = _post(coord, "/v1/work", {"workerId": "w", "maxItems": 1}).json()["items"]
    assert nxt and nxt[0]["prompt"]["promptId"] != first["prompt"]["promptId"], nxt
    assert len(nxt[0]["samples"]) == nxt[0]["groupSize"]
    progress = requests.get(coord.url + "/v1/progress", headers=auth("operator"), timeout=10).json()
    assert progress["discardedGroups"] == {"reward-error": 1}, progress
    metrics = requests.get(coord.url + "/metrics", timeout=10).text
    assert 'hexrl_groups_discarded_total{reason="reward-error"} 1.0' in metrics


def test_a_discard_for_work_that_is_not_outstanding_is_ignored(coord):
    item = _post(coord, "/v1/work", {"workerId": "w", "maxItems": 1}).json()["items"][0]
    bogus = {"itemId": item["itemId"] + 100, "groupId": item["groupId"], "sampleIndex": 0,
             "promptId": item["prompt"]["promptId"], "reason": "prompt-too-long"}
    r = _post(coord, "/v1/trajectories", {"workerId": "w", "discarded": [bogus]})
    assert r.status_code == 200 and r.json()["dropped"] == 1
    progress = requests.get(coord.url + "/v1/progress", headers=auth("operator"), timeout=10).json()
    assert progress["discardedGroups"] == {}
    r = _post(coord, "/v1/trajectories", {"workerId": "w", "trajectories": [_traj(item, 0)]})
    assert r.json()["accepted"] == 1, r.text


class _FixedEngine:
    """Returns the same finished two-token response for every request."""

    version = 0

    def generate(self, reqs, stop=None):
        return [GenResult(tokens=[6, 2], logprobs=[-1.0, -0.5], versions=[0, 0], finished=True) for _ in reqs]


def _worker(reward) -> RolloutWorker:
    return RolloutWorker(RolloutSettings(worker_id="w"), _FixedEngine(), CharTokenizer(), reward, None, None)


def _item(group_size: int = 3) -> WorkItem:
    return WorkItem.model_validate({"itemId": 7, "groupId": 2, "groupSize": group_size, "policyVersion": 0,
                                    "prompt": {"promptId": 4, "text": "1+2=", "answer": "3"},
                                    "samples": [{"sampleIndex": k} for k in range(group_size)]})


@pytest.mark.parametrize("outcome,reason", [
    (ZeroDivisionError("division by zero"), "reward-error"),
    (math.nan, "reward-not-finite"),
    (math.inf, "reward-not-finite"),
])
def test_a_reward_that_raises_or_is_not_finite_is_discarded_not_pushed(outcome, reason):
    calls = []

    def reward(completion, answer, prompt):
        calls.append(completion)
        if len(calls) == 2:  # only the second sample's reward goes wrong
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        return 1.0

    worker = _worker(reward)
    out = worker.process([_item()])
    assert [t.sample_index for t in out.trajectories] == [0, 2]
    assert all(math.isfinite(t.reward) for t in out.trajectories)
    assert [(d.sample_index, d.reason) for d in out.discarded] == [(1, reason)]
    assert isinstance(out.discarded[0], DiscardedSample) and out.discarded[0].prompt_id == 4
    metrics = worker.metrics.render()[0].decode()
    assert f'hexrl_rollout_samples_discarded_total{{reason="{reason}"}} 1.0' in metrics
