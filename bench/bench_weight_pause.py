"""Benchmark: how long a rollout worker's generation stands still per weight version, with the download
prefetched during generation (`hexrl_workers.rollout.prefetch`) against pulled at the wave boundary (the
worker before the prefetcher), side by side in one run. Printed, never asserted (DESIGN.md §7).

Real parts: the weight service (origin) on 127.0.0.1 in this process, the weight client, the prefetcher,
and the copy of every tensor into a resident model state (what an engine's load does). The engine's
generation is a sleep of one wave, during which a new version is published as a trainer would; the pause
is measured from the wave's end until the engine holds the new version.

Run: `.venv/bin/python bench/bench_weight_pause.py [--mib 512] [--versions 5] [--wave 2.0]`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hexrl.api.jobtokens import derive_tokens
from hexrl_workers.httpcommon import Credentials
from hexrl_workers.rollout.prefetch import PrefetchSettings, WeightPrefetcher
from hexrl_workers.weights.client import WeightClient, WeightClientSettings
from hexrl_workers.weights.server import ThreadedWeightServer, WeightServer, WeightServerSettings
from hexrl_workers.weights.store import pack, unpack

TOKENS = derive_tokens(b"bench-key", "bench")


def _state(mib: int, version: int) -> dict[str, torch.Tensor]:
    n = mib * 1024 * 1024 // 2 // 4096
    return {"w": torch.full((n, 4096), float(version), dtype=torch.bfloat16)}


def _credentials() -> Credentials:
    return Credentials.of_tokens(TOKENS)


def run(mode: str, mib: int, versions: int, wave: float) -> list[float]:
    """Pauses (seconds) of `versions` swaps with the download `prefetched` or `at-boundary`."""
    origin = ThreadedWeightServer(WeightServer(WeightServerSettings(credentials=_credentials(), origin=True)))
    client = WeightClient(WeightClientSettings(origin.url, TOKENS["rollout"], parallel=4))
    resident = {k: v.clone() for k, v in _state(mib, 0).items()}
    engine = {"version": 0}
    published = {"version": 0}
    # at the boundary: the worker's prefetcher with nothing to poll, so every version is pulled in `take`
    polled = (lambda: published["version"] or None) if mode == "prefetched" else None
    pre = WeightPrefetcher(client, lambda: engine["version"], polled, PrefetchSettings(poll_seconds=0.1))
    pauses = []
    try:
        pre.start()
        for v in range(1, versions + 1):
            origin.publish(*pack(_state(mib, v), v, 4 * 1024 * 1024))
            published["version"] = v
            time.sleep(wave)  # the engine generates its wave meanwhile
            started = time.monotonic()
            manifest, blob = pre.take(v)
            for name, tensor in unpack(manifest, blob).items():
                resident[name].copy_(tensor)
            engine["version"] = v
            pauses.append(time.monotonic() - started)
            pre.recycle(blob)
            assert float(resident["w"][0, 0]) == float(v)
    finally:
        pre.stop()
        origin.close()
    return pauses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=512, help="weights per version, MiB")
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--wave", type=float, default=2.0, help="seconds of generation between versions")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    print(f"== weight-swap pause per version: {args.mib} MiB, {args.versions} versions, {args.wave:.1f} s waves, "
          f"torch threads {threads}")
    results = {}
    for mode in ("at-boundary", "prefetched"):
        pauses = run(mode, args.mib, args.versions, args.wave)
        # the first version may race the first poll; the steady state is the rest
        results[mode] = statistics.median(pauses[1:] or pauses)
        print(f"  {mode:12} median pause {results[mode] * 1e3:8.1f} ms  (each: "
              + ", ".join(f"{p * 1e3:.0f}" for p in pauses) + " ms)")
    print(f"  prefetched / at-boundary pause: {results['prefetched'] / results['at-boundary']:.3f}")


if __name__ == "__main__":
    main()
