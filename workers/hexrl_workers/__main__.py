"""Pod entry points: `python -m hexrl_workers coordinator|rollout|trainer`.

Configuration comes from the environment and the mounted worker config (`hexrl.api.workerconfig`):
HEXRL_JOB, HEXRL_ROLE, HEXRL_CONFIG, HEXRL_TOKEN (the role's own token; trainer and rollout),
HEXRL_TOKEN_DIGESTS (what every role's services check callers against), HEXRL_COORDINATOR_URL, HEXRL_WEIGHTS_URL,
HEXRL_POD_IP, and for trainer pods the gang's layout (`hexrl.api.trainerlayout`) with MASTER_ADDR/MASTER_PORT:
`trainer` launches one `trainer-rank` process per GPU (`trainer.launch`; in-process when the gang is a
single process), each given RANK/LOCAL_RANK/WORLD_SIZE; ports move with HEXRL_PORT,
HEXRL_WEIGHTS_PORT, HEXRL_RELAY_PORT and HEXRL_TRAINER_METRICS_PORT. A configuration error is printed as
one sentence and exits with status 2 (Kubernetes shows it in the pod's last state: the operator renders
`terminationMessagePolicy: FallbackToLogsOnError`). Every role serves /healthz, /readyz and /metrics on its
status port (`hexrl.api.workerconfig`) and, in a pod, waits for an unreachable coordinator instead of
exiting (Kubernetes brings it back; the worker logs while it waits). A coordinator whose dataset cannot
be loaded keeps serving and reports why (see `coordinator.server`) instead of crash-looping.
SIGTERM stops each role gracefully: the coordinator closes its server, a rollout worker hands in its
partial responses, the trainer stops between steps.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hexrl.api.jobtokens import TokenError, token_digest
from hexrl.api.workerconfig import (
    COORDINATOR_PORT,
    DEFAULT_CONFIG_PATH,
    ENV_CONFIG,
    ENV_COORDINATOR_PORT,
    ENV_COORDINATOR_URL,
    ENV_GPU_TYPE,
    ENV_JOB,
    ENV_MASTER_ADDR,
    ENV_MASTER_PORT,
    ENV_POD_IP,
    ENV_RANK,
    ENV_RELAY_PORT,
    ENV_ROLE,
    ENV_TOKEN,
    ENV_TOKEN_DIGESTS,
    ENV_TRAINER_METRICS_PORT,
    ENV_WEIGHTS_PORT,
    ENV_WEIGHTS_URL,
    ENV_WORLD_SIZE,
    RELAY_PORT,
    TRAINER_METRICS_PORT,
    WEIGHTS_PORT,
    Role,
    WorkerConfig,
    WorkerConfigError,
    parse_worker_config,
)
from hexrl_workers.coordinator_client import CoordinatorUnavailable
from hexrl_workers.httpcommon import Credentials
from hexrl_workers.trainer.launch import RANK_ROLE

if TYPE_CHECKING:
    from hexrl.api.trainerlayout import TrainerLayout

log = logging.getLogger("hexrl_workers")
WAIT_FOREVER = math.inf
"""Coordinator retry budget in pods: wait as long as it takes (SIGTERM still stops the wait)."""
ENV_TORCH_THREADS = "HEXRL_TORCH_THREADS"
"""torch intra-op threads of each trainer process (unset: torch's default; the local runner sets 1)."""
ENV_TRAINER_STATS = "HEXRL_TRAINER_STATS"
"""File where trainer rank 0 writes its per-step statistics at the end (the local runner reads them)."""
_STOPPING = threading.Event()
"""Set by the SIGTERM/SIGINT handlers of every role (tells an error on the way out from a failure)."""


def load_config() -> WorkerConfig:
    path = os.environ.get(ENV_CONFIG, DEFAULT_CONFIG_PATH)
    p = Path(path)
    if not p.is_file():
        raise WorkerConfigError(f"worker config {path} not found; mount the job's ConfigMap there or set {ENV_CONFIG}")
    return parse_worker_config(p.read_text(), source=path)


def _coordinator(cfg: WorkerConfig, token: str | None, credentials: Credentials) -> int:
    from hexrl_workers.coordinator.server import build_coordinator

    server = build_coordinator(cfg.spec, credentials, cfg.effective_max_policy_lag(),
                               config_path=os.environ.get(ENV_CONFIG, DEFAULT_CONFIG_PATH), tolerate_data_error=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        port = _port(ENV_COORDINATOR_PORT, COORDINATOR_PORT)
        await server.start("0.0.0.0", port)
        log.info("coordinator of %s serving on :%d", cfg.job, port)
        await stop.wait()
        await server.stop()

    asyncio.run(main())
    return 0


def _on_stop_signals(stop: Callable[[], None]) -> None:
    """On SIGTERM or SIGINT: note that we are stopping (so the exit is clean), then call `stop`."""

    def handle(signum: int, frame: object) -> None:
        _STOPPING.set()
        stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)


def _port(env: str, default: int) -> int:
    """A port from the environment (0 = any free port), else the role's default."""
    raw = os.environ.get(env, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise WorkerConfigError(f"{env}={raw!r} is not a port number") from None


def _rollout(cfg: WorkerConfig, token: str | None, credentials: Credentials) -> int:
    from hexrl_workers.runtime import build_rollout_worker
    from hexrl_workers.statusserver import ThreadedStatusServer

    host = os.environ.get(ENV_POD_IP) or socket.gethostbyname(socket.gethostname())
    port = _port(ENV_RELAY_PORT, RELAY_PORT)
    worker, relay = build_rollout_worker(
        cfg.spec, os.environ.get(ENV_COORDINATOR_URL, cfg.coordinator_url),
        os.environ.get(ENV_WEIGHTS_URL, cfg.weights_url), token,
        os.environ.get("HOSTNAME", f"rollout-{os.getpid()}"),
        relay_host="0.0.0.0", relay_port=port, advertise_host=host, coordinator_retry_seconds=WAIT_FOREVER,
        credentials=credentials,
    )
    # Without a relay nothing else listens on the pod's status port: serve the probes and /metrics there.
    status = ThreadedStatusServer(worker.metrics, worker.readiness, port=port) if relay is None else None
    _on_stop_signals(worker.stop)
    try:
        worker.run()
    finally:
        for server in (relay, status):
            if server is not None:
                server.close()
    return 0


def _trainer(cfg: WorkerConfig, token: str | None, credentials: Credentials) -> int:
    """A trainer pod: train in this process when the gang is one process, else launch one per GPU."""
    from hexrl.api.trainerlayout import TrainerLayout
    from hexrl_workers.trainer.launch import Rendezvous, launch

    layout, node_rank = TrainerLayout.from_env(os.environ)
    layout.check(cfg.spec.model.shape)
    if layout.world_size == 1:
        return _trainer_rank(cfg, token, credentials, layout=layout)
    rendezvous = Rendezvous(os.environ.get(ENV_MASTER_ADDR, "127.0.0.1"),
                            int(os.environ.get(ENV_MASTER_PORT, "29500")), run_id=cfg.job)
    return launch(layout, node_rank, rendezvous)


def _trainer_rank(cfg: WorkerConfig, token: str | None, credentials: Credentials,
                  layout: TrainerLayout | None = None) -> int:
    """One trainer process (rank RANK of WORLD_SIZE, GPU LOCAL_RANK): train until done or SIGTERM."""
    from hexrl.api.trainerlayout import TrainerLayout
    from hexrl_workers.metrics import Metrics
    from hexrl_workers.statusserver import Readiness, ThreadedStatusServer
    from hexrl_workers.trainer.loop import Trainer, TrainerSettings

    if layout is None:
        layout, _ = TrainerLayout.from_env(os.environ)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    stop = threading.Event()
    _on_stop_signals(stop.set)
    # The pod's probes and metrics come from its first process, from the start: not ready until it trains.
    metrics, readiness = Metrics("trainer"), Readiness("starting")
    status = (ThreadedStatusServer(metrics, readiness, port=_port(ENV_TRAINER_METRICS_PORT, TRAINER_METRICS_PORT))
              if local_rank == 0 else None)
    threads = os.environ.get(ENV_TORCH_THREADS)
    try:
        trainer = Trainer(cfg.spec, stop=stop, metrics=metrics, readiness=readiness, settings=TrainerSettings(
            coordinator_url=os.environ.get(ENV_COORDINATOR_URL, cfg.coordinator_url), token=token,
            credentials=credentials,
            checkpoint_dir=cfg.effective_checkpoint_dir(), weights_port=_port(ENV_WEIGHTS_PORT, WEIGHTS_PORT),
            advertise_host=os.environ.get(ENV_POD_IP, "127.0.0.1"),
            rank=int(os.environ.get(ENV_RANK, "0")), world_size=int(os.environ.get(ENV_WORLD_SIZE, "1")),
            local_rank=local_rank, layout=layout, torch_threads=int(threads) if threads else None,
            coordinator_retry_seconds=WAIT_FOREVER, device=_device(), gpu_type=os.environ.get(ENV_GPU_TYPE) or None,
        ))
        try:
            stats = trainer.run(stop)
        finally:
            trainer.close()
        _write_stats(stats)
    finally:
        if status is not None:
            status.close()
    return 0


def _write_stats(stats: list[dict[str, float]]) -> None:
    """Rank 0's per-step statistics as JSON lines, where the local runner asked for them."""
    path = os.environ.get(ENV_TRAINER_STATS)
    if path and int(os.environ.get(ENV_RANK, "0")) == 0:
        import json

        Path(path).write_text("".join(json.dumps(s) + "\n" for s in stats))


def _device() -> str:
    """The device this process trains on: the pod's GPU when it has one (the same image runs on CPU nodes)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _stopped_cleanly(role: str, exc: Exception, stopping: bool) -> int:
    """One line instead of a traceback when the coordinator is unreachable; 0 if we were told to stop."""
    print(f"hexrl_workers {role}: {exc}" + (" (stopping as asked)" if stopping else ""), file=sys.stderr)
    return 0 if stopping else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=os.environ.get("HEXRL_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    role = argv[0] if argv else os.environ.get(ENV_ROLE, "")
    if role == RANK_ROLE:  # started by the trainer pod's launcher, not by hand
        return _run_role(role, _trainer_rank)
    roles = [r.value for r in Role]
    if role not in roles:
        print(f"usage: python -m hexrl_workers {{{'|'.join(roles)}}} (or set {ENV_ROLE}); got {role!r}",
              file=sys.stderr)
        return 2
    handler = {"coordinator": _coordinator, "rollout": _rollout, "trainer": _trainer}[role]
    return _run_role(role, handler)


TOKEN_ROLE = {"trainer": "trainer", RANK_ROLE: "trainer", "rollout": "rollout"}
"""Process role → the token role it calls the other services with (the coordinator calls no one)."""


def _credentials() -> Credentials:
    """What this role's services check callers' tokens against; a worker never serves open (an empty token
    used to turn the authentication off without a word)."""
    text = os.environ.get(ENV_TOKEN_DIGESTS, "").strip()
    if not text:
        state = "empty" if ENV_TOKEN_DIGESTS in os.environ else "not set"
        raise WorkerConfigError(
            f"{ENV_TOKEN_DIGESTS} is {state}: the job's services could not check who calls them; set it from the "
            "job's Secret, key `digests` (the operator does)"
        )
    try:
        return Credentials.parse(text)
    except TokenError as exc:
        raise WorkerConfigError(str(exc)) from None


def _token(role: str, credentials: Credentials) -> str | None:
    """The bearer token this role presents (None for the coordinator), checked against the digests: a pod
    given another role's token refuses to start instead of being refused on every call."""
    token_role = TOKEN_ROLE.get(role)
    if token_role is None:
        return None
    token = os.environ.get(ENV_TOKEN, "").strip()
    if not token:
        state = "empty" if ENV_TOKEN in os.environ else "not set"
        raise WorkerConfigError(
            f"{ENV_TOKEN} is {state}: a {token_role} needs the job's {token_role} token; set it from the job's "
            f"Secret, key `{token_role}` (the operator does)"
        )
    if credentials.digests.get(token_role) != token_digest(token):
        raise WorkerConfigError(
            f"{ENV_TOKEN} is not this job's {token_role} token (its digest is not the {token_role} entry of "
            f"{ENV_TOKEN_DIGESTS}); set it from the job's Secret, key `{token_role}`"
        )
    return token


Handler = Callable[[WorkerConfig, "str | None", Credentials], int]


def _run_role(role: str, handler: Handler) -> int:
    """Load the config and run `handler`; configuration errors become one sentence and exit 2."""
    try:
        cfg = load_config()
        credentials = _credentials()
        token = _token(role, credentials)
        if os.environ.get(ENV_JOB) and os.environ[ENV_JOB] != cfg.job:
            raise WorkerConfigError(f"{ENV_JOB}={os.environ[ENV_JOB]} but the config is for job {cfg.job}")
        return handler(cfg, token, credentials)
    except CoordinatorUnavailable as exc:
        return _stopped_cleanly(role, exc, _STOPPING.is_set())
    except (WorkerConfigError, ValueError, FileNotFoundError) as exc:
        print(f"hexrl_workers {role}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
