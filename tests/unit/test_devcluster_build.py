"""Finding and building the pinned binaries: lookup order, version keys, recipes and clear errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hexrl.devcluster import Builder, BuildSettings, DevClusterError, Versions
from hexrl.devcluster.build import BY_NAME

ROOT = Path(__file__).resolve().parents[2]


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def _builder(tmp_path: Path, **kw: object) -> Builder:
    settings = BuildSettings(cache_dir=tmp_path / "cache", bin_dir=None, **kw)  # type: ignore[arg-type]
    return Builder(settings, progress=lambda line: None)


@pytest.fixture
def empty_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """PATH holding only a private folder, so no real go/kubectl is found."""
    d = tmp_path / "pathbin"
    d.mkdir()
    monkeypatch.setenv("PATH", str(d))
    return d


def test_staging_tag_matches_kubernetes_minor() -> None:
    assert Versions().staging == "v0.34.4"
    assert Versions(kubernetes="v1.35.2").staging == "v0.35.2"


def test_cache_folder_is_keyed_by_component_and_version(tmp_path: Path) -> None:
    a = _builder(tmp_path).cache_dir_of(BY_NAME["kube-apiserver"])
    b = _builder(tmp_path, versions=Versions(kubernetes="v1.35.0")).cache_dir_of(BY_NAME["kube-apiserver"])
    assert a.name == "kubernetes-v1.34.4" and b.name == "kubernetes-v1.35.0"
    assert _builder(tmp_path).cache_dir_of(BY_NAME["etcd"]).name.startswith("etcd-v3.5.")


def test_bin_dir_wins_over_cache(tmp_path: Path, empty_path: Path) -> None:
    pre = tmp_path / "prebuilt"
    pre.mkdir()
    _script(pre / "kube-scheduler", "echo prebuilt")
    b = Builder(BuildSettings(cache_dir=tmp_path / "cache", bin_dir=pre), progress=lambda _: None)
    cached = b.cache_dir_of(BY_NAME["kube-scheduler"]) / "kube-scheduler"
    cached.parent.mkdir(parents=True)
    _script(cached, "echo Kubernetes v1.34.4")
    assert b.find("kube-scheduler") == pre / "kube-scheduler"
    assert _builder(tmp_path).find("kube-scheduler") == cached


def test_cached_binary_needs_our_stamp_or_the_pinned_version(tmp_path: Path, empty_path: Path) -> None:
    b = _builder(tmp_path)
    cached = b.cache_dir_of(BY_NAME["kube-apiserver"]) / "kube-apiserver"
    cached.parent.mkdir(parents=True)
    _script(cached, 'echo "Kubernetes v0.0.0-master+$Format:%H$"')  # built without version stamping
    assert b.find("kube-apiserver") is None
    _script(cached, 'echo "Kubernetes v1.34.4"')  # copied in by hand, right version
    assert b.find("kube-apiserver") == cached
    assert (cached.parent / ".kube-apiserver.version").read_text() == "v1.34.4"
    _script(cached, "exit 1")  # the stamp written above is enough from now on (no process per lookup)
    assert b.find("kube-apiserver") == cached


def test_path_binary_used_only_when_its_version_matches(tmp_path: Path, empty_path: Path) -> None:
    _script(empty_path / "kubectl", 'echo "Client Version: v1.20.0"')
    assert _builder(tmp_path).find("kubectl") is None
    assert _builder(tmp_path, use_path_binaries=True).find("kubectl") == empty_path / "kubectl"
    _script(empty_path / "kubectl", 'echo "Client Version: v1.34.4"')
    assert _builder(tmp_path).find("kubectl") == empty_path / "kubectl"


def test_missing_go_is_a_clear_error(tmp_path: Path, empty_path: Path) -> None:
    with pytest.raises(DevClusterError) as info:
        _builder(tmp_path, go="go").path("etcd")
    assert "Go toolchain" in info.value.problem and "HEXRL_BIN_DIR" in info.value.hint


def test_broken_and_old_go_are_clear_errors(tmp_path: Path, empty_path: Path) -> None:
    _script(empty_path / "go", "exit 3")
    with pytest.raises(DevClusterError, match="does not run"):
        _builder(tmp_path).path("etcd")
    _script(empty_path / "go", "echo go1.19.8")
    with pytest.raises(DevClusterError, match="too old"):
        _builder(tmp_path).path("etcd")


def test_failed_build_reports_the_log_and_leaves_no_binary(tmp_path: Path, empty_path: Path) -> None:
    _script(
        empty_path / "go",
        'if [ "$1" = env ]; then echo go1.26.0; exit 0; fi\n'
        'echo "main.go:3: cannot find module providing package go.etcd.io/etcd/server/v3/etcdmain" >&2; exit 1',
    )
    b = _builder(tmp_path)
    with pytest.raises(DevClusterError) as info:
        b.path("etcd")
    assert "cannot find module" in info.value.problem and "build.log" in info.value.hint
    assert not list(b.cache_dir_of(BY_NAME["etcd"]).glob("etcd*"))


def test_cli_build_without_go_exits_1_without_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "HEXRL_CACHE_DIR": str(tmp_path), "HEXRL_GO": "no-such-go", "PATH": str(tmp_path)}
    env.pop("HEXRL_BIN_DIR", None)
    hexrl = Path(sys.executable).parent / "hexrl"
    proc = subprocess.run([str(hexrl), "cluster", "build"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Go toolchain" in proc.stderr and "Traceback" not in proc.stderr


def test_kubernetes_gomod_replaces_every_staging_module(tmp_path: Path) -> None:
    b = Builder(BuildSettings(cache_dir=tmp_path), progress=lambda _: None)
    gomod = b._kubernetes_gomod(shutil.which("go") or "go", "v1.34.4", "v0.34.4")
    assert "require k8s.io/kubernetes v1.34.4" in gomod
    assert "\tk8s.io/api => k8s.io/api v0.34.4" in gomod
    assert "\tk8s.io/client-go => k8s.io/client-go v0.34.4" in gomod
    assert "./staging" not in gomod
    assert gomod.count(" => ") >= 25


def test_kwok_stages_from_bin_dir_or_a_clear_error(tmp_path: Path, empty_path: Path) -> None:
    pre = tmp_path / "prebuilt"
    (pre / "kwok-stages").mkdir(parents=True)
    b = Builder(BuildSettings(cache_dir=tmp_path / "cache", bin_dir=pre), progress=lambda _: None)
    with pytest.raises(DevClusterError) as info:
        b.kwok_stages()  # empty folder, no cache, no Go
    assert "kwok-stages" in info.value.hint
    (pre / "kwok-stages" / "node.yaml").write_text("kind: Stage\n")
    assert b.kwok_stages() == pre / "kwok-stages"
