"""Benchmarks of the worker runtime (printed, never asserted; see DESIGN.md §7).

1. async (η = 4) vs synchronous (η = 0): wall time of the tiny job to the same number of trained samples,
   through the real local runner (Ray, HTTP coordinator, rollout actors, trainer);
2. a 1 GiB weight pull through the weight service (parallel range requests, a digest per chunk) vs raw
   loopback TCP measured in the same run, both from a separate server process: sha256 against BLAKE3,
   a fresh receive buffer against the rollout worker's path (each version into the previous one's buffer);
3. 8 workers pulling one version with relay: trainer (origin) egress / weight size;
4. coordinator ingest: small trajectories per second into `python -m hexrl_workers coordinator`.

Run: `.venv/bin/python bench/bench_workers.py [--quick]` (quick: smaller sizes, fewer steps).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from hexrl.api.jobtokens import derive_tokens, encode_digests

if TYPE_CHECKING:
    import requests

    from hexrl.api.models import RLJobSpec
    from hexrl_workers.protocol import WorkItem

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
TOKENS = derive_tokens(b"bench-key", "bench")
TOKEN = TOKENS["rollout"]
"""What the bench's clients present: the rollout role's token (pulls, work, trajectories)."""
DIGESTS = encode_digests(TOKENS)
"""What the bench's services check tokens against (HEXRL_TOKEN_DIGESTS)."""


# ------------------------------------------------------------------------------------ 1. async vs sync


def bench_async_vs_sync(steps: int) -> None:
    from hexrl.api.models import RLJob
    from hexrl_workers.local import LocalOptions, run_local

    job = RLJob.model_validate(yaml.safe_load((REPO / "manifests/examples/rljob-tiny.yaml").read_text()))
    res = {}
    for name, sync in (("async η=4", False), ("sync η=0", True)):
        # a fresh checkpoint directory per run: the job's own path would make the second run resume the first
        ckdir = tempfile.mkdtemp(prefix="hexrl-bench-")
        res[name] = run_local(job, LocalOptions(steps=steps, sync=sync, workers=2, show_progress=False,
                                                checkpoint_dir=ckdir))
        r = res[name]
        print(f"  {name:10s} steps={r['steps']} samples={r['trainedSamples']} wall={r['wallSeconds']:.1f}s "
              f"reward {r['initialReward']}→{r['finalReward']} maxStaleness={r['maxObservedStaleness']} "
              f"trainer idle {r['trainerIdleFraction']:.0%} of the wall time")
    a, s = res["async η=4"]["wallSeconds"], res["sync η=0"]["wallSeconds"]
    # On CPUs the async gain is the core that sync leaves idle while the single-threaded trainer runs:
    # at best (g/2 + T) / ((g + T)/2) for generation g and training T CPU-seconds per step on 2 cores.
    # Other busy processes take that idle core too, and the ratio falls towards 1: print the load.
    print(f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; the ratio needs the cores to "
          "itself: other busy processes use the core that sync leaves idle)")
    print(f"  => sync/async wall-time ratio to {res['sync η=0']['trainedSamples']} trained samples: {s / a:.2f}x")


# ----------------------------------------------------------------------------------- 2. 1 GiB pull

RAW_SERVER = """
import socket, sys
n = int(sys.argv[1]); buf = bytes(64 << 20)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); sent = 0
while sent < n:
    k = min(len(buf), n - sent); c.sendall(memoryview(buf)[:k]); sent += k
c.close()
"""

WEIGHT_SERVER = """
import sys, time, torch, asyncio
from hexrl_workers.httpcommon import Credentials
from hexrl_workers.weights.server import WeightServer, WeightServerSettings
from hexrl_workers.weights.store import pack
n, chunk, digests, digest = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
srv = WeightServer(WeightServerSettings(credentials=Credentials.parse(digests), keep_versions=3))
for version in (1, 2, 3):  # consecutive versions, as a trainer publishes them
    state = {f"layer{i}.weight": torch.randn(n // 4 // 16 // 1024, 1024) for i in range(16)}
    manifest, blob = pack(state, version, chunk, digest)
    srv.publish(manifest, blob)
async def main():
    port = await srv.start("127.0.0.1", 0)
    print(port, manifest.total_bytes, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def _raw_tcp(nbytes: int) -> float:
    p = subprocess.Popen([PY, "-c", RAW_SERVER, str(nbytes)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(p.stdout.readline())  # type: ignore[union-attr]
        buf = bytearray(nbytes)
        view = memoryview(buf)
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as s:
            got = 0
            while got < nbytes:
                k = s.recv_into(view[got:], min(16 << 20, nbytes - got))
                if k == 0:
                    break
                got += k
        return got / (time.perf_counter() - t0)
    finally:
        p.wait(30)


def bench_weight_pull(nbytes: int) -> None:
    """Side by side in one run: raw loopback TCP, and verified pulls by digest and receive buffer."""
    raw = _raw_tcp(nbytes)
    print(f"  raw loopback TCP (1 stream, no checks): {raw / 1e9:.2f} GB/s for {nbytes / 2**30:.2f} GiB")
    for digest in ("sha256", "blake3"):
        for label, rate in _pull_rates(nbytes, digest):
            print(f"  weight pull, 4 parallel chunks, {digest:6} per chunk, {label}: {rate / 1e9:.2f} GB/s "
                  f"=> {rate / raw:.0%} of raw TCP")
    import hashlib

    import blake3

    probe = bytes(64 << 20)
    for name, fn in (("sha256", lambda: hashlib.sha256(probe).digest()), ("blake3", lambda: blake3.blake3(probe).digest())):
        t0 = time.perf_counter()
        fn()
        print(f"  ({name} on one core: {len(probe) / (time.perf_counter() - t0) / 1e9:.2f} GB/s)")


def _pull_rates(nbytes: int, digest: str) -> list[tuple[str, float]]:
    """(what, bytes/s): version 1 into a fresh buffer; versions 2 and 3 each into the previous one's buffer
    (what `RolloutWorker.maybe_update_weights` does)."""
    from hexrl_workers.weights.client import WeightClient, WeightClientSettings

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([PY, "-c", WEIGHT_SERVER, str(nbytes), str(64 << 20), DIGESTS, digest],
                         stdout=subprocess.PIPE, text=True, env=env)
    try:
        port, total = (int(x) for x in p.stdout.readline().split())  # type: ignore[union-attr]
        client = WeightClient(WeightClientSettings(f"http://127.0.0.1:{port}", TOKEN, parallel=4))
        out, blob = [], None
        for version in (1, 2, 3):
            t0 = time.perf_counter()
            _, blob = client.pull(version, into=blob)
            dt = time.perf_counter() - t0
            assert len(blob) == total
            out.append(("fresh buffer      " if version == 1 else f"reused buffer (v{version})", total / dt))
        return out
    finally:
        p.kill()
        p.wait(10)


# ---------------------------------------------------------------------------------------- 3. relay


def bench_relay(nbytes: int, workers: int = 8) -> None:
    import torch

    from hexrl_workers.httpcommon import Credentials
    from hexrl_workers.weights.client import WeightClient, WeightClientSettings
    from hexrl_workers.weights.server import ThreadedWeightServer, WeightServer, WeightServerSettings
    from hexrl_workers.weights.store import pack

    state = {"w": torch.randn(nbytes // 4)}
    for relay in (True, False):
        origin = ThreadedWeightServer(WeightServer(WeightServerSettings(credentials=Credentials.parse(DIGESTS), relay=relay)))
        manifest, blob = pack(state, 1, 8 << 20)
        origin.publish(manifest, blob)
        relays = [ThreadedWeightServer(WeightServer(WeightServerSettings(credentials=Credentials.parse(DIGESTS), origin=False), role="rollout"))
                  for _ in range(workers)]

        def pull(r: ThreadedWeightServer, origin: ThreadedWeightServer = origin, relay: bool = relay) -> None:
            c = WeightClient(WeightClientSettings(origin.url, TOKEN, my_url=r.url if relay else None))
            m, b = c.pull()
            r.publish(m, b)
            c.announce(m.version)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=pull, args=(r,)) for r in relays]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        print(f"  {workers} workers, relay={'on ' if relay else 'off'}: trainer egress / weight size = "
              f"{origin.server.served_bytes / manifest.total_bytes:.2f} ({manifest.total_bytes / 2**20:.0f} MiB, "
              f"all pulled in {dt:.2f}s)")
        for r in relays:
            r.close()
        origin.close()


# ------------------------------------------------------------------------------------------ 4. ingest


@dataclass
class _Coordinator:
    """A coordinator process started for the bench, and a client session that presents the bench's token."""

    process: subprocess.Popen[bytes]
    url: str
    session: requests.Session


def _ingest_spec() -> RLJobSpec:
    """The tiny job's spec with groups of 2 and a batch and lag large enough that dispatch never waits."""
    from hexrl.api.models import RLJob

    job = RLJob.model_validate(yaml.safe_load((REPO / "manifests/examples/rljob-tiny.yaml").read_text()))
    spec = job.spec
    spec.algorithm.group_size = 2
    spec.algorithm.prompts_per_step = 2048
    spec.algorithm.total_steps = None
    spec.staleness.max_policy_lag = 64
    return spec


def _start_coordinator(spec: RLJobSpec) -> _Coordinator:
    """Start `python -m hexrl_workers coordinator` for `spec` on a free local port."""
    import requests

    from hexrl.api.workerconfig import WorkerConfig, render_worker_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = Path(tempfile.mkdtemp()) / "config.yaml"
    cfg.write_text(render_worker_config(WorkerConfig(job="bench", spec=spec, coordinator_url="x", weights_url="y")))
    env = {**os.environ, "HEXRL_CONFIG": str(cfg), "HEXRL_TOKEN_DIGESTS": DIGESTS, "HEXRL_PORT": str(port),
           "HEXRL_LOG_LEVEL": "WARNING"}
    p = subprocess.Popen([PY, "-m", "hexrl_workers", "coordinator"], env=env)
    sess = requests.Session()
    sess.headers["Authorization"] = f"Bearer {TOKEN}"
    return _Coordinator(p, f"http://127.0.0.1:{port}", sess)


def _wait_healthy(coord: _Coordinator) -> None:
    """Poll /healthz until the coordinator answers (at most about a minute)."""
    import requests

    for _ in range(600):
        try:
            coord.session.get(coord.url + "/healthz", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.1)


def _dispatch(coord: _Coordinator, n: int) -> tuple[list[WorkItem], float]:
    """Take work items until they make `n` trajectories (or none are left); returns them and the seconds taken."""
    from hexrl_workers.protocol import WorkResponse

    items: list[WorkItem] = []
    t0 = time.perf_counter()
    while 2 * len(items) < n:
        r = coord.session.post(coord.url + "/v1/work", json={"workerId": "bench", "maxItems": 1024}, timeout=60)
        got = WorkResponse.model_validate_json(r.content).items
        if not got:
            break
        items.extend(got)
    return items, time.perf_counter() - t0


def _trajectory_bodies(items: list[WorkItem], per_request: int) -> list[str]:
    """Two small trajectories per work item, serialised `per_request` to a request body ahead of timing."""
    from hexrl_workers.protocol import Trajectory, TrajectoryBatchIn

    bodies = []
    samples = [(it, k) for it in items for k in range(2)]
    for k in range(0, len(samples), per_request):
        trajs = [Trajectory(item_id=it.item_id, epoch=it.epoch, group_id=it.group_id, group_size=2, sample_index=j,
                            prompt_id=it.prompt.prompt_id, prompt_tokens=[1, 5, 6, 7], tokens=[8, 2],
                            logprobs=[-0.5, -0.1], versions=[0, 0], reward=1.0)
                 for it, j in samples[k:k + per_request]]
        bodies.append(TrajectoryBatchIn(trajectories=trajs).model_dump_json(by_alias=True))
    return bodies


def _post_trajectories(coord: _Coordinator, bodies: list[str]) -> tuple[int, float]:
    """POST the bodies one after the other; returns the trajectories accepted and the seconds taken."""
    t0 = time.perf_counter()
    accepted = 0
    for body in bodies:
        r = coord.session.post(coord.url + "/v1/trajectories", data=body,
                               headers={"Content-Type": "application/json"}, timeout=60)
        accepted += r.json()["accepted"]
    return accepted, time.perf_counter() - t0


def bench_ingest(n: int, per_request: int = 500) -> None:
    """Work dispatch and trajectory ingest rates of a real coordinator process, for `n` trajectories."""
    coord = _start_coordinator(_ingest_spec())
    try:
        _wait_healthy(coord)
        items, t_dispatch = _dispatch(coord, n)
        bodies = _trajectory_bodies(items, per_request)
        accepted, dt = _post_trajectories(coord, bodies)
        print(f"  dispatch: {len(items)} work items (groups of 2) in {t_dispatch:.2f}s = {len(items) / t_dispatch:,.0f} items/s")
        print(f"  ingest: {accepted} trajectories ({per_request}/request) in {dt:.2f}s = {accepted / dt:,.0f} "
              "trajectories/s")
    finally:
        coord.process.terminate()
        coord.process.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer steps")
    ap.add_argument("--only", choices=["async", "pull", "relay", "ingest"], default=None)
    args = ap.parse_args()
    q = args.quick
    if args.only in (None, "ingest"):
        print("== coordinator ingest")
        bench_ingest(20_000 if q else 60_000)
    if args.only in (None, "relay"):
        print("== relay")
        bench_relay((32 if q else 256) << 20)
    if args.only in (None, "pull"):
        print("== weight pull vs raw loopback TCP")
        bench_weight_pull((256 if q else 1024) << 20)
    if args.only in (None, "async"):
        print("== async vs sync (tiny job, local Ray runner)")
        bench_async_vs_sync(40 if q else 100)


if __name__ == "__main__":
    main()
