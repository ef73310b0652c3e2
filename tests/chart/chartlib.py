"""Helpers shared by the chart checks (paths, running tools, the Prometheus process wrapper).

Kept out of conftest.py so test modules can import them by a unique module name.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "hexrl"
VENV_BIN = Path(sys.executable).parent


def tool_env(helm: Path) -> dict[str, str]:
    """Environment in which ct finds helm, yamllint and yamale, and helm keeps its state in a temp dir."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(helm.parent), str(VENV_BIN), env.get("PATH", "")])
    return env


def run(cmd: list[str | Path], *, env: dict[str, str] | None = None, timeout: float = 300, check: bool = True,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure the assertion shows its output."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=timeout,
                          input=input, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"`{' '.join(map(str, cmd))}` exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o.get("kind") == kind]


def ensure_prometheus() -> tuple[Path, Path]:
    """Paths of `prometheus` and `promtool`, installing Debian's package when they are missing."""
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    if prom and tool:
        return Path(prom), Path(tool)
    apt = shutil.which("apt-get")
    if not apt:
        pytest.fail("prometheus and promtool are missing and apt-get is not available: install Prometheus 2.x "
                    "so that `prometheus` and `promtool` are on PATH")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("installing Debian's prometheus package (prometheus, promtool) with apt-get …", file=sys.stderr, flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    for cmd in ([*sudo, apt, "update", "-qq"],
                [*sudo, apt, "install", "-y", "-qq", "--no-install-recommends", "prometheus"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
        if proc.returncode != 0:
            pytest.fail(f"`{' '.join(cmd)}` failed; install the prometheus package by hand:\n{proc.stderr[-2000:]}")
    # The package enables a system service; we never use it (our own process listens on loopback only).
    if shutil.which("systemctl"):
        subprocess.run([*sudo, "systemctl", "disable", "--now", "prometheus"], capture_output=True, check=False)
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    if not (prom and tool):
        pytest.fail("the prometheus package installed but `prometheus`/`promtool` are not on PATH")
    return Path(prom), Path(tool)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Prometheus:
    """A Prometheus server we started on 127.0.0.1."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=15) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        return body

    def query(self, expr: str) -> dict[str, Any]:
        """The full API answer of an instant query (status, data or errorType/error)."""
        return self.api("query", query=expr)

    def wait_for(self, expr: str, timeout: float = 90.0) -> list[dict[str, Any]]:
        """Poll an instant query until it returns a non-empty result; fail with the last answer."""
        deadline = time.monotonic() + timeout
        answer: dict[str, Any] = {}
        while time.monotonic() < deadline:
            answer = self.query(expr)
            if answer.get("status") == "success" and answer["data"]["result"]:
                return answer["data"]["result"]
            time.sleep(1.0)
        pytest.fail(f"Prometheus query `{expr}` returned no data within {timeout:.0f} s: {answer}\n"
                    f"targets: {self.api('targets')}")
