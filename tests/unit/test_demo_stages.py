"""`hexrl demo` runs its stages in order, numbers their headers, and cleans up when one fails.

The stages themselves need a running cluster (tests/chart/test_demo_e2e.py); here each is replaced by a
recorder in `hexrl.commands.demo.runner`, so what is checked is the runner's wiring: which stage runs after
which, what one hands the next, the step headers, and what is stopped on a failure.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from hexrl.cli import app
from hexrl.commands import demo
from hexrl.commands.demo import runner

PODS = [{"metadata": {"name": "p"}}]
NODES = {"n": {"hexrl.dev/spot": "true"}}


class Console:
    """Records the step headers (rules) and printed lines."""

    def __init__(self) -> None:
        self.rules: list[str] = []
        self.lines: list[str] = []

    def print(self, *args: Any) -> None:
        self.lines.extend(str(arg) for arg in args)

    def rule(self, title: str, align: str = "center") -> None:
        self.rules.append(title.removeprefix("[bold cyan]"))


class Cluster:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def down(self, quiet: bool = False) -> None:
        self.calls.append(f"down(quiet={quiet})")


def _wire(monkeypatch: pytest.MonkeyPatch, real_nodes: bool, fail_in: str | None = None) -> tuple[list[str], Console]:
    """Replace every stage the runner calls by a recorder; `fail_in` raises RuntimeError from that stage."""
    calls: list[str] = []
    con = Console()

    def stage(name: str, result: Any = None) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            if name == fail_in:
                raise RuntimeError(name)
            return result(*args) if callable(result) else result
        return record

    def install_operator(run: Any) -> None:
        calls.append("install_operator")
        run.operator = "the operator process"
        if fail_in == "install_operator":
            raise RuntimeError("install_operator")

    def reclaim(run: Any, nodes: Any, pods: Any) -> None:
        calls.append("reclaim")
        assert (nodes, pods) == (NODES, PODS), "reclaim gets what show_running returned"
        if fail_in == "reclaim":
            raise RuntimeError("reclaim")

    monkeypatch.setattr(runner, "console", lambda: con)
    monkeypatch.setattr(runner, "check_inputs", stage("check_inputs", ("job", "ns")))
    monkeypatch.setattr(runner, "has_real_nodes", lambda settings: real_nodes)
    monkeypatch.setattr(runner, "start_control_plane", stage("start_control_plane", lambda con, s: Cluster(calls)))
    monkeypatch.setattr(runner, "show_nodes", stage("show_nodes"))
    monkeypatch.setattr(runner, "install_operator", install_operator)
    monkeypatch.setattr(runner, "apply_job", stage("apply_job"))
    monkeypatch.setattr(runner, "show_running", stage("show_running", (PODS, NODES)))
    monkeypatch.setattr(runner, "reclaim", reclaim)
    monkeypatch.setattr(runner, "train_in_real_pods", stage("train_in_real_pods", SimpleNamespace(steps=3)))
    monkeypatch.setattr(runner, "print_summary", stage("print_summary"))
    monkeypatch.setattr(runner, "print_real_pods_summary", stage("print_real_pods_summary"))
    monkeypatch.setattr(runner, "finish", stage("finish"))
    monkeypatch.setattr(runner, "stop_operator", lambda proc: calls.append(f"stop_operator({proc})"))
    return calls, con


SETTINGS = demo.DemoSettings(job=Path("job.yaml"))


def test_the_six_steps_run_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    calls, con = _wire(monkeypatch, real_nodes=False)
    runner.run_demo(SETTINGS)
    assert calls == ["check_inputs", "start_control_plane", "show_nodes", "install_operator", "apply_job",
                     "show_running", "reclaim", "print_summary", "finish"]
    assert con.rules == ["1/6  Local control plane", "2/6  RLJob CRD and the operator", "3/6  kubectl apply -f job.yaml",
                         "4/6  Pods on their pools, and the job's status", "5/6  Spot reclaim", "6/6  Summary"]


def test_real_nodes_add_the_real_pods_step_before_the_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    calls, con = _wire(monkeypatch, real_nodes=True)
    runner.run_demo(SETTINGS)
    assert calls[calls.index("reclaim"):] == ["reclaim", "train_in_real_pods", "print_summary",
                                              "print_real_pods_summary", "finish"]
    assert con.rules[-3:] == ["5/7  Spot reclaim", "6/7  The tiny job training in real pods, and a real node reclaimed",
                              "7/7  Summary"]


@pytest.mark.parametrize("keep", [False, True])
def test_a_failing_step_stops_the_operator_and_the_cluster(monkeypatch: pytest.MonkeyPatch, keep: bool) -> None:
    calls, _ = _wire(monkeypatch, real_nodes=False, fail_in="reclaim")
    settings = demo.DemoSettings(keep=keep)
    with pytest.raises(RuntimeError, match="reclaim"):
        runner.run_demo(settings)
    cleanup = calls[calls.index("reclaim") + 1:]
    assert cleanup == ["stop_operator(the operator process)"] + ([] if keep else ["down(quiet=True)"])


def test_a_failure_before_the_operator_started_only_stops_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    calls, _ = _wire(monkeypatch, real_nodes=False, fail_in="show_nodes")
    with pytest.raises(RuntimeError):
        runner.run_demo(SETTINGS)
    assert calls[-2:] == ["show_nodes", "down(quiet=True)"]


def test_a_demo_error_exits_1_with_its_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(settings: demo.DemoSettings) -> None:
        raise demo.DemoError(f"the RLJob file {settings.job} does not exist")

    monkeypatch.setattr(demo, "run_demo", fail)
    result = CliRunner().invoke(app, ["demo", "--job", "no/such.yaml", "--reclaim", "1"])
    assert result.exit_code == 1
    assert "hexrl demo: the RLJob file no/such.yaml does not exist" in result.output


def test_the_package_docstring_is_the_help() -> None:
    result = CliRunner().invoke(app, ["demo", "--help"])
    assert result.exit_code == 0
    assert "Six steps (seven when the inventory has pools of real nodes)" in " ".join(result.output.split())
