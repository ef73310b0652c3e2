"""Start a trainer pod's processes: one per GPU, through torch's elastic launcher.

A trainer pod (and `hexrl run --trainer-procs N`, which takes the same path) runs
`python -m hexrl_workers trainer`. With a single process in the whole gang that process trains itself.
Otherwise it becomes the pod's launch agent (`torch.distributed.launcher.api.elastic_launch`, what
`torchrun` runs): static rendezvous at MASTER_ADDR:MASTER_PORT with this pod's HEXRL_NODE_RANK as the
agent's rank, `LOCAL_WORLD_SIZE` workers `python -m hexrl_workers trainer-rank`, each given RANK,
LOCAL_RANK and WORLD_SIZE (ranks contiguous per pod, pods in node-rank order, so pods with different
process counts still get contiguous ranks). No restarts: a failed rank fails the pod, and the operator
restarts the whole gang from its checkpoint. SIGTERM reaches the agent, which passes it on to the workers
(they stop between steps) and waits for them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hexrl.api.models import RLJobSpec
from hexrl.api.trainerlayout import TrainerLayout

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from hexrl_workers.httpcommon import Credentials

log = logging.getLogger(__name__)
RANK_ROLE = "trainer-rank"
"""The `python -m hexrl_workers` role of one launched trainer process."""
RENDEZVOUS_TIMEOUT_SECONDS = 900
"""How long the agents wait for every pod of the gang (pods of a gang may start minutes apart while
images are pulled)."""
SHUTDOWN_GRACE_SECONDS = 45
"""After SIGTERM, how long the agent lets the workers finish their step before killing them (the pods'
termination grace is 60 s)."""


@dataclass(frozen=True)
class Rendezvous:
    """Where the gang's agents meet."""

    master_addr: str
    master_port: int
    run_id: str


def launch(layout: TrainerLayout, node_rank: int, rendezvous: Rendezvous) -> int:
    """Run this pod's trainer processes to completion; 0 when all exited 0 (or were told to stop)."""
    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=layout.nodes, max_nodes=layout.nodes, nproc_per_node=layout.procs_per_node[node_rank],
        run_id=rendezvous.run_id, rdzv_backend="static",
        rdzv_endpoint=f"{rendezvous.master_addr}:{rendezvous.master_port}",
        rdzv_configs={"rank": node_rank, "timeout": RENDEZVOUS_TIMEOUT_SECONDS},
        max_restarts=0, monitor_interval=0.5, logs_specs=DefaultLogsSpecs(), shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
    )
    log.info("launching %d trainer process(es) of %s (pod %d)", config.nproc_per_node, layout.describe(), node_rank)
    try:
        elastic_launch(config, sys.executable)("-m", "hexrl_workers", RANK_ROLE)
    except ChildFailedError as exc:
        return failed_exit(exc)
    except Exception as exc:  # the agent's SignalException: we were told to stop
        if type(exc).__name__ == "SignalException":
            log.info("trainer stopped by %s", exc)
            return 0
        raise
    return 0


def failed_exit(exc: ChildFailedError) -> int:
    """Say which trainer ranks failed and how on stderr; the pod's exit code: 2 when every failure was bad
    input (exit 2), else 1."""
    failures = "; ".join(f"rank {rank}: exit {f.exitcode}" for rank, f in exc.failures.items())
    print(f"hexrl_workers trainer: a trainer process failed ({failures}); see its log above", file=sys.stderr)
    codes = {f.exitcode for f in exc.failures.values()}
    return 2 if codes == {2} else 1


class TrainerProcess:
    """`python -m hexrl_workers trainer` as a child process (the local runner's multi-process trainer)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "hexrl_workers", "trainer"], env={**os.environ, **env},
                                     start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class LocalGang:
    """The local runner's trainer of `procs` processes on this machine, started exactly as a trainer pod:
    a worker config file, the pod environment of a one-pod gang (FSDP over `procs` ranks), and
    `python -m hexrl_workers trainer`. Same interface as the in-process trainer the runner uses
    otherwise: `weights_url`, `run(stop)` → per-step statistics, `close()`."""

    def __init__(self, spec: RLJobSpec, procs: int, coordinator_url: str, token: str, checkpoint_dir: str,
                 advertise_host: str, workdir: str, total_steps: int, credentials: Credentials) -> None:
        from hexrl.api.workerconfig import WorkerConfig, render_worker_config

        self.workdir = Path(workdir)
        weights_port, master_port = _free_port(advertise_host), _free_port("127.0.0.1")
        self.weights_url = f"http://{advertise_host}:{weights_port}"
        spec = spec.model_copy(deep=True)
        spec.algorithm.total_steps = total_steps
        config = self.workdir / "trainer-config.yaml"
        config.write_text(render_worker_config(WorkerConfig(
            job="local", spec=spec, coordinator_url=coordinator_url, weights_url=self.weights_url,
            checkpoint_dir=checkpoint_dir,
        )))
        self.stats_file = self.workdir / "trainer-stats.jsonl"
        layout = TrainerLayout(procs_per_node=(procs,), data_parallel=procs, fsdp=True)
        env = {name: value for name, value in layout.pod_env(0)}
        env.update({
            "HEXRL_CONFIG": str(config), "HEXRL_TOKEN": token, "HEXRL_TOKEN_DIGESTS": credentials.encode(),
            "HEXRL_JOB": "local", "HEXRL_ROLE": "trainer",
            "HEXRL_COORDINATOR_URL": coordinator_url, "HEXRL_WEIGHTS_PORT": str(weights_port),
            "HEXRL_POD_IP": advertise_host, "HEXRL_TRAINER_METRICS_PORT": "0", "HEXRL_TORCH_THREADS": "1",
            "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(master_port),
            "HEXRL_TRAINER_STATS": str(self.stats_file),
        })
        self.process = TrainerProcess(env)

    def run(self, stop: threading.Event) -> list[dict[str, float]]:
        """Wait for the gang to finish (or `stop`, passed on as SIGTERM); its per-step statistics."""
        while self.process.proc.poll() is None:
            if stop.wait(0.5):
                self.process.stop()
                break
        code = self.process.wait(SHUTDOWN_GRACE_SECONDS + 30)
        if code != 0:
            raise RuntimeError(f"the trainer gang exited with status {code}; see its log")
        if not self.stats_file.is_file():
            return []
        return [json.loads(line) for line in self.stats_file.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        self.process.kill()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host if host != "0.0.0.0" else "127.0.0.1", 0))
        return int(s.getsockname()[1])
