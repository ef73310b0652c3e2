"""Pinned versions and settings of the local control plane (one place to bump a version).

Every binary is built from the Go module proxy at exactly these versions and cached under a folder keyed by
component and version, so bumping a version here rebuilds only that component.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _cache_root() -> Path:
    return Path(os.environ.get("HEXRL_CACHE_DIR", Path.home() / ".cache" / "hexrl"))


@dataclass(frozen=True)
class Versions:
    """The pinned upstream versions (one Kubernetes minor for every control-plane binary)."""

    kubernetes: str = "v1.34.4"
    """Tag of `k8s.io/kubernetes` for kube-apiserver, kube-controller-manager, kube-scheduler and kubectl.
    The staging modules (`k8s.io/api`, `k8s.io/client-go`, …) are pinned to the matching `v0.34.4`."""
    etcd: str = "v3.5.35"
    """Tag of `go.etcd.io/etcd/server/v3` (latest 3.5 patch; `go list -m -versions` shows newer ones)."""
    kwok: str = "v0.8.0"
    """Tag of `sigs.k8s.io/kwok` (kwok and kwokctl); v0.8.0 supports Kubernetes 1.32–1.36."""
    coredns: str = "v1.13.2"
    """Tag of `github.com/coredns/coredns` (cluster DNS of clusters with real nodes). v1.13.2 builds
    against client-go v0.34.x, so the build reuses the Kubernetes packages already compiled."""

    @property
    def staging(self) -> str:
        """The `v0.X.Y` tag of the Kubernetes staging modules matching `kubernetes` (v1.34.4 → v0.34.4)."""
        return "v0." + self.kubernetes.removeprefix("v").split(".", 1)[1]


@dataclass(frozen=True)
class BuildSettings:
    """Where binaries are built and cached, and how the Go toolchain is driven."""

    versions: Versions = field(default_factory=Versions)
    """Pinned versions; see `Versions`."""
    cache_dir: Path = field(default_factory=_cache_root)
    """Root of the cache outside the repo (default ~/.cache/hexrl, env HEXRL_CACHE_DIR); binaries live in
    `<cache_dir>/bin/<component>-<version>/`, Go work folders in `<cache_dir>/build/<component>-<version>/`."""
    bin_dir: Path | None = field(
        default_factory=lambda: Path(os.environ["HEXRL_BIN_DIR"]) if os.environ.get("HEXRL_BIN_DIR") else None
    )
    """A folder of pre-built binaries (env HEXRL_BIN_DIR) used instead of building; default none."""
    use_path_binaries: bool = field(default_factory=lambda: os.environ.get("HEXRL_USE_PATH_BINARIES") == "1")
    """Use binaries found on PATH even when their version does not match the pin (env
    HEXRL_USE_PATH_BINARIES=1); by default a PATH binary is used only if it reports the pinned version."""
    go: str = field(default_factory=lambda: os.environ.get("HEXRL_GO", "go"))
    """The Go command (env HEXRL_GO); Go ≥ 1.21 is needed (it fetches a newer toolchain itself if a module
    asks for one)."""
    parallel: int = field(default_factory=lambda: max(1, min(os.cpu_count() or 1, 4)))
    """`go build -p`: packages compiled at once (default: the cores, at most 4 — memory grows with it)."""
    timeout_seconds: float = 3600.0
    """Upper bound on one `go build` (seconds); a cold kube-apiserver build takes ~10–20 min on 2 cores."""

    @property
    def bin_root(self) -> Path:
        return self.cache_dir / "bin"

    @property
    def build_root(self) -> Path:
        return self.cache_dir / "build"
