"""Step 2: install the RLJob CRD and start `hexrl operator` against the local cluster, as a child process.

The operator runs in its own session with its log in the demo's workdir; the demo stops it itself (at the
end, on a failure or on Ctrl-C), or leaves it running with `--keep` and its PID in `operator.pid`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from hexrl.commands.demo.settings import DemoSettings
from hexrl.commands.demo.state import DemoRun


def install_operator(run: DemoRun) -> None:
    """Step 2: install the CRD, wait until it is Established, start `hexrl operator`."""
    from hexrl.api.crd import crd_yaml

    run.cluster.kubectl("apply", "-f", "-", input=crd_yaml())
    run.cluster.wait_established("rljobs.hexrl.dev")
    run.con.print("  CRD rljobs.hexrl.dev installed (kubectl get rlj works now)")
    run.operator, run.log = start_operator(run.cluster, run.settings)
    run.con.print(f"  hexrl operator running (pid {run.operator.pid}, log {run.log})")


def start_operator(cluster: Any, settings: DemoSettings) -> tuple[subprocess.Popen[bytes], Path]:
    """Start `hexrl operator` on the cluster's kubeconfig, watching every namespace without leader election,
    on free ports; returns the process and its log file."""
    from hexrl.devcluster.procs import free_port

    settings.workdir.mkdir(parents=True, exist_ok=True)
    log = settings.workdir / "operator.log"
    cmd = [str(Path(sys.executable).parent / "hexrl"), "operator", "--kubeconfig", str(cluster.kubeconfig),
           "--all-namespaces", "--standalone", f"--metrics-port={free_port()}", f"--health-port={free_port()}"]
    if not Path(cmd[0]).exists():
        cmd[0:1] = [sys.executable, "-m", "hexrl.cli"]
    # Own session: a Ctrl-C of the demo is handled by the demo, which then stops the operator itself.
    # The operator keeps its key Secret in its own namespace; the demo cluster has no hexrl-system.
    env = {**os.environ, "HEXRL_OPERATOR_KEY_NAMESPACE": os.environ.get("HEXRL_OPERATOR_KEY_NAMESPACE", "default")}
    workers = cluster.images().get("workers") if cluster.real_node_names() else None
    if workers:  # real nodes run the locally built image, loaded into their runtimes: never pulled
        env |= {"HEXRL_OPERATOR_WORKER_IMAGE": workers, "HEXRL_OPERATOR_WORKER_IMAGE_PULL_POLICY": "Never"}
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True, env=env)
    (settings.workdir / "operator.pid").write_text(str(proc.pid))
    return proc, log


def stop_operator(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the operator and wait for it (20 s), then kill it; nothing if it has already exited."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
