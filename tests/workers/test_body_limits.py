"""Request bodies sized to the spec (413 before and while reading) and a bounded trajectory buffer (429).

Real services over HTTP on 127.0.0.1; the 413 for a declared Content-Length comes back although the body
is never sent, which is how the test knows the server did not read it.
"""

from __future__ import annotations

import json
import socket
import threading
from urllib.parse import urlsplit

import pytest
import requests
from workers_builders import CREDENTIALS, TOKENS, auth, tiny_spec

from hexrl_workers.coordinator.server import ThreadedCoordinator, build_coordinator
from hexrl_workers.coordinator_client import CoordinatorClient, split_by_group
from hexrl_workers.limits import (
    SMALL_BODY,
    BufferLimits,
    body_limits,
    sample_bytes,
    spec_body_limits,
    spec_buffer_limits,
)
from hexrl_workers.protocol import PartialResponse, Trajectory, TrajectoryBatchIn
from hexrl_workers.weights.server import ThreadedWeightServer, WeightServer, WeightServerSettings

pytestmark = pytest.mark.workers
ROLLOUT = {**auth("rollout"), "Content-Type": "application/json"}


@pytest.fixture
def coord():
    c = ThreadedCoordinator(build_coordinator(tiny_spec(**{"generation.maxNewTokens": 64}), CREDENTIALS))
    yield c
    c.close()


def test_limits_follow_the_spec():
    small = body_limits(group_size=8, max_new_tokens=2, mean_prompt_tokens=5)
    assert small.per_push == 8 and small.trajectories < 1 << 20  # the tiny job: under 1 MiB, not 1 GiB
    assert body_limits(16, 2, 5).trajectories - SMALL_BODY == 2 * (small.trajectories - SMALL_BODY)
    longer = body_limits(8, 8192, 5).trajectories - body_limits(8, 4096, 5).trajectories
    assert longer == 8 * 4096 * 48  # each response token of each sample adds its bound
    spec = tiny_spec(**{"algorithm.groupSize": 4, "generation.maxNewTokens": 100})
    assert spec_body_limits(spec) == body_limits(4, 100, spec.generation.prompt_tokens, spec_buffer_limits(spec))


def test_the_buffer_takes_half_the_coordinators_memory_limit():
    assert spec_buffer_limits(tiny_spec()).max_bytes == 256 << 20  # the tiny job's limit: 512Mi
    assert spec_buffer_limits(tiny_spec(**{"resources.coordinator": {"requests": {"memory": "1Gi"}}})).max_bytes \
        == 2 << 30  # no limit given: 4 x the request, as rendered
    server = build_coordinator(tiny_spec(), CREDENTIALS)
    assert server.settings.buffer.max_bytes == 256 << 20 and server.limits.restore == (256 << 20) + (64 << 20)
    assert server.limits == spec_body_limits(tiny_spec())


def _raw_post(url: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """Send a request's head (and `body`), then read the answer; the socket is not closed for sending, so
    an answer arrives only if the server gives it without reading the rest."""
    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=60) as s:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: {u.hostname}\r\n{head}\r\n".encode() + body)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(coord):
    limit = coord.server.limits.trajectories
    answer = _raw_post(coord.url, "/v1/trajectories", {**ROLLOUT, "Content-Length": str(limit + 1)})
    status, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status, answer[:300]
    err = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert err["field"] == "body" and f"{limit + 1:,} bytes" in err["error"] and "limit" in err["error"]
    assert requests.get(coord.url + "/healthz", timeout=10).status_code == 200  # still serving


def test_a_chunked_body_is_refused_once_it_passes_the_limit_and_one_under_it_is_parsed(coord):
    limit = coord.server.limits.trajectories

    def chunks(n: int):
        yield b'{"trajectories": [], "workerId": "'
        for _ in range(n // 65536 + 1):
            yield b"w" * 65536
        yield b'"}'

    r = requests.post(coord.url + "/v1/trajectories", data=chunks(limit), headers=ROLLOUT, timeout=60)
    assert r.status_code == 413 and "more than" in r.json()["error"], r.text[:300]
    under = b'{"trajectories": [], "workerId": "' + b"w" * (limit - 64) + b'"}'
    assert len(under) <= limit
    r = requests.post(coord.url + "/v1/trajectories", data=under, headers=ROLLOUT, timeout=60)
    assert r.status_code == 200 and r.json()["accepted"] == 0, r.text[:300]
    metrics = requests.get(coord.url + "/metrics", timeout=10).text
    assert 'hexrl_rejected_requests_total{reason="body"} 1.0' in metrics


def test_small_routes_and_the_weight_service_take_small_bodies_only(coord):
    r = requests.post(coord.url + "/v1/work", data=b'{"workerId": "' + b"w" * SMALL_BODY + b'"}', headers=ROLLOUT,
                      timeout=30)
    assert r.status_code == 413
    weights = ThreadedWeightServer(WeightServer(WeightServerSettings(credentials=CREDENTIALS)))
    try:
        r = requests.post(weights.url + "/v1/weights/0/holders", data=b"x" * (SMALL_BODY + 1), headers=ROLLOUT,
                          timeout=30)
        assert r.status_code == 413 and r.json()["field"] == "body"
    finally:
        weights.close()


def test_the_client_sends_one_group_per_request():
    def traj(gid: int, k: int) -> Trajectory:
        return Trajectory(item_id=gid, group_id=gid, group_size=2, sample_index=k, prompt_id=gid, prompt_tokens=[1],
                          tokens=[2], logprobs=[-1.0], versions=[0], reward=0.0)

    part = PartialResponse(item_id=9, group_id=1, sample_index=1, prompt_id=1, tokens=[], logprobs=[], versions=[])
    body = TrajectoryBatchIn(worker_id="w", trajectories=[traj(0, 0), traj(1, 0), traj(0, 1)], partials=[part],
                             released_item_ids=[5])
    parts = split_by_group(body)
    assert [sorted({t.group_id for t in p.trajectories} | {q.group_id for q in p.partials}) for p in parts] == [[0], [1]]
    assert [p.released_item_ids for p in parts] == [[], [5]] and all(p.worker_id == "w" for p in parts)
    assert split_by_group(TrajectoryBatchIn(released_item_ids=[3]))[0].released_item_ids == [3]


# ------------------------------------------------------------------------------------------ the buffer


def _samples(item: dict, indexes: list[int]) -> list[dict]:
    return [{"itemId": item["itemId"], "epoch": item.get("epoch", 0), "groupId": item["groupId"],
             "groupSize": item["groupSize"], "sampleIndex": k, "promptId": item["prompt"]["promptId"],
             "promptTokens": [1, 5], "tokens": [6, 2], "logprobs": [-1.0, -0.5], "versions": [0, 0], "reward": 1.0}
            for k in indexes]


def test_the_buffer_is_bounded_a_push_over_it_waits_with_429_and_nothing_is_lost():
    """Bytes bound of 2.5 samples: a push that would pass it gets 429 + Retry-After unless it completes a
    group; the client keeps the refused push and retries until the trainer has taken a batch."""
    spec = tiny_spec(**{"algorithm.groupSize": 2, "algorithm.promptsPerStep": 1, "staleness.maxPolicyLag": 4})
    server = build_coordinator(spec, CREDENTIALS)
    server.settings.buffer = BufferLimits(max_bytes=int(2.5 * sample_bytes(2, 2)))
    server.settings.retry_after_seconds = 0.2
    coord = ThreadedCoordinator(server)
    try:
        items = requests.post(coord.url + "/v1/work", json={"workerId": "w", "maxItems": 3}, headers=ROLLOUT,
                              timeout=10).json()["items"]
        a, b, c = items

        def push(samples: list[dict]) -> requests.Response:
            return requests.post(coord.url + "/v1/trajectories", json={"trajectories": samples}, headers=ROLLOUT,
                                 timeout=10)

        assert push(_samples(a, [0, 1])).json()["accepted"] == 2  # group a complete: 2 samples buffered
        refused = push(_samples(b, [0]))  # a third sample, completing nothing: over the bound
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "0.2", refused.text
        assert "buffer is full" in refused.json()["error"] and refused.json()["field"] == "buffer"
        assert server.core.buffer_depth == 2  # nothing of the refused push was taken
        assert push(_samples(b, [0, 1])).json()["accepted"] == 2  # completes group b: let in over the bound
        assert server.core.buffer_depth == 4

        trainer = CoordinatorClient(coord.url, TOKENS["trainer"])
        rollout = CoordinatorClient(coord.url, TOKENS["rollout"], retry_seconds=600)
        first = trainer.batch(0)
        trainer.new_version(1, first.batch_id)  # group a leaves: 2 samples (group b) remain
        result: list = []
        waiting = threading.Thread(target=lambda: result.append(rollout.push(
            TrajectoryBatchIn.model_validate({"trajectories": _samples(c, [0])}))), daemon=True)
        waiting.start()
        while not result and server.metrics["hexrl_rejected_requests"].labels("buffer")._value.get() < 2:
            waiting.join(0.05)  # until the client has been refused once more (and waits to retry)
        assert not result and waiting.is_alive()  # still held back: the buffer is still full
        second = trainer.batch(1)
        trainer.new_version(2, second.batch_id)  # group b leaves: room again
        waiting.join(120)
        assert result and result[0].accepted == 1  # the refused sample got in: nothing lost
        assert server.core.buffer_depth == 1
    finally:
        coord.close()
