"""`hexrl.devcluster.tools`: how helm and ct are found, and the sentences a user gets when they cannot be."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hexrl.devcluster import tools

pytestmark = pytest.mark.unit


def fake_binary(path: Path, output: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def settings(tmp_path: Path, go: str = "go") -> tools.ToolSettings:
    return tools.ToolSettings(cache_dir=tmp_path / "cache" / "bin", bin_dir=None, go=go)


def test_override_variable_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helm = fake_binary(tmp_path / "opt" / "helm", "v0.0.0")
    monkeypatch.setenv("HEXRL_HELM", str(helm))
    assert tools.find_tool(tools.HELM, settings(tmp_path)) == helm


def test_bad_override_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEXRL_HELM", str(tmp_path / "nope"))
    with pytest.raises(tools.ToolError, match=r"HEXRL_HELM=.*is not an executable file; unset it"):
        tools.find_tool(tools.HELM, settings(tmp_path))


def test_cache_then_path_with_the_pinned_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEXRL_HELM", raising=False)
    s = settings(tmp_path)
    on_path = tmp_path / "path"
    # A helm of another version on PATH is not used ...
    fake_binary(on_path / "helm", "v3.0.0")
    monkeypatch.setenv("PATH", f"{on_path}{os.pathsep}{os.environ['PATH']}")
    assert tools.find_tool(tools.HELM, s) is None
    # ... one reporting the pinned version is,
    fake_binary(on_path / "helm", tools.HELM.version)
    assert tools.find_tool(tools.HELM, s) == on_path / "helm"
    # and the cache comes before PATH.
    cached = fake_binary(tools.cached_path(tools.HELM, s), "cached")
    assert tools.find_tool(tools.HELM, s) == cached


def test_ct_in_cache_needs_its_lint_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEXRL_CT", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    s = settings(tmp_path)
    ct = fake_binary(tools.cached_path(tools.CT, s), "ct")
    assert tools.find_tool(tools.CT, s) is None  # a half-installed ct (no etc/) is rebuilt
    for rel in tools.CT.support_files:
        (ct.parent / rel).parent.mkdir(parents=True, exist_ok=True)
        (ct.parent / rel).write_text("x")
    assert tools.find_tool(tools.CT, s) == ct
    assert tools.support_file(ct, "etc/lintconf.yaml") == ct.parent / "etc" / "lintconf.yaml"


def test_missing_go_is_a_sentence_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEXRL_HELM", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(tools.ToolError, match=r"needs a Go toolchain .* HEXRL_GO"):
        tools.ensure_tool("helm", settings(tmp_path, go="no-such-go"), emit=lambda _: None)


def test_unknown_tool_name(tmp_path: Path) -> None:
    with pytest.raises(tools.ToolError, match="unknown tool 'kustomize'; known: helm, ct"):
        tools.ensure_tool("kustomize", settings(tmp_path))


def test_script_entry_point_reports_errors_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "HEXRL_CACHE_DIR": str(tmp_path), "HEXRL_GO": "no-such-go", "PATH": "/nonexistent",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("HEXRL_HELM", None)
    proc = subprocess.run([sys.executable, "-m", "hexrl.devcluster.tools", "helm"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: building helm, ct needs a Go toolchain")
    assert "Traceback" not in proc.stderr
