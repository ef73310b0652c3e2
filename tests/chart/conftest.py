"""Fixtures for the chart checks: pinned helm/ct, `helm template` rendering, and a real Prometheus.

Everything here runs real tools: helm and ct come from `hexrl.devcluster.tools` (built once from the Go
module proxy and cached), Prometheus and promtool from Debian's `prometheus` package (installed with
apt-get by `ensure_prometheus` when missing — we never start the Debian service, only our own process on
127.0.0.1 with a temporary config and data folder, stopped after the test).
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import CHART, Prometheus, ensure_prometheus, free_port, run, tool_env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder carries the `chart` marker."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.chart)


def _tool(name: str) -> Path:
    from hexrl.devcluster.tools import ToolError, ensure_tool

    try:
        return ensure_tool(name)
    except ToolError as exc:
        pytest.fail(f"{name} is needed for the chart checks and could not be built: {exc}")


@pytest.fixture(scope="session")
def helm() -> Path:
    return _tool("helm")


@pytest.fixture(scope="session")
def ct() -> Path:
    return _tool("ct")


@pytest.fixture(scope="session")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """XDG folders for helm, so tests never read or write the user's helm config."""
    base = tmp_path_factory.mktemp("helm-home")
    return {
        "HELM_CACHE_HOME": str(base / "cache"),
        "HELM_CONFIG_HOME": str(base / "config"),
        "HELM_DATA_HOME": str(base / "data"),
    }


@pytest.fixture(scope="session")
def render(helm: Path, helm_home: dict[str, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Callable[..., list[dict[str, Any]]]:
    """`render(values_dict, release="hx", namespace="hexrl-system")` -> the parsed objects of `helm template`."""
    folder = tmp_path_factory.mktemp("values")
    counter = iter(range(10_000))

    def _render(values: dict[str, Any] | None = None, release: str = "hx", namespace: str = "hexrl-system",
                extra: list[str] | None = None, check: bool = True) -> list[dict[str, Any]]:
        args: list[str | Path] = [helm, "template", release, CHART, "--namespace", namespace, "--include-crds"]
        if values:
            f = folder / f"values-{next(counter)}.yaml"
            f.write_text(yaml.safe_dump(values))
            args += ["--values", f]
        args += extra or []
        proc = run(args, env={**tool_env(helm), **helm_home}, check=check)
        if not check:
            return [{"_returncode": proc.returncode, "_stderr": proc.stderr}]
        return [d for d in yaml.safe_load_all(proc.stdout) if d]

    return _render


@pytest.fixture(scope="session")
def promtool() -> Path:
    return ensure_prometheus()[1]


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """`start_prometheus(scrape_configs, rule_files=[...])` -> a running Prometheus; stopped at teardown."""
    prom_bin, _ = ensure_prometheus()
    started: list[Prometheus] = []

    def _start(scrape_configs: list[dict[str, Any]], rule_files: list[Path] | None = None,
               interval: str = "1s") -> Prometheus:
        port = free_port()
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
            "scrape_configs": scrape_configs,
            "rule_files": [str(p) for p in rule_files or []],
        }
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config))
        log = tmp_path / "prometheus.log"
        proc = subprocess.Popen(
            [prom_bin, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h",
             "--web.enable-lifecycle"],
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )
        p = Prometheus(url=f"http://127.0.0.1:{port}", proc=proc, log=log)
        started.append(p)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{p.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return p
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        pytest.fail(f"prometheus did not become ready in 60 s:\n{log.read_text()[-3000:]}")

    yield _start
    for p in started:
        p.proc.terminate()
        try:
            p.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait(timeout=10)
