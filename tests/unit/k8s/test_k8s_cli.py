"""`hexrl operator` refuses bad input with a sentence, never a traceback."""

from __future__ import annotations

import socket

import pytest
import yaml
from typer.testing import CliRunner

from hexrl.cli import app

pytestmark = pytest.mark.unit


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["operator", *args], env=env)


def test_missing_kubeconfig_file(tmp_path):
    r = run("--kubeconfig", str(tmp_path / "nope"))
    assert r.exit_code == 1 and "does not exist" in r.output and "Traceback" not in r.output


def test_namespace_and_all_namespaces_conflict():
    r = run("--namespace", "a", "--all-namespaces")
    assert r.exit_code == 1 and "not both" in r.output


def test_bad_environment_setting_is_named():
    r = run(env={"HEXRL_OPERATOR_DEBOUNCE_SECONDS": "soon"})
    assert r.exit_code == 1 and "HEXRL_OPERATOR_DEBOUNCE_SECONDS" in r.output


def test_unknown_planning_mode_is_named():
    r = run(env={"HEXRL_OPERATOR_PLANNING": "eventually"})
    assert r.exit_code == 1 and "HEXRL_OPERATOR_PLANNING" in r.output and "serial, concurrent" in r.output


def test_the_removed_legacy_planning_mode_is_refused_with_what_to_use_instead():
    r = run(env={"HEXRL_OPERATOR_PLANNING": "legacy"})
    assert r.exit_code == 1 and "legacy planning was removed" in r.output and "serial, concurrent" in r.output
    assert "Traceback" not in r.output


def test_unreachable_api_server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    r = run("--kubeconfig", str(path), "--metrics-port", "0", "--health-port", "0")
    assert r.exit_code == 1 and "cannot reach the API server" in r.output and "Traceback" not in r.output
