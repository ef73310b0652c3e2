"""Processes and ports of the local control plane: start detached, record, stop for certain.

Every component runs in its own session (so a Ctrl-C in the terminal that started it does not kill the
cluster and `hexrl cluster down` from another terminal can stop it). PIDs are written to the cluster's
state file before we wait for anything, so a failed start can always be cleaned up. A PID is only
signalled when /proc says it is still the binary we started (PIDs are reused).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

from hexrl.devcluster.errors import DevClusterError

HOST = "127.0.0.1"


# Ports we hand to components come from below the kernel's ephemeral range: a port the kernel picked for
# bind(0) is released when we close the probe socket and may be taken, before the component binds it, as
# the local port of any outgoing connection on the machine (we saw etcd lose its port that way under load).
_FALLBACK_EPHEMERAL_START = 32768
_LOWEST_PORT = 20000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _FALLBACK_EPHEMERAL_START


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the ephemeral range when it can.

    Random probing in [20000, start of the ephemeral range); falls back to the kernel's choice when that
    window is empty or full."""
    low, high = _LOWEST_PORT, _ephemeral_start()
    for _ in range(200 if high - low > 100 else 0):
        port = random.randrange(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def require_free(port: int, what: str) -> None:
    """Raise a clear error when `port` is taken (instead of a component dying with 'address in use')."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise DevClusterError(
                    f"port {port} on {HOST} (for {what}) is already in use",
                    f"stop what listens there (see `ss -ltnp 'sport = :{port}'`), choose another port, "
                    "or leave the port unset so a free one is picked automatically",
                ) from None
            raise


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def start(cmd: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `cmd` detached (own session), stdout+stderr to `log`; `env` is added to our environment."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        try:
            return subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                start_new_session=True, close_fds=True, env={**os.environ, **(env or {})},
            )  # fmt: skip
        except OSError as e:
            raise DevClusterError(f"cannot start {cmd[0]}: {e}", "run `hexrl cluster build` to rebuild the binaries") from None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int, marker: str = "") -> bool:
    """True when `pid` runs (not a zombie) and its command line contains `marker`."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which itself may contain spaces.
    state = stat.rsplit(")", 1)[1].split()[0]
    if state in ("Z", "X"):
        return False
    cmdline = _cmdline(pid)
    # An empty command line is a process inside exec(): the kernel has switched to the new image but not
    # yet laid out its arguments. It is alive (reading it as dead made start-up fail under load).
    return not cmdline or marker in cmdline


def stop(pid: int, marker: str, grace_seconds: float = 10.0) -> None:
    """SIGTERM the process group of `pid`, then SIGKILL after `grace_seconds`; reap if it is our child."""
    if not alive(pid, marker):
        _reap(pid)
        return
    for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not alive(pid, marker):
                return
            time.sleep(0.1)
    raise DevClusterError(f"process {pid} ({marker}) did not stop after SIGKILL", f"check `ps -fp {pid}`")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_ports_closed(ports: list[int], timeout: float = 15.0) -> list[int]:
    """Ports still open after `timeout` seconds (empty when all are free)."""
    deadline = time.monotonic() + timeout
    remaining = [p for p in ports if port_open(p)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.2)
        remaining = [p for p in remaining if port_open(p)]
    return remaining


def tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n    ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
