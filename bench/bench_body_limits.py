"""Coordinator request bodies: resident memory and event-loop stall for a large trajectory submission.

Starts `python -m hexrl_workers coordinator` (the pod's entry point) for a job with `--group-size` and
`--max-new-tokens`, then POSTs to /v1/trajectories, one case at a time:

- `old143`: the case the hardening issue measured — one trajectory of ~143 MiB of JSON (7 M tokens);
- `largest`: the largest body this job's limit admits (`hexrl_workers.limits.spec_body_limits`): as many
  maxNewTokens-long trajectories as one push may carry (items per request × group size), filled up to the
  limit — none is expected by the coordinator, so all are dropped after the parse, which is what is measured;
- `chunked`: the 143 MiB body again, sent without a Content-Length (chunked), so the limit has to hold
  while reading.

For each: the answer's status, the time to it, the coordinator's peak resident memory (VmHWM, from
/proc; the process is restarted per case so each peak is its own) over its idle baseline, and the longest
time a concurrent GET /healthz waited (the event-loop stall). Printed, never asserted.

Run: `.venv/bin/python bench/bench_body_limits.py [--cases old143,largest,chunked]`.

Measured on 2 shared cores (groupSize 16, maxNewTokens 8192 unless said). Before the limits (one 1 GiB
limit for every route): the 143 MiB trajectory was read and parsed, +1,124 MiB resident (7.9x the
body), /healthz waited 2.2-5.8 s (7.6 s chunked). After: 413 in 0.1 s before reading, +1 MiB, /healthz
waited 6 ms (chunked: 413 after ~7 MiB read, +7 MiB, 8 ms); the largest allowed body (5.8 MiB, one group
of the longest samples) +47 MiB (8.2x), 31 ms; for groupSize 64 and maxNewTokens 32768 the limit is
105 MB and the largest allowed body (81.5 MiB) costs +634 MiB (7.8x) and a 0.5-1.4 s wait.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests
import yaml

from hexrl.api.jobtokens import derive_tokens, encode_digests
from hexrl.api.models import RLJob
from hexrl.api.workerconfig import WorkerConfig, render_worker_config

REPO = Path(__file__).resolve().parents[1]
TOKENS = derive_tokens(b"bench-key", "bench")


def _spec(group_size: int, max_new_tokens: int):  # type: ignore[no-untyped-def]
    raw = yaml.safe_load((REPO / "manifests" / "examples" / "rljob-tiny.yaml").read_text())
    raw["spec"]["algorithm"]["groupSize"] = group_size
    raw["spec"]["generation"].update(maxNewTokens=max_new_tokens, meanNewTokens=max_new_tokens // 2)
    raw["spec"]["model"]["shape"]["vocab"] = 151_936
    return RLJob.model_validate(raw).spec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _trajectory(n_tokens: int, sample: int, group_size: int, prompt: int = 64, wide: bool = False) -> dict:
    """A sample of `n_tokens`; `wide`: each number as long as the limit's accounting allows for (6-digit
    ids, log-probs in exponent form, 7-digit versions), so the body is the largest of its kind."""
    logprob = -1.2345678901234567e-05 if wide else -0.123456789012345
    version = 1_234_567 if wide else 0
    return {"itemId": 10_000 + sample, "groupId": 10_000 + sample, "groupSize": group_size,
            "sampleIndex": sample % group_size, "promptId": 0, "promptTokens": [100_000 + i for i in range(prompt)],
            "tokens": [100_000 + (i % 50_000) for i in range(n_tokens)],
            "logprobs": [logprob - (i % 7) * 1e-9 for i in range(n_tokens)],
            "versions": [version] * n_tokens, "reward": 1.0}


def _body(trajectories: list[dict]) -> bytes:
    return json.dumps({"trajectories": trajectories}, separators=(",", ":")).encode()


def old143_body(group_size: int) -> bytes:
    """One trajectory of ~143 MiB of compact JSON."""
    one = len(_body([_trajectory(10_000, 0, group_size)])) / 10_000
    return _body([_trajectory(int(143 * 2**20 / one), 0, group_size)])


def largest_body(limit: int, per_push: int, max_new_tokens: int, group_size: int, prompt: int) -> bytes:
    """`per_push` trajectories of the longest prompt and response the limit is sized for, wide numbers."""
    trajs = [_trajectory(max_new_tokens, k, group_size, prompt, wide=True) for k in range(per_push)]
    body = _body(trajs)
    if len(body) > limit:
        raise SystemExit(f"{per_push} full trajectories ({len(body):,} bytes) exceed the limit {limit:,}")
    return body


class Coordinator:
    """The coordinator pod's process on a free port, with the bench job's config."""

    def __init__(self, spec, tmp: Path) -> None:  # type: ignore[no-untyped-def]
        self.port = _free_port()
        cfg = tmp / "config.yaml"
        cfg.write_text(render_worker_config(WorkerConfig(job="bench", spec=spec, coordinator_url="x", weights_url="y")))
        env = {**os.environ, "HEXRL_CONFIG": str(cfg), "HEXRL_TOKEN_DIGESTS": encode_digests(TOKENS),
               "HEXRL_PORT": str(self.port), "HEXRL_LOG_LEVEL": "WARNING"}
        self.proc = subprocess.Popen([sys.executable, "-m", "hexrl_workers", "coordinator"], env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(600):
            try:
                requests.get(self.url + "/healthz", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        time.sleep(0.5)
        self.baseline_kib = _status_kib(self.proc.pid, "VmRSS")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _watch_loop(url: str, stop: threading.Event, worst: list[float]) -> None:
    """GET /healthz back to back; the longest answer is how long the event loop was blocked."""
    sess = requests.Session()
    while not stop.is_set():
        t0 = time.perf_counter()
        with contextlib.suppress(requests.RequestException):
            sess.get(url + "/healthz", timeout=120)
        worst[0] = max(worst[0], time.perf_counter() - t0)
        time.sleep(0.01)


def run_case(name: str, spec, body: bytes, chunked: bool = False) -> None:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        coord = Coordinator(spec, Path(tmp))
        stop, worst = threading.Event(), [0.0]
        watcher = threading.Thread(target=_watch_loop, args=(coord.url, stop, worst), daemon=True)
        watcher.start()
        headers = {"Authorization": f"Bearer {TOKENS['rollout']}", "Content-Type": "application/json"}
        data: bytes | Iterator[bytes] = body
        if chunked:
            data = (body[i:i + (1 << 20)] for i in range(0, len(body), 1 << 20))
        t0 = time.perf_counter()
        try:
            r = requests.post(coord.url + "/v1/trajectories", data=data, headers=headers, timeout=600)
            status, text = r.status_code, r.text[:160]
        except requests.RequestException as exc:  # a server that answers 413 early may close mid-upload
            status, text = 0, f"{type(exc).__name__}: {str(exc)[:120]}"
        elapsed = time.perf_counter() - t0
        time.sleep(0.3)
        stop.set()
        watcher.join(130)
        peak = _status_kib(coord.proc.pid, "VmHWM")
        coord.close()
    grown = (peak - coord.baseline_kib) / 1024
    print(f"  {name:<9} body {len(body) / 2**20:8.1f} MiB{' chunked' if chunked else ''}: HTTP {status} in "
          f"{elapsed:6.2f} s; peak RSS {peak / 1024:7.0f} MiB (+{grown:7.0f} MiB over idle, "
          f"{grown * 2**20 / max(1, len(body)):5.1f}x the body); longest /healthz wait {worst[0] * 1000:8.0f} ms")
    print(f"            answer: {text}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="old143,largest,chunked")
    ap.add_argument("--group-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=8192)
    args = ap.parse_args()
    spec = _spec(args.group_size, args.max_new_tokens)
    cases = args.cases.split(",")
    print(f"== coordinator request bodies (groupSize {args.group_size}, maxNewTokens {args.max_new_tokens})")
    try:
        from hexrl_workers.limits import spec_body_limits

        limits = spec_body_limits(spec)
        print(f"  limits: /v1/trajectories {limits.trajectories:,} bytes ({limits.per_push} samples a push), "
              f"other routes {limits.default:,} bytes")
    except ImportError:
        limits = None
        print("  limits: none per route (the application's 1 GiB)")
    if "old143" in cases:
        run_case("old143", spec, old143_body(args.group_size))
    if "largest" in cases and limits is not None:
        from hexrl_workers.limits import max_prompt_tokens

        run_case("largest", spec, largest_body(limits.trajectories, limits.per_push, args.max_new_tokens,
                                               args.group_size, max_prompt_tokens(spec.generation.prompt_tokens)))
    if "chunked" in cases:
        run_case("chunked", spec, old143_body(args.group_size), chunked=True)


if __name__ == "__main__":
    main()
