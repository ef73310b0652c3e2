"""Benchmarks of the tiny RLJob in real pods on real nodes (printed side by side, never asserted):

1. `kubectl apply` → every pod Ready → first trained step, in pods;
2. trained samples/s in pods vs `hexrl run` (the same job, the same machine, measured in this run);
3. a pull of the same weight version through the `<job>-weights` Service (ClusterIP, kube-proxy's rules)
   vs from a server on loopback holding the same bytes;
4. spot reclaim of a real node: time to replacement rollout pods Ready; partial responses handed in,
   continued from their last token, and lost (prompts the coordinator no longer accounts for).

Run: `.venv/bin/python bench/bench_pods.py [--cluster NAME] [--keep]` as root. It starts a cluster with the
real nodes of manifests/clusters/real-cpu.yaml (unless one called NAME runs), runs the host operator, and
stops what it started. The tiny model is ~0.4 MB, so item 3 measures per-request latency more than
bandwidth; bench_workers.py measures a 1 GiB pull.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
NS = "bench-pods"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_operator(cluster: Any, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HEXRL_OPERATOR_WORKER_IMAGE": cluster.images()["workers"],
           "HEXRL_OPERATOR_WORKER_IMAGE_PULL_POLICY": "Never"}
    cmd = [str(Path(sys.executable).parent / "hexrl"), "operator", "--kubeconfig", str(cluster.kubeconfig),
           "--metrics-port", str(free_port()), "--health-port", str(free_port())]
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def pods_run(cluster: Any, steps_window: int) -> tuple[Any, dict[str, Any]]:
    """Items 1 and 4 through the demo's driver (apply, Ready, train, reclaim one spot node)."""
    from rich.console import Console

    from hexrl.commands.demo_pods import PodsDemo, PodsDemoSettings

    settings = PodsDemoSettings(namespace=NS, reclaim_at_step=steps_window, target_reward=0.9, timeout_seconds=600)
    demo = PodsDemo(Console(highlight=False), cluster, settings, lambda: None)
    out = demo.run(["L4"])
    state = coordinator(cluster, demo, "/v1/state")
    return out, {"demo": demo, "state": state}


def coordinator(cluster: Any, demo: Any, path: str) -> dict[str, Any]:
    import urllib.request

    ip = demo.pods("coordinator")[0]["status"]["podIP"]
    secret = json.loads(cluster.kubectl("get", "secrets", "-n", NS, "-l", f"hexrl.dev/job={demo.name}", "-o",
                                        "json").stdout)["items"][0]  # fmt: skip
    role = "operator" if path.startswith("/v1/progress") else "trainer"  # what `ACCESS` allows there
    token = base64.b64decode(secret["data"][role]).decode()
    req = urllib.request.Request(f"http://{ip}:8000{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return dict(json.loads(resp.read()))


def unaccounted(state: dict[str, Any]) -> set[int]:
    alive = {g["prompt"]["promptId"] for g in state["groups"]} | {p["promptId"] for p in state["requeued"]}
    return set(range(state["cursor"])) - set(state["trainedPromptIds"]) - alive


def weight_pull(cluster: Any, demo: Any, repeats: int = 20) -> tuple[float, float, int]:
    """Seconds per verified pull of the latest version via the Service vs via loopback (same bytes)."""
    from hexrl_workers.httpcommon import Credentials
    from hexrl_workers.weights.client import WeightClient, WeightClientSettings
    from hexrl_workers.weights.server import ThreadedWeightServer, WeightServer, WeightServerSettings

    svc = json.loads(cluster.kubectl("get", "svc", "-n", NS, f"{demo.name}-weights", "-o", "json").stdout)
    url = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
    secret = json.loads(cluster.kubectl("get", "secrets", "-n", NS, "-l", f"hexrl.dev/job={demo.name}", "-o",
                                        "json").stdout)["items"][0]  # fmt: skip
    token = base64.b64decode(secret["data"]["rollout"]).decode()  # weight pulls are a rollout worker's calls
    credentials = Credentials.parse(base64.b64decode(secret["data"]["digests"]).decode())

    def timed(origin: str) -> tuple[float, Any, bytearray]:
        best = float("inf")
        manifest, blob = None, bytearray()
        for _ in range(repeats):
            client = WeightClient(WeightClientSettings(origin_url=origin, token=token, parallel=2))
            t0 = time.perf_counter()
            manifest, blob = client.pull()
            best = min(best, time.perf_counter() - t0)
        return best, manifest, blob

    via_service, manifest, blob = timed(url)
    local = ThreadedWeightServer(WeightServer(WeightServerSettings(credentials=credentials, origin=True)), host="127.0.0.1")
    local.publish(manifest, blob)
    try:
        via_loopback, _, _ = timed(local.url)
    finally:
        local.close()
    return via_service, via_loopback, len(blob)


def local_run(steps: int, workers: int) -> dict[str, Any]:
    """`hexrl run` of the same job on this machine (Ray local), for the samples/s baseline."""
    from hexrl.api.models import RLJob
    from hexrl_workers.local import LocalOptions, run_local

    job = RLJob.model_validate(yaml.safe_load((REPO / "manifests/examples/rljob-tiny.yaml").read_text()))
    return dict(run_local(job, LocalOptions(steps=steps, workers=workers, show_progress=False)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cluster", default="hexrl-bench-pods")
    ap.add_argument("--keep", action="store_true", help="leave the cluster running")
    ap.add_argument("--local-steps", type=int, default=150)
    args = ap.parse_args()

    from hexrl.devcluster import DevCluster

    cluster = DevCluster(name=args.cluster)
    started_here = not cluster.is_running()
    if started_here:
        t0 = time.monotonic()
        cluster.up(inventory=REPO / "manifests" / "clusters" / "real-cpu.yaml")
        print(f"cluster with 3 real nodes up in {time.monotonic() - t0:.0f}s")
    from hexrl.api.crd import crd_yaml

    cluster.kubectl("apply", "-f", "-", input=crd_yaml())
    log = Path(f"/tmp/{args.cluster}-operator.log")
    op = start_operator(cluster, log)
    try:
        out, extra = pods_run(cluster, steps_window=30)
        demo = extra["demo"]
        lost = unaccounted(extra["state"])
        time.sleep(10)  # a batch held by the trainer when the state was read is acknowledged by now
        lost -= set(coordinator(cluster, demo, "/v1/state")["trainedPromptIds"])
        migrated = coordinator(cluster, demo, "/v1/progress").get("partialsMigrated", 0)
        via_service, via_loopback, nbytes = weight_pull(cluster, demo)
        pods = [p for p in demo.pods() if p["metadata"]["labels"].get("hexrl.dev/role") == "rollout"]
        workers = max(1, len(pods))
        cluster.kubectl("delete", "rlj", "-n", NS, demo.name, "--wait=true", "--timeout=120s", check=False)
        cluster.kubectl("delete", "namespace", NS, "--wait=true", "--timeout=120s", check=False)
        local = local_run(args.local_steps, workers)
    finally:
        os.killpg(op.pid, signal.SIGTERM)
        op.wait(timeout=30)
        if started_here and not args.keep:
            cluster.down(quiet=True)

    local_sps = local["trainedSamples"] / local["wallSeconds"]
    print(f"\n== results (one run, this machine; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"1. apply → first trained step in pods: {out.first_step_seconds:.0f} s")
    print(f"2. trained samples/s: pods {out.samples_per_second:.0f} vs hexrl run {local_sps:.0f} "
          f"({workers} rollout workers each) → pods/local {out.samples_per_second / local_sps:.2f}x")
    print(f"3. weight pull of the same version ({nbytes / 1e6:.2f} MB, best of 20): Service {via_service * 1000:.1f} ms vs "
          f"loopback {via_loopback * 1000:.1f} ms → {via_service / via_loopback:.2f}x the loopback time")
    print(f"4. reclaim of {out.reclaimed}: replacement rollout Ready in {out.replacement_seconds:.0f} s; partial "
          f"responses handed in {out.partials:.0f}, continued from their last token {migrated}, lost {len(lost)}")
    print(f"   reward {out.reward_start} → {out.reward_end} in {out.steps} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
