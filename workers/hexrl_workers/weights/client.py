"""Pulling a weight version: manifest, parallel range downloads, per-chunk digest, resume, relay.

`WeightClient.pull()`:
1. asks the origin for the manifest (`?client=<my relay url>`); the origin names a source — a relay
   peer, itself, or "retry shortly" (see `weights.server`);
2. downloads the chunks not yet verified, `parallel` at a time, with HTTP Range requests;
3. verifies each chunk's digest (BLAKE3, or what the manifest names) while it arrives, and marks it
   usable only when it matches; a chunk that fails is
   counted, and fetched again from the origin (a bad peer must not be trusted twice);
4. keeps verified chunks across failures (in memory, and in `cache_dir` when given, so a restarted
   process resumes where it stopped);
5. a peer that fails (connection error) or serves a chunk with a wrong digest is never used again by this
   client and is reported in `exclude` with every manifest request; the origin stops offering it to anyone.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from hexrl_workers.httpcommon import bearer
from hexrl_workers.metrics import Metrics
from hexrl_workers.protocol import HolderAnnouncement, WeightManifest
from hexrl_workers.weights.store import chunk_ranges, hexdigest, new_hasher

log = logging.getLogger(__name__)


HASH_SLICE = 4 << 20
"""Bytes received before hashing them, when downloading a chunk: small enough to stay in cache between
`recv_into` and the hash, large enough that the per-call overhead vanishes."""


class _TransferError(Exception):
    """A chunk download failed in transit (bad status, short or long body): retried elsewhere."""


class WeightPullError(RuntimeError):
    """A version could not be pulled (bad token, origin unreachable, chunks keep failing)."""


@dataclass
class WeightClientSettings:
    """Knobs of one puller."""

    origin_url: str
    """Base URL of the weight service on trainer rank 0 (config weightsUrl)."""
    token: str | None = None
    """The job's rollout-role bearer token (`hexrl_workers.httpcommon.ACCESS`)."""
    parallel: int = 4
    """Concurrent chunk downloads (spec.weightSync.parallelChunks)."""
    my_url: str | None = None
    """This worker's relay base URL, announced to the origin after a complete pull (None: not a relay)."""
    cache_dir: str | None = None
    """Directory for resumable partial downloads (None: resume only within this process)."""
    chunk_attempts: int = 4
    """Fetches of one chunk before giving up (each failure after the first goes to the origin)."""
    wait_seconds: float = 60.0
    """Longest total wait for the origin to assign a source, seconds."""
    timeout_seconds: float = 300.0
    """Timeout of one chunk request, seconds (64 MiB over a slow link takes a while)."""
    reannounce_seconds: float = 30.0
    """A relay renews its announcement this often, seconds (well inside the origin's
    `WeightServerSettings.holder_ttl_seconds`, so a live relay's entry never lapses)."""


@dataclass
class PullStats:
    version: int = 0
    seconds: float = 0.0
    bytes_by_source: dict[str, int] = field(default_factory=dict)
    rejected_chunks: int = 0


@dataclass
class _Pull:
    """The state of one pull shared by its chunk fetches."""

    man: WeightManifest
    view: memoryview
    """The blob being filled (each chunk writes its own slice)."""
    ranges: list[tuple[int, int]]
    done: set[int]
    """Indices of the verified chunks."""
    source: str
    """Where chunks come from now: the relay the manifest named, or the origin after a relay failed."""
    exclude: set[str]
    """Relays that failed (not to be offered again)."""
    stats: PullStats
    sem: asyncio.Semaphore
    loop: asyncio.AbstractEventLoop
    pool: ThreadPoolExecutor


class WeightClient:
    def __init__(self, settings: WeightClientSettings, metrics: Metrics | None = None) -> None:
        self.s = settings
        self.metrics = metrics
        self._verified: dict[int, dict[int, bytes]] = {}  # version -> chunk index -> verified bytes
        self.last = PullStats()
        self.announced: tuple[int, float] | None = None
        """(version, monotonic time) of this relay's last announcement (see `keep_announced`): only a version
        this relay holds is ever announced, so only that one is renewed."""
        self.bad_relays: set[str] = set()
        """Relays that failed or served a chunk with a wrong digest: never used again by this client, and
        reported to the origin with every manifest request so it stops offering them to anyone."""

    # ------------------------------------------------------------------------------------ protocol

    async def _manifest(self, session: aiohttp.ClientSession, version: int | None, exclude: set[str]) -> WeightManifest:
        what = "latest" if version is None else f"{version}/manifest"
        params = {}
        if self.s.my_url:
            params["client"] = self.s.my_url
        if exclude:
            params["exclude"] = ",".join(sorted(exclude))
        deadline = time.monotonic() + self.s.wait_seconds
        while True:
            async with session.get(f"{self.s.origin_url}/v1/weights/{what}", params=params) as resp:
                if resp.status == 401:
                    raise WeightPullError("weight service refused the token (401): check the job's Secret")
                if resp.status != 200:
                    raise WeightPullError(f"weight manifest: HTTP {resp.status}: {await resp.text()}")
                man = WeightManifest.model_validate_json(await resp.read())
            if man.retry_after_seconds is None or time.monotonic() > deadline:
                return man
            await asyncio.sleep(man.retry_after_seconds)

    def _get_range(self, base: str, version: int, a: int, b: int, into: memoryview, digest: str) -> str:
        """Receive bytes [a, b) straight into `into` (the blob's slice) and return their hex `digest`.

        Blocking, run on a worker thread: `recv_into` writes the socket's bytes directly into the
        preallocated blob (one kernel copy, no Python buffers), and the hash over each received slice
        overlaps with the kernel filling the socket buffer; both release the GIL, so `parallel` chunks
        proceed on separate cores. (The aiohttp stream path costs two more copies and an event-loop
        round trip per read, and hashed on the loop thread: about 10% of the link.) The caller marks
        the chunk usable only when the digest matches the manifest."""
        url = urlsplit(base)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80,
                                          timeout=self.s.timeout_seconds)
        try:
            headers = {"Range": f"bytes={a}-{b - 1}", **bearer(self.s.token)}
            conn.request("GET", f"{url.path.rstrip('/')}/v1/weights/{version}/blob", headers=headers)
            resp = conn.getresponse()
            if resp.status == 401:
                raise WeightPullError(f"{base} refused the token (401)")
            if resp.status not in (200, 206):
                raise _TransferError(f"{base}: HTTP {resp.status}: {resp.read(2000).decode(errors='replace')}")
            want = b - a
            if resp.length is not None and resp.length != want:
                raise _TransferError(f"range {a}-{b - 1}: the server sends {resp.length} bytes, not {want}")
            h = new_hasher(digest)
            pos = 0
            while pos < want:
                n = resp.readinto(into[pos : min(want, pos + HASH_SLICE)])
                if not n:
                    break
                h.update(into[pos : pos + n])
                pos += n
            if pos != want:
                raise _TransferError(f"range {a}-{b - 1}: got {pos} of {want} bytes")
            return h.hexdigest()
        finally:
            conn.close()

    # ------------------------------------------------------------------------------------ resuming

    def _cache_paths(self, version: int) -> tuple[Path, Path] | None:
        if not self.s.cache_dir:
            return None
        d = Path(self.s.cache_dir)
        d.mkdir(parents=True, exist_ok=True)
        return d / f"v{version}.blob", d / f"v{version}.done.json"

    def _load_resume(self, man: WeightManifest, blob: bytearray) -> set[int]:
        done = set(self._verified.get(man.version, {}))
        for idx, data in self._verified.get(man.version, {}).items():
            a = idx * man.chunk_bytes
            blob[a : a + len(data)] = data
        paths = self._cache_paths(man.version)
        if paths and paths[0].exists() and paths[1].exists():
            with paths[0].open("rb") as f:
                on_disk = f.read()
            for idx in json.loads(paths[1].read_text()):
                a, b = chunk_ranges(man.total_bytes, man.chunk_bytes)[idx]
                if len(on_disk) >= b and hexdigest(man.digest, on_disk[a:b]) == man.chunk_digests[idx]:
                    blob[a:b] = on_disk[a:b]
                    done.add(idx)
        return done

    def _save_progress(self, man: WeightManifest, blob: bytearray, done: set[int]) -> None:
        paths = self._cache_paths(man.version)
        if not paths:
            return
        with paths[0].open("wb") as f:
            f.write(blob)
        tmp = paths[1].with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(done)))
        os.replace(tmp, paths[1])

    # --------------------------------------------------------------------------------------- pull

    async def pull_async(
        self, version: int | None = None, into: bytearray | None = None
    ) -> tuple[WeightManifest, bytearray]:
        """Pull `version` (None: the latest). `into`: a buffer of the right size to receive the blob (for
        example the previous version's, which has the same size): saves allocating and page-faulting a
        fresh one per version, which costs about as much as the transfer itself on loopback."""
        t0 = time.monotonic()
        stats = PullStats()
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self.s.timeout_seconds, sock_connect=10)
        connector = aiohttp.TCPConnector(limit=max(4, 2 * self.s.parallel))
        async with aiohttp.ClientSession(
            headers=bearer(self.s.token), timeout=timeout, connector=connector
        ) as sess:
            exclude = self.bad_relays
            man = await self._manifest(sess, version, exclude)
            blob = into if into is not None and len(into) == man.total_bytes else bytearray(man.total_bytes)
            pull = _Pull(
                man=man, view=memoryview(blob), ranges=chunk_ranges(man.total_bytes, man.chunk_bytes),
                done=self._load_resume(man, blob), source=man.source or self.s.origin_url, exclude=exclude,
                stats=stats, sem=asyncio.Semaphore(self.s.parallel), loop=asyncio.get_running_loop(),
                pool=ThreadPoolExecutor(max_workers=max(1, self.s.parallel), thread_name_prefix="weight-pull"),
            )
            await self._fetch_missing(pull, blob)
            self._verified.pop(man.version, None)
            for path in self._cache_paths(man.version) or ():
                path.unlink(missing_ok=True)
        stats.version = man.version
        stats.seconds = time.monotonic() - t0
        self.last = stats
        if self.metrics:
            self.metrics["hexrl_weight_pull_seconds"].observe(stats.seconds)
        return man.model_copy(update={"source": None, "peers": [], "retry_after_seconds": None}), blob

    async def _fetch_missing(self, pull: _Pull, blob: bytearray) -> None:
        """Fetch every chunk not yet verified, in parallel; on any failure keep the verified ones (in
        memory and on disk) so the next attempt fetches only what is missing, then raise."""
        try:
            # let every chunk finish or fail before judging, so all verified chunks are kept
            results = await asyncio.gather(
                *(self._fetch_chunk(pull, i) for i in range(len(pull.ranges)) if i not in pull.done),
                return_exceptions=True,
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]
        except BaseException:
            pull.pool.shutdown(wait=False, cancel_futures=True)
            self._verified[pull.man.version] = {i: bytes(blob[pull.ranges[i][0] : pull.ranges[i][1]])
                                                for i in pull.done}
            self._save_progress(pull.man, blob, pull.done)
            raise
        pull.pool.shutdown(wait=False)

    async def _fetch_chunk(self, pull: _Pull, idx: int) -> None:
        """One chunk into its slice of the blob, verified against the manifest's digest: from the relay
        first, from the origin after a relay failure (which also moves every later chunk to the origin) or a
        bad digest; `chunk_attempts` tries in all."""
        man = pull.man
        a, b = pull.ranges[idx]
        for attempt in range(self.s.chunk_attempts):
            base = pull.source if attempt == 0 else self.s.origin_url
            try:
                async with pull.sem:
                    digest = await pull.loop.run_in_executor(
                        pull.pool, self._get_range, base, man.version, a, b, pull.view[a:b], man.digest)
            except (OSError, http.client.HTTPException, _TransferError) as exc:
                if base != self.s.origin_url:
                    log.warning("relay %s failed (%s); falling back to the origin", base, exc)
                    pull.exclude.add(base)
                    pull.source = self.s.origin_url
                continue
            if digest == man.chunk_digests[idx]:
                pull.done.add(idx)
                kind = "origin" if base == self.s.origin_url else "peer"
                pull.stats.bytes_by_source[kind] = pull.stats.bytes_by_source.get(kind, 0) + (b - a)
                if self.metrics:
                    self.metrics["hexrl_weight_fetched_bytes"].labels(kind).inc(b - a)
                return
            pull.stats.rejected_chunks += 1
            if self.metrics:
                self.metrics["hexrl_weight_chunk_rejected"].inc()
            if base != self.s.origin_url:  # a relay that served bad bytes is not trusted again
                pull.exclude.add(base)
                pull.source = self.s.origin_url
            log.warning("chunk %d of version %d from %s failed its %s check; re-fetching from the origin",
                        idx, man.version, base, man.digest)
        raise WeightPullError(f"chunk {idx} of version {man.version} failed {self.s.chunk_attempts} times")

    async def announce_async(self, version: int) -> None:
        """Tell the origin this worker's relay now serves `version` (call after the relay has it)."""
        if not self.s.my_url:
            return
        ann = HolderAnnouncement(url=self.s.my_url, version=version)
        self.announced = (version, time.monotonic())  # a failed one is retried by `keep_announced` too
        try:
            async with aiohttp.ClientSession(headers=bearer(self.s.token)) as sess, sess.post(
                f"{self.s.origin_url}/v1/weights/{version}/holders", json=ann.wire()
            ) as resp:
                if resp.status != 200:
                    log.warning("announcing version %d: HTTP %d: %s", version, resp.status, (await resp.text())[:200])
        except aiohttp.ClientError as exc:  # relaying is an optimisation; the pull itself succeeded
            log.warning("could not announce version %d: %s", version, exc)

    def announce(self, version: int) -> None:
        asyncio.run(self.announce_async(version))

    def keep_announced(self, version: int) -> bool:
        """Renew this relay's announcement of `version` when `reannounce_seconds` have passed since the last
        one (the origin forgets entries that are not renewed); True if it announced."""
        if not self.s.my_url or self.announced is None:
            return False
        last_version, at = self.announced
        if last_version != version or time.monotonic() - at < self.s.reannounce_seconds:
            return False
        self.announce(version)
        return True

    def pull(self, version: int | None = None, into: bytearray | None = None) -> tuple[WeightManifest, bytearray]:
        """Blocking pull (for the synchronous worker loop); see `pull_async`."""
        box: list[tuple[WeightManifest, bytearray]] = []

        async def run() -> None:
            # The blob is handed out through `box`, not as the task's result: on the main thread
            # asyncio.run (3.11) restores its SIGINT handler, whose repr includes the finished main
            # task's repr — including repr() of a multi-GiB result, which takes seconds.
            box.append(await self.pull_async(version, into))

        try:
            asyncio.run(run())
            return box[0]
        except aiohttp.ClientError as exc:
            raise WeightPullError(f"weight service {self.s.origin_url} unreachable: {exc}") from exc
