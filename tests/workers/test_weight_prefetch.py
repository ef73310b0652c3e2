"""The weight prefetcher over a real weight service on 127.0.0.1: a new version downloads while the engine
generates, the swap between waves takes exactly the version the coordinator names, nothing is pulled
twice, and a failed prefetch leaves the worker's own pull to do the work."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from workers_builders import CREDENTIALS, TOKENS

from hexrl_workers.rollout.prefetch import PrefetchSettings, WeightPrefetcher
from hexrl_workers.weights.client import WeightClient, WeightClientSettings, WeightPullError
from hexrl_workers.weights.server import ThreadedWeightServer, WeightServer, WeightServerSettings
from hexrl_workers.weights.store import pack, unpack

pytestmark = pytest.mark.workers
CHUNK = 64 * 1024


def _state(version: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(version)
    return {"w": torch.randn(256, 256, generator=g)}


class _CountingClient(WeightClient):
    """A real client that counts its pulls and can be slowed down or broken."""

    def __init__(self, url: str, delay: float = 0.0) -> None:
        super().__init__(WeightClientSettings(url, TOKENS["rollout"], parallel=2))
        self.pulls: list[int | None] = []
        self.buffers: list[int | None] = []
        self.delay = delay
        self.broken = False

    def pull(self, version=None, into=None):
        self.pulls.append(version)
        self.buffers.append(None if into is None else id(into))
        if self.broken:
            raise WeightPullError("weight service unreachable (test)")
        time.sleep(self.delay)
        return super().pull(version, into)


class _Job:
    """The coordinator's version and the engine's, as the prefetcher reads them."""

    def __init__(self) -> None:
        self.version: int | None = 1
        self.engine = 0


@pytest.fixture
def origin():
    srv = ThreadedWeightServer(WeightServer(WeightServerSettings(credentials=CREDENTIALS, origin=True, keep_versions=3)))
    for v in (1, 2, 3):
        srv.publish(*pack(_state(v), v, CHUNK))
    yield srv
    srv.close()


def _prefetcher(client: WeightClient, job: _Job) -> WeightPrefetcher:
    return WeightPrefetcher(client, lambda: job.engine, lambda: job.version, PrefetchSettings(poll_seconds=0.05))


def _same(manifest, blob, version: int) -> None:
    assert manifest.version == version
    assert torch.equal(unpack(manifest, blob)["w"], _state(version)["w"])


def test_a_prefetched_version_is_handed_out_without_pulling_again(origin) -> None:
    client, job = _CountingClient(origin.url), _Job()
    pre = _prefetcher(client, job)
    assert pre.poll_once() is True
    assert pre.poll_once() is False  # already held
    manifest, blob = pre.take(1)
    _same(manifest, blob, 1)
    assert client.pulls == [1] and pre.prefetched == 1
    job.engine = 1
    assert pre.poll_once() is False and client.pulls == [1]  # the engine has the job's version


def test_take_names_the_version_exactly_and_reuses_an_outdated_blob(origin) -> None:
    client, job = _CountingClient(origin.url), _Job()
    pre = _prefetcher(client, job)
    pre.poll_once()
    outdated = client.pulls[-1]
    manifest, blob = pre.take(2)  # the job moved on (or rolled back): exactly 2, pulled now
    _same(manifest, blob, 2)
    assert outdated == 1 and client.pulls == [1, 2] and pre.prefetched == 0
    assert client.buffers[-1] is not None  # written into the outdated prefetch's buffer, not a new one
    pre.recycle(blob)
    job.version, job.engine = 3, 2
    pre.poll_once()
    assert client.buffers[-1] == id(blob)  # the blob the engine copied from is the next pull's buffer
    _same(*pre.take(3), 3)


def test_the_worker_waits_for_a_prefetch_under_way_instead_of_pulling_twice(origin) -> None:
    client, job = _CountingClient(origin.url, delay=0.5), _Job()
    pre = _prefetcher(client, job)
    background = threading.Thread(target=pre.poll_once)
    background.start()
    deadline = time.monotonic() + 10
    while not client.pulls and time.monotonic() < deadline:  # until the prefetch holds the pull
        time.sleep(0.005)
    started = time.monotonic()
    manifest, blob = pre.take(1)
    waited = time.monotonic() - started
    background.join()
    _same(manifest, blob, 1)
    assert client.pulls == [1] and pre.prefetched == 1
    assert 0.2 < waited < 10.0  # it waited for the download under way (0.5 s) instead of pulling


def test_the_thread_downloads_while_the_engine_is_busy_and_stops(origin) -> None:
    client, job = _CountingClient(origin.url), _Job()
    pre = _prefetcher(client, job)
    pre.start()
    try:
        deadline = time.monotonic() + 10
        while not client.pulls and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.pulls == [1]
        time.sleep(0.3)  # more polls: nothing new to pull
        assert client.pulls == [1]
        _same(*pre.take(1), 1)
        assert client.pulls == [1] and pre.prefetched == 1  # out of memory, no download
        time.sleep(0.3)  # the engine is still copying version 1 in (its version is 0): not fetched again
        assert client.pulls == [1]
    finally:
        pre.stop()
    job.version = 2
    time.sleep(0.3)
    assert client.pulls == [1]  # stopped: no more polls


def test_a_failed_prefetch_leaves_the_pull_to_the_wave_boundary(origin) -> None:
    client, job = _CountingClient(origin.url), _Job()
    pre = _prefetcher(client, job)
    client.broken = True
    assert pre.poll_once() is False
    client.broken = False
    _same(*pre.take(1), 1)
    assert client.pulls == [1, 1] and pre.prefetched == 0
    job.version = None  # the coordinator could not be read: nothing happens
    assert pre.poll_once() is False and client.pulls == [1, 1]


class _LoadingEngine:
    """An engine that only loads weights (the worker's swap is what is under test)."""

    def __init__(self) -> None:
        self.version = 0
        self.loaded: list[torch.Tensor] = []

    def generate(self, requests, stop=None):  # pragma: no cover - never called here
        raise AssertionError("no generation in this test")

    def load_weights(self, tensors, version: int) -> None:
        self.loaded.append(tensors["w"].clone())
        self.version = version


def test_the_worker_swaps_in_the_prefetched_version_and_counts_it(origin) -> None:
    from hexrl_workers.rollout.worker import RolloutSettings, RolloutWorker

    client, job, engine = _CountingClient(origin.url), _Job(), _LoadingEngine()
    worker = RolloutWorker(RolloutSettings(worker_id="w"), engine, None, None, None, client)
    assert worker.prefetch is not None
    worker.prefetch.job_version = lambda: job.version
    job.version = 2
    assert worker.prefetch.poll_once()  # downloaded while the engine would be generating
    worker.maybe_update_weights(2)
    assert engine.version == 2 and torch.equal(engine.loaded[-1], _state(2)["w"])
    worker.maybe_update_weights(3)  # nothing prefetched: pulled at the boundary
    assert engine.version == 3 and torch.equal(engine.loaded[-1], _state(3)["w"])
    assert client.pulls == [2, 3]
    text = worker.metrics.render()[0].decode()
    assert "hexrl_rollout_weights_prefetched_total 1.0" in text
    assert "hexrl_rollout_weight_pause_seconds_count 2.0" in text
