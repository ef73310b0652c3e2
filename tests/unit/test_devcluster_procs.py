"""Process and port helpers of the local control plane."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from hexrl.devcluster import procs

pytestmark = pytest.mark.unit


def test_free_port_is_bindable_and_below_the_ephemeral_range():
    start = procs._ephemeral_start()
    seen = {procs.free_port() for _ in range(20)}
    for port in seen:
        assert procs._LOWEST_PORT <= port < start, (port, start)
        with socket.socket() as s:
            s.bind((procs.HOST, port))  # really free
    assert len(seen) > 1  # random probing, not one fixed port


def test_free_port_skips_a_port_that_is_taken(monkeypatch):
    with socket.socket() as taken:
        taken.bind((procs.HOST, 0))
        busy = taken.getsockname()[1]
        ports = iter([busy, busy, busy + 1 if busy + 1 < 65536 else busy - 1])
        monkeypatch.setattr(procs.random, "randrange", lambda low, high: next(ports))
        monkeypatch.setattr(procs, "_LOWEST_PORT", 1024)
        monkeypatch.setattr(procs, "_ephemeral_start", lambda: 65535)
        assert procs.free_port() != busy


def test_alive_follows_a_started_process_until_it_is_stopped(tmp_path):
    proc = procs.start([sys.executable, "-c", "import time; time.sleep(60)", "hexrl-marker"],
                       tmp_path / "log", cwd=tmp_path)
    try:
        assert procs.alive(proc.pid, "hexrl-marker")  # also while still inside exec() (empty command line)
        deadline = time.monotonic() + 30
        while not procs._cmdline(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not procs.alive(proc.pid, "some-other-binary")  # once exec() is done the marker decides
    finally:
        procs.stop(proc.pid, "hexrl-marker", grace_seconds=5)
    assert not procs.alive(proc.pid, "hexrl-marker")


def test_down_of_a_half_removed_cluster_folder_cleans_up_instead_of_failing(tmp_path):
    """A state file whose credentials are gone (a run killed while another removed its folder) is still
    torn down: the health check says "not healthy" instead of raising on the missing CA file."""
    import json

    from hexrl.devcluster.cluster import DevCluster

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    work = tmp_path / "half"
    (work / "logs").mkdir(parents=True)
    (work / "state.json").write_text(json.dumps({"name": "half", "ports": {"kube-apiserver": dead_port}}))
    cluster = DevCluster(name="half", workdir=work, progress=lambda _msg: None)
    state = cluster._read_state()
    assert state is not None and cluster._healthy("/readyz", state) is False
    cluster.down(quiet=True)
    assert not (work / "state.json").exists()
