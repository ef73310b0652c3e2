"""Pulling a weight version: manifest, parallel range downloads, per-chunk sha256, resume, relay.

`WeightClient.pull()`:
1. asks the origin for the manifest (`?client=<my relay url>`); the origin names a source — a relay
   peer, itself, or "retry shortly" (see `weights.server`);
2. downloads the chunks not yet verified, `parallel` at a time, with HTTP Range requests;
3. verifies each chunk's sha256 *before* it is written to the assembled blob; a chunk that fails is
   counted, and fetched again from the origin (a bad peer must not be trusted twice);
4. keeps verified chunks across failures (in memory, and in `cache_dir` when given, so a restarted
   process resumes where it stopped);
5. a failing peer (connection error) is reported in `exclude` and the origin assigns another source.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from hexrl_workers.httpcommon import bearer
from hexrl_workers.metrics import Metrics
from hexrl_workers.protocol import HolderAnnouncement, WeightManifest
from hexrl_workers.weights.store import chunk_ranges

log = logging.getLogger(__name__)


READ_BUFSIZE = 8 << 20
"""aiohttp's per-connection read buffer, bytes. The default (64 KiB) pauses and resumes the socket every
128 KiB, which costs an event-loop round trip each time and caps a 64 MiB chunk download far below
the link; 8 MiB keeps the socket streaming."""


class WeightPullError(RuntimeError):
    """A version could not be pulled (bad token, origin unreachable, chunks keep failing)."""


@dataclass
class WeightClientSettings:
    """Knobs of one puller."""

    origin_url: str
    """Base URL of the weight service on trainer rank 0 (config weightsUrl)."""
    token: str | None = None
    """Per-job bearer token."""
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


@dataclass
class PullStats:
    version: int = 0
    seconds: float = 0.0
    bytes_by_source: dict[str, int] = field(default_factory=dict)
    rejected_chunks: int = 0


class WeightClient:
    def __init__(self, settings: WeightClientSettings, metrics: Metrics | None = None) -> None:
        self.s = settings
        self.metrics = metrics
        self._verified: dict[int, dict[int, bytes]] = {}  # version -> chunk index -> verified bytes
        self.last = PullStats()

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

    async def _get_range(
        self, session: aiohttp.ClientSession, base: str, version: int, a: int, b: int, into: memoryview
    ) -> str:
        """Stream bytes [a, b) into `into` (the blob's slice) and return their sha256 hex digest.

        Hashing as the bytes arrive overlaps verification with the transfer; the caller marks the
        chunk usable only when the digest matches the manifest."""
        headers = {"Range": f"bytes={a}-{b - 1}"}
        h = hashlib.sha256()
        pos = 0
        async with session.get(f"{base}/v1/weights/{version}/blob", headers=headers) as resp:
            if resp.status == 401:
                raise WeightPullError(f"{base} refused the token (401)")
            if resp.status not in (200, 206):
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status, message=await resp.text())
            async for piece in resp.content.iter_chunked(READ_BUFSIZE):
                n = len(piece)
                if pos + n > b - a:
                    raise aiohttp.ClientPayloadError(f"range {a}-{b - 1}: more bytes than requested")
                into[pos : pos + n] = piece
                h.update(piece)
                pos += n
        if pos != b - a:
            raise aiohttp.ClientPayloadError(f"range {a}-{b - 1}: got {pos} of {b - a} bytes")
        return h.hexdigest()

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
                if len(on_disk) >= b and hashlib.sha256(on_disk[a:b]).hexdigest() == man.chunk_sha256[idx]:
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

    async def pull_async(self, version: int | None = None) -> tuple[WeightManifest, bytearray]:
        t0 = time.monotonic()
        stats = PullStats()
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self.s.timeout_seconds, sock_connect=10)
        connector = aiohttp.TCPConnector(limit=max(4, 2 * self.s.parallel))
        async with aiohttp.ClientSession(
            headers=bearer(self.s.token), timeout=timeout, connector=connector, read_bufsize=READ_BUFSIZE
        ) as sess:
            exclude: set[str] = set()
            man = await self._manifest(sess, version, exclude)
            blob = bytearray(man.total_bytes)
            done = self._load_resume(man, blob)
            ranges = chunk_ranges(man.total_bytes, man.chunk_bytes)
            source = man.source or self.s.origin_url
            sem = asyncio.Semaphore(self.s.parallel)
            view = memoryview(blob)

            async def fetch(idx: int) -> None:
                nonlocal source
                a, b = ranges[idx]
                for attempt in range(self.s.chunk_attempts):
                    base = source if attempt == 0 else self.s.origin_url
                    try:
                        async with sem:
                            digest = await self._get_range(sess, base, man.version, a, b, view[a:b])
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        if base != self.s.origin_url:
                            log.warning("relay %s failed (%s); falling back to the origin", base, exc)
                            exclude.add(base)
                            source = self.s.origin_url
                        continue
                    if digest == man.chunk_sha256[idx]:
                        done.add(idx)
                        kind = "origin" if base == self.s.origin_url else "peer"
                        stats.bytes_by_source[kind] = stats.bytes_by_source.get(kind, 0) + (b - a)
                        if self.metrics:
                            self.metrics["hexrl_weight_fetched_bytes"].labels(kind).inc(b - a)
                        return
                    stats.rejected_chunks += 1
                    if self.metrics:
                        self.metrics["hexrl_weight_chunk_rejected"].inc()
                    log.warning("chunk %d of version %d from %s failed sha256; re-fetching from the origin",
                                idx, man.version, base)
                raise WeightPullError(f"chunk {idx} of version {man.version} failed {self.s.chunk_attempts} times")

            try:
                # let every chunk finish or fail before judging, so all verified chunks are kept
                results = await asyncio.gather(
                    *(fetch(i) for i in range(len(ranges)) if i not in done), return_exceptions=True
                )
                errors = [r for r in results if isinstance(r, BaseException)]
                if errors:
                    raise errors[0]
            except BaseException:
                # keep what was verified: the next attempt fetches only the missing chunks
                self._verified[man.version] = {i: bytes(blob[ranges[i][0] : ranges[i][1]]) for i in done}
                self._save_progress(man, blob, done)
                raise
            self._verified.pop(man.version, None)
            paths = self._cache_paths(man.version)
            if paths:
                for p in paths:
                    p.unlink(missing_ok=True)
        stats.version = man.version
        stats.seconds = time.monotonic() - t0
        self.last = stats
        if self.metrics:
            self.metrics["hexrl_weight_pull_seconds"].observe(stats.seconds)
        return man.model_copy(update={"source": None, "peers": [], "retry_after_seconds": None}), blob

    async def announce_async(self, version: int) -> None:
        """Tell the origin this worker's relay now serves `version` (call after the relay has it)."""
        if not self.s.my_url:
            return
        ann = HolderAnnouncement(url=self.s.my_url, version=version)
        try:
            async with aiohttp.ClientSession(headers=bearer(self.s.token)) as sess, sess.post(
                f"{self.s.origin_url}/v1/weights/{version}/holders", json=ann.wire()
            ):
                pass
        except aiohttp.ClientError as exc:  # relaying is an optimisation; the pull itself succeeded
            log.warning("could not announce version %d: %s", version, exc)

    def announce(self, version: int) -> None:
        asyncio.run(self.announce_async(version))

    def pull(self, version: int | None = None) -> tuple[WeightManifest, bytearray]:
        """Blocking pull (for the synchronous worker loop)."""
        box: list[tuple[WeightManifest, bytearray]] = []

        async def run() -> None:
            # The blob is handed out through `box`, not as the task's result: on the main thread
            # asyncio.run (3.11) restores its SIGINT handler, whose repr includes the finished main
            # task's repr — including repr() of a multi-GiB result, which takes seconds.
            box.append(await self.pull_async(version))

        try:
            asyncio.run(run())
            return box[0]
        except aiohttp.ClientError as exc:
            raise WeightPullError(f"weight service {self.s.origin_url} unreachable: {exc}") from exc
