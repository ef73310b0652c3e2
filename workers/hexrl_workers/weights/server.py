"""The pull-based weight service: origin (trainer rank 0) and relays (rollout workers), one class.

    GET  /v1/weights/latest[?client=URL&exclude=URL,...]   manifest of the newest version
    GET  /v1/weights/{v}/manifest[?client=…]               manifest of version v
    GET  /v1/weights/{v}/blob   (Range: bytes=a-b)          the bytes (206 for a range)
    POST /v1/weights/{v}/holders  HolderAnnouncement        (origin) a relay holds / released v

Every /v1/ path needs a rollout worker's bearer token (401 for none or an unknown one, 403 for another role's;
`hexrl_workers.httpcommon.ACCESS`).

Relay policy (origin only). The trainer's egress must not grow with the number of workers, so the
origin tells each client where to download from (`WeightManifest.source`):
1. a relay that announced the complete version (least-assigned first, never the client itself, never
   one the client reports as failed in `exclude`);
2. otherwise the origin itself, if fewer than `origin_slots` clients are downloading it from the origin
   (a slot is held until the client announces completion or `slot_seconds` pass);
3. otherwise `retryAfterSeconds` — the client waits briefly for the first copies to appear.
With one origin slot the origin sends each version about once, however many workers pull it: egress
≈ 1× the weight size; relays then serve the rest (a tree that widens as holders announce).

Relay entries expire: an announcement is good for `holder_ttl_seconds` and a relay keeps its entry by
announcing again (the rollout worker does every `WeightClientSettings.reannounce_seconds`). An expired
entry is never offered, and each request removes at most `PRUNE_PER_REQUEST` expired entries (oldest
first), so a flood of announcements that are never renewed drains away without any request doing
unbounded work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urlsplit

from aiohttp import web

from hexrl.api.workerconfig import HEALTH_PATH, METRICS_PATH, READY_PATH
from hexrl_workers.httpcommon import (
    Credentials,
    HTTPProblem,
    ThreadedService,
    auth_middleware,
    error_middleware,
    json_response,
    parse,
    start_site,
    stop_site,
)
from hexrl_workers.limits import SMALL_BODY
from hexrl_workers.metrics import Metrics
from hexrl_workers.protocol import HolderAnnouncement, WeightManifest
from hexrl_workers.statusserver import Readiness, readiness_response

log = logging.getLogger(__name__)

PRUNE_PER_REQUEST = 256
"""Expired relay entries removed per request at most (bounded work; a backlog drains over a few requests)."""
WRITE_SLICE = 1 << 20
"""Bytes per socket write when serving a range without sendfile (see get_blob)."""
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class WeightServerSettings:
    """Knobs of one weight server."""

    credentials: Credentials | None = None
    """What callers' tokens are checked against (None: no auth, tests of other behaviour only)."""
    origin: bool = True
    """True on trainer rank 0 (keeps the relay registry and assigns sources); False on relays."""
    relay: bool = True
    """Hand out relays as sources (spec.weightSync.relay). False: every client pulls from the origin."""
    origin_slots: int = 1
    """Concurrent downloads of one version from the origin while no relay has it (egress ≈ slots × size)."""
    slot_seconds: float = 60.0
    """An origin slot not released by an announcement within this time is reclaimed, seconds."""
    keep_versions: int = 2
    """Versions kept in memory (the newest, plus the previous so late readers can finish)."""
    retry_after_seconds: float = 0.05
    """What a client is told to wait when every origin slot is busy and no relay has the version yet."""
    max_holders: int = 1024
    """Relays registered per version at most (one per rollout worker; bounds the registry)."""
    holder_ttl_seconds: float = 120.0
    """An announcement is good for this long, seconds; a relay renews it by announcing again."""


class WeightServer:
    def __init__(self, settings: WeightServerSettings, role: str = "trainer", metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.s = settings
        self.clock = clock
        """Monotonic seconds (slots and relay expiry); tests pass a fake one instead of sleeping."""
        # A relay on a rollout pod serves the worker's own registry: one /metrics per pod, with the
        # worker's tokens, pulls and version, not an empty twin.
        self.metrics = metrics or Metrics(role)
        self.versions: dict[int, tuple[WeightManifest, bytes | None]] = {}
        """version -> (manifest, the blob's bytes; None when the blob lives in the in-memory file)"""
        self._files: dict[int, BinaryIO | None] = {}  # version -> in-memory file with the blob (for sendfile)
        self.holders: dict[int, dict[str, int]] = {}  # version -> relay url -> assignments
        self.holder_expiry: dict[tuple[int, str], float] = {}  # (version, relay url) -> when the entry expires
        self._expiry_queue: deque[tuple[float, int, str]] = deque()  # one (expiry, version, url) per entry, oldest first
        self.slots: dict[int, dict[str, float]] = {}  # version -> client -> slot deadline
        self.served_bytes = 0
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.readiness: Readiness | None = None
        """What /readyz reports: on a rollout pod the relay port is the pod's status port, so the worker's
        readiness (None: ready whenever the server answers)."""

    # ----------------------------------------------------------------------------------- publishing

    def publish(self, manifest: WeightManifest, blob: bytearray) -> None:
        """Make a version available (call on the server's loop, or before it starts).

        The server keeps its own copy (an in-memory file, or bytes where there is no memfd), never the
        caller's buffer: a rollout worker pulls the next version into the same buffer."""
        f = _memfile(blob, manifest.version)
        self._files[manifest.version] = f
        self.versions[manifest.version] = (manifest, bytes(blob) if f is None else None)
        for old in sorted(self.versions)[: -self.s.keep_versions]:
            del self.versions[old]
            f = self._files.pop(old, None)
            if f is not None:
                f.close()  # transfers in flight read through their own duplicate descriptor
            for url in self.holders.pop(old, {}):
                self.holder_expiry.pop((old, url), None)
            self.slots.pop(old, None)

    @property
    def latest(self) -> int | None:
        return max(self.versions) if self.versions else None

    # ------------------------------------------------------------------------------------- handlers

    def app(self) -> web.Application:
        app = web.Application(middlewares=[error_middleware(), auth_middleware(self.s.credentials)],
                              client_max_size=SMALL_BODY)  # nothing is uploaded here: only announcements
        app.router.add_get("/v1/weights/latest", self.get_latest)
        app.router.add_get("/v1/weights/{v}/manifest", self.get_manifest)
        app.router.add_get("/v1/weights/{v}/blob", self.get_blob)
        app.router.add_post("/v1/weights/{v}/holders", self.post_holder)
        app.router.add_get(METRICS_PATH, self.metrics_handler)
        app.router.add_get(HEALTH_PATH, self.health)
        app.router.add_get(READY_PATH, self.ready)
        return app

    def _version(self, request: web.Request) -> int:
        try:
            v = int(request.match_info["v"])
        except ValueError as exc:
            raise HTTPProblem(400, "version must be an integer", "version") from exc
        if v not in self.versions:
            have = sorted(self.versions)
            raise HTTPProblem(404, f"version {v} is not held here (held: {have})", "version")
        return v

    def _assign(self, v: int, request: web.Request) -> WeightManifest:
        manifest = self.versions[v][0]
        client = request.query.get("client", "")
        exclude = {x for x in request.query.get("exclude", "").split(",") if x}
        if not self.s.origin:
            return manifest
        known = self.holders.get(v, {})
        for bad in exclude & set(known):  # a relay a client could not use is offered to nobody again
            self._drop_holder(v, bad)
            log.warning("relay %s failed a client; no longer offered for version %d", bad, v)
        now = self.clock()
        holders = {u: n for u, n in known.items() if u != client and self.holder_expiry.get((v, u), 0.0) > now}
        peers = sorted(holders, key=lambda u: holders[u])
        if self.s.relay and peers:
            self.holders[v][peers[0]] += 1
            return manifest.model_copy(update={"peers": peers, "source": peers[0]})
        slots = {c: d for c, d in self.slots.get(v, {}).items() if d > now}
        self.slots[v] = slots
        if not self.s.relay or client in slots or len(slots) < self.s.origin_slots or not client or exclude:
            if client:
                slots[client] = now + self.s.slot_seconds
            return manifest.model_copy(update={"peers": peers, "source": None})
        return manifest.model_copy(update={"peers": peers, "source": None, "retry_after_seconds": self.s.retry_after_seconds})

    async def get_latest(self, request: web.Request) -> web.Response:
        self.prune_holders()
        if self.latest is None:
            raise HTTPProblem(404, "no weight version published yet", "version")
        return json_response(self._assign(self.latest, request))

    async def get_manifest(self, request: web.Request) -> web.Response:
        self.prune_holders()
        return json_response(self._assign(self._version(request), request))

    async def get_blob(self, request: web.Request) -> web.StreamResponse:
        v = self._version(request)
        manifest, blob = self.versions[v]
        total = manifest.total_bytes
        rng = request.headers.get("Range")
        start, end = 0, total
        if rng:
            m = _RANGE.match(rng.strip())
            if not m:
                raise HTTPProblem(416, f"unsupported Range {rng!r}; use bytes=a-b", "Range")
            start = int(m.group(1))
            end = int(m.group(2)) + 1 if m.group(2) else total
            if start >= total or end > total or start >= end:
                raise HTTPProblem(416, f"range {start}-{end - 1} outside 0-{total - 1}", "Range")
        size = end - start
        self.served_bytes += size
        self.metrics["hexrl_weight_served_bytes"].inc(size)
        headers = {"Content-Type": "application/octet-stream", "X-Hexrl-Version": str(v)}
        if rng:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{total}"
        headers["Content-Length"] = str(size)
        resp = web.StreamResponse(status=206 if rng else 200, headers=headers)
        await resp.prepare(request)
        fobj = self._files.get(v)
        if fobj is not None and request.transport is not None:
            # Zero-copy: the kernel moves the bytes from the in-memory file to the socket, no Python
            # buffer copies and no event-loop round trip per slice (the slice path below reaches ~10% of
            # the link).
            with os.fdopen(os.dup(fobj.fileno()), "rb", buffering=0) as mine:
                await asyncio.get_running_loop().sendfile(request.transport, mine, start, size)
            await resp.write_eof()
            return resp
        view = memoryview(blob) if blob is not None else memoryview(_read_file(fobj))
        # Write in slices: handing asyncio one 64 MiB buffer makes its transport memmove the unsent
        # remainder after every partial send (quadratic on Python 3.11); slices keep each write small.
        for pos in range(start, end, WRITE_SLICE):
            await resp.write(view[pos : min(end, pos + WRITE_SLICE)])
        await resp.write_eof()
        return resp

    async def post_holder(self, request: web.Request) -> web.Response:
        """A relay says it holds (or released) a version. Only for itself: the URL's host must be the
        caller's own address, over plain http (clients send their bearer token to whatever relay the origin
        names, so an announcement of somebody else's URL would collect it), and only for a version this
        origin still serves; at most `max_holders` relays per version."""
        ann = await parse(HolderAnnouncement, request, SMALL_BODY)
        self.prune_holders()
        v = ann.version
        url = urlsplit(ann.url)
        if url.scheme != "http" or not url.hostname or url.hostname != request.remote or url.path not in ("", "/"):
            raise HTTPProblem(403, f"a relay may announce only itself (http://{request.remote}:PORT), not {ann.url!r}",
                              "url")
        if v not in self.versions:
            raise HTTPProblem(404, f"version {v} is not served here (held: {sorted(self.versions)})", "version")
        if ann.state == "complete":
            holders = self.holders.setdefault(v, {})
            if ann.url not in holders and len(holders) >= self.s.max_holders:
                raise HTTPProblem(429, f"version {v} already has {len(holders)} relays", "url")
            self._keep_holder(v, ann.url)
        else:
            self._drop_holder(v, ann.url)
        self.slots.get(v, {}).pop(ann.url, None)
        return web.json_response({"holders": len(self.holders.get(v, {}))})

    # ------------------------------------------------------------------------------ relay registry

    def _keep_holder(self, v: int, url: str) -> None:
        """Register or renew a relay entry for `holder_ttl_seconds` from now."""
        expires = self.clock() + self.s.holder_ttl_seconds
        if (v, url) not in self.holder_expiry:
            self._expiry_queue.append((expires, v, url))  # a renewal moves the deadline, not the queue entry
        self.holders.setdefault(v, {}).setdefault(url, 0)
        self.holder_expiry[(v, url)] = expires

    def _drop_holder(self, v: int, url: str) -> None:
        self.holders.get(v, {}).pop(url, None)
        self.holder_expiry.pop((v, url), None)

    def prune_holders(self, limit: int = PRUNE_PER_REQUEST) -> int:
        """Remove up to `limit` expired relay entries, oldest first; returns how many were removed.

        Each entry has one queue entry; a renewed one is put back at the end with its new deadline (the
        queue stays one entry per relay however often they renew). Entries dropped otherwise (a release,
        a failed relay, a version no longer served) are skipped when they come up."""
        now, removed, looked = self.clock(), 0, 0
        while self._expiry_queue and self._expiry_queue[0][0] <= now and looked < 2 * limit and removed < limit:
            _, v, url = self._expiry_queue.popleft()
            looked += 1
            current = self.holder_expiry.get((v, url))
            if current is None or v not in self.versions:
                self._drop_holder(v, url)
                continue
            if current > now:
                self._expiry_queue.append((current, v, url))
                continue
            self._drop_holder(v, url)
            removed += 1
        return removed

    async def metrics_handler(self, request: web.Request) -> web.Response:
        body, ctype = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": ctype})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "latest": self.latest})

    async def ready(self, request: web.Request) -> web.Response:
        return readiness_response(self.readiness)

    async def start(self, host: str = "0.0.0.0", port: int = 0) -> int:
        self.runner, self.port = await start_site(self.app(), host, port)
        return self.port

    async def stop(self) -> None:
        await stop_site(self.runner)
        for f in self._files.values():
            if f is not None:
                f.close()
        self._files.clear()


def _read_file(fobj: BinaryIO | None) -> bytes:
    assert fobj is not None
    return os.pread(fobj.fileno(), os.fstat(fobj.fileno()).st_size, 0)


def _memfile(blob: bytearray, version: int) -> BinaryIO | None:
    """The blob in an anonymous in-memory file (Linux memfd) that `sendfile` can serve; None elsewhere.

    One extra copy of the weights at publish time buys zero-copy serving to every puller."""
    if not hasattr(os, "memfd_create"):
        return None
    fd = os.memfd_create(f"hexrl-weights-v{version}", os.MFD_CLOEXEC)
    f = os.fdopen(fd, "w+b", buffering=0)
    view = memoryview(blob)
    pos = 0
    while pos < len(view):
        pos += f.write(view[pos : pos + (64 << 20)]) or 0
    return f  # type: ignore[return-value]


class ThreadedWeightServer(ThreadedService):
    """A weight server on its own thread and loop (trainer rank 0, rollout relays, tests)."""

    thread_name = "weights"

    def publish(self, manifest: WeightManifest, blob: bytearray) -> None:
        done = threading.Event()

        def _do() -> None:
            self.server.publish(manifest, blob)
            done.set()

        self.loop.call_soon_threadsafe(_do)
        done.wait(30)
