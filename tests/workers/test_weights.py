"""The weight service over real HTTP on 127.0.0.1: verification, auth, relay, resume."""

from __future__ import annotations

import pytest
import requests
import torch
from aiohttp import web
from workers_builders import CREDENTIALS, TOKENS

from hexrl_workers.weights.client import WeightClient, WeightClientSettings, WeightPullError
from hexrl_workers.weights.server import ThreadedWeightServer, WeightServer, WeightServerSettings
from hexrl_workers.weights.store import pack, unpack

pytestmark = pytest.mark.workers
TOKEN = TOKENS["rollout"]
"""What a weight client presents: the only role `ACCESS` lets call the weight service."""
CHUNK = 64 * 1024


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(300, 200, generator=g), "b": torch.randn(77, generator=g).to(torch.bfloat16),
            "i": torch.arange(10, dtype=torch.int64)}


@pytest.fixture
def origin():
    srv = ThreadedWeightServer(WeightServer(WeightServerSettings(credentials=CREDENTIALS, origin=True)))
    manifest, blob = pack(_state(), 3, CHUNK)
    srv.publish(manifest, blob)
    yield srv
    srv.close()


def _relay(**kw) -> ThreadedWeightServer:
    return ThreadedWeightServer(WeightServer(WeightServerSettings(credentials=CREDENTIALS, origin=False, **kw), role="rollout"))


def _assert_same(manifest, blob) -> None:
    got = unpack(manifest, blob)
    for name, t in _state().items():
        assert torch.equal(got[name], t), name


def test_pull_verifies_and_reassembles(origin):
    client = WeightClient(WeightClientSettings(origin.url, TOKEN, parallel=3))
    manifest, blob = client.pull()
    assert manifest.version == 3 and len(manifest.chunk_digests) > 3 and manifest.digest == "blake3"
    _assert_same(manifest, blob)


def test_wrong_token_gets_401(origin):
    r = requests.get(f"{origin.url}/v1/weights/latest", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert r.status_code == 401 and "token" in r.json()["error"]
    r = requests.get(f"{origin.url}/v1/weights/3/blob", timeout=5)
    assert r.status_code == 401
    with pytest.raises(WeightPullError, match="401"):
        WeightClient(WeightClientSettings(origin.url, "nope")).pull()
    assert requests.get(f"{origin.url}/healthz", timeout=5).status_code == 200  # still serving


def test_corrupted_chunk_from_a_peer_is_rejected_and_refetched(origin):
    manifest, blob = pack(_state(), 3, CHUNK)
    bad = bytearray(blob)
    bad[CHUNK * 2 + 5] ^= 0xFF  # flip one byte in chunk 2
    relay = _relay()
    relay.publish(manifest, bad)
    try:
        requests.post(f"{origin.url}/v1/weights/3/holders", json={"url": relay.url, "version": 3},
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).raise_for_status()
        client = WeightClient(WeightClientSettings(origin.url, TOKEN, my_url="http://late-joiner"))
        got_manifest, got_blob = client.pull()
        assert client.last.rejected_chunks == 1
        assert client.last.bytes_by_source["origin"] == CHUNK  # only the bad chunk came from the origin
        _assert_same(got_manifest, got_blob)
    finally:
        relay.close()


def test_late_joiner_gets_the_version_from_a_peer(origin):
    relay_a = _relay()
    try:
        a = WeightClient(WeightClientSettings(origin.url, TOKEN, my_url=relay_a.url))
        manifest, blob = a.pull()
        relay_a.publish(manifest, blob)
        a.announce(manifest.version)
        assert origin.server.served_bytes == manifest.total_bytes
        late = WeightClient(WeightClientSettings(origin.url, TOKEN, my_url="http://late-joiner"))
        m2, b2 = late.pull()
        _assert_same(m2, b2)
        assert late.last.bytes_by_source == {"peer": manifest.total_bytes}
        assert origin.server.served_bytes == manifest.total_bytes  # the origin sent nothing more
        assert relay_a.server.served_bytes == manifest.total_bytes
    finally:
        relay_a.close()


class _FlakyServer(WeightServer):
    """Fails the first request for one chunk with a 500 (a dropped connection, say)."""

    def __init__(self, *a, bad_start: int, **kw):
        super().__init__(*a, **kw)
        self.bad_start = bad_start
        self.failed = False

    async def get_blob(self, request: web.Request):
        if not self.failed and request.headers.get("Range", "").startswith(f"bytes={self.bad_start}-"):
            self.failed = True
            raise web.HTTPInternalServerError()
        return await super().get_blob(request)


def test_interrupted_pull_resumes_with_only_the_missing_chunks(tmp_path):
    srv = ThreadedWeightServer(_FlakyServer(WeightServerSettings(credentials=CREDENTIALS), bad_start=CHUNK * 2))
    try:
        manifest, blob = pack(_state(), 1, CHUNK)
        srv.publish(manifest, blob)
        client = WeightClient(WeightClientSettings(srv.url, TOKEN, chunk_attempts=1, cache_dir=str(tmp_path)))
        with pytest.raises(WeightPullError):
            client.pull()
        sent_before = srv.server.served_bytes
        # a new client (a restarted process) resumes from the verified chunks on disk
        again = WeightClient(WeightClientSettings(srv.url, TOKEN, cache_dir=str(tmp_path)))
        m2, b2 = again.pull()
        _assert_same(m2, b2)
        assert srv.server.served_bytes - sent_before == CHUNK
    finally:
        srv.close()


def test_eight_workers_with_relay_keep_origin_egress_bounded(origin):
    relays = [_relay() for _ in range(8)]
    try:
        import threading

        def worker(r: ThreadedWeightServer) -> None:
            c = WeightClient(WeightClientSettings(origin.url, TOKEN, my_url=r.url))
            m, b = c.pull()
            r.publish(m, b)
            c.announce(m.version)

        threads = [threading.Thread(target=worker, args=(r,)) for r in relays]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        size = origin.server.versions[3][0].total_bytes
        assert origin.server.served_bytes <= 2 * size
        assert all(r.server.versions.get(3) for r in relays)
    finally:
        for r in relays:
            r.close()


def test_relay_announcements_are_only_for_oneself_and_for_served_versions(origin):
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def announce(url: str, version: int = 3) -> requests.Response:
        return requests.post(f"{origin.url}/v1/weights/{version}/holders", json={"url": url, "version": version},
                             headers=auth, timeout=5)

    # somebody else's address (clients would send their token there), another scheme, a path: refused
    for url in ("http://203.0.113.9:8002", "https://127.0.0.1:8002", "http://127.0.0.1:8002/steal"):
        r = announce(url)
        assert r.status_code == 403 and "only itself" in r.json()["error"], url
    assert announce("http://127.0.0.1:8002", version=99).status_code == 404  # not a served version
    assert origin.server.holders.get(3, {}) == {}
    assert announce("http://127.0.0.1:8002").status_code == 200
    origin.server.s.max_holders = 2
    assert announce("http://127.0.0.1:8003").status_code == 200
    assert announce("http://127.0.0.1:8004").status_code == 429  # the registry is bounded
    assert set(origin.server.holders[3]) == {"http://127.0.0.1:8002", "http://127.0.0.1:8003"}


def test_a_relay_that_served_a_bad_chunk_is_excluded_for_everyone(origin):
    manifest, blob = pack(_state(), 3, CHUNK)
    bad = bytearray(blob)
    bad[5] ^= 0xFF
    relay = _relay()
    relay.publish(manifest, bad)
    try:
        requests.post(f"{origin.url}/v1/weights/3/holders", json={"url": relay.url, "version": 3},
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).raise_for_status()
        first = WeightClient(WeightClientSettings(origin.url, TOKEN, my_url="http://first"))
        _assert_same(*first.pull())
        assert first.last.rejected_chunks == 1 and relay.url in first.bad_relays
        first.pull()  # its next manifest request reports the relay; the origin drops it
        assert relay.url not in origin.server.holders.get(3, {})
        second = WeightClient(WeightClientSettings(origin.url, TOKEN, my_url="http://second"))
        _assert_same(*second.pull())
        assert second.last.rejected_chunks == 0 and "peer" not in second.last.bytes_by_source
    finally:
        relay.close()


class _Clock:
    """A monotonic clock the test moves by hand (no sleeping through a TTL)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_stale_relay_announcements_expire_and_are_pruned_a_bounded_batch_per_request():
    """3,000 announcements never renewed: after the TTL none is offered, and each request prunes at most
    PRUNE_PER_REQUEST of them until all are gone; a relay that renews in time keeps its entry."""
    from hexrl_workers.weights.server import PRUNE_PER_REQUEST

    clock = _Clock()
    srv = ThreadedWeightServer(WeightServer(WeightServerSettings(
        credentials=CREDENTIALS, origin=True, max_holders=4000, holder_ttl_seconds=120.0), clock=clock))
    manifest, blob = pack(_state(), 3, CHUNK)
    srv.publish(manifest, blob)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"

    def announce(port: int) -> None:
        session.post(f"{srv.url}/v1/weights/3/holders", json={"url": f"http://127.0.0.1:{port}", "version": 3},
                     timeout=10).raise_for_status()

    def latest(client: str) -> dict:
        r = session.get(f"{srv.url}/v1/weights/latest", params={"client": client}, timeout=10)
        r.raise_for_status()
        return r.json()

    try:
        for port in range(20000, 23000):
            announce(port)
        assert len(srv.server.holders[3]) == 3000
        assert latest("http://me")["source"].startswith("http://127.0.0.1:2")  # a live relay is offered
        clock.now += 100.0
        announce(20000)  # the one relay that renews in time
        clock.now += 30.0  # 130 s after the flood, 30 s after the renewal
        first = latest("http://me")
        assert first["source"] == "http://127.0.0.1:20000", first["source"]  # expired entries are never offered
        assert len(srv.server.holders[3]) == 3000 - PRUNE_PER_REQUEST  # that request pruned one batch only
        requests_needed = 0
        while len(srv.server.holders[3]) > 1:
            before = len(srv.server.holders[3])
            latest("http://me")
            assert before - len(srv.server.holders[3]) <= PRUNE_PER_REQUEST
            requests_needed += 1
            assert requests_needed < 3000 // PRUNE_PER_REQUEST + 2
        assert set(srv.server.holders[3]) == {"http://127.0.0.1:20000"}
        assert len(srv.server.holder_expiry) == 1 and len(srv.server._expiry_queue) == 1
        clock.now += 121.0  # and without renewals it goes too
        assert latest("http://me")["source"] is None
        assert srv.server.holders[3] == {}
    finally:
        srv.close()


def test_a_relay_renews_its_announcement_on_schedule_and_only_for_a_version_it_announced(origin):
    relay = _relay()
    manifest, blob = pack(_state(), 3, CHUNK)
    relay.publish(manifest, blob)
    try:
        client = WeightClient(WeightClientSettings(origin.url, TOKEN, my_url=relay.url, reannounce_seconds=0.0))
        assert not client.keep_announced(3)  # never announced: it may not hold 3 (a fresh engine's version 0)
        client.announce(3)
        assert relay.url in origin.server.holders[3]
        origin.server.holder_expiry[(3, relay.url)] = 0.0  # as if the TTL had passed
        assert not client.keep_announced(2)
        assert client.keep_announced(3)
        assert origin.server.holder_expiry[(3, relay.url)] > origin.server.clock()
    finally:
        relay.close()
