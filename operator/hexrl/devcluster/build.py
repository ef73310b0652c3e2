"""Builds the control-plane binaries from the Go module proxy, pinned and cached outside the repo.

Recipes (one per upstream component, versions in `settings.Versions`):

- **kubernetes** (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl): `k8s.io/kubernetes` is
  not meant to be a dependency — its go.mod replaces every staging module (`k8s.io/api`, `k8s.io/client-go`,
  …) with `./staging/src/…`, and replace lines of a dependency are ignored. So we read its go.mod from the
  module proxy (`go mod download -json` → the `GoMod` file, `go mod edit -json` to parse it), write a small
  main module that requires `k8s.io/kubernetes vX.Y.Z` and replaces each staging module with the published
  tag `v0.Y.Z`, and `go build` each `k8s.io/kubernetes/cmd/<name>` with the version stamped in by `-X`.
- **etcd** (etcd): `go.etcd.io/etcd/server/v3` holds the server's main logic in `etcdmain`; a three-line
  main calls `etcdmain.Main(os.Args)`.
- **coredns** (coredns): a generated main that links only the plugins a dev cluster's DNS needs (bind,
  ready, health, errors, log, cache, kubernetes, forward) and sets `dnsserver.Directives` to them in
  CoreDNS's own order — the way CoreDNS documents custom builds; linking all ~60 plugins would triple the
  build. The Kubernetes staging modules are raised to the pinned `v0.Y.Z`, so the packages compiled for
  the Kubernetes binaries are reused.
- **kwok** (kwok, kwokctl): `sigs.k8s.io/kwok/cmd/...`. kwok needs Stage definitions (how simulated nodes
  and pods move through their lifecycle); the upstream defaults for this exact version are copied from the
  downloaded module next to the binary.

Lookup order for every binary: `HEXRL_BIN_DIR`, then the cache (`<cache>/bin/<component>-<version>/`), then
PATH (when the binary reports the pinned version, or `HEXRL_USE_PATH_BINARIES=1`), else build. Builds run
with `GOFLAGS=-mod=mod`, hold a file lock (two processes never build the same thing twice), write to a
temporary name and rename, so an interrupted build never leaves a half-written binary in the cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hexrl.devcluster.errors import DevClusterError
from hexrl.devcluster.settings import BuildSettings

Progress = Callable[[str], None]

MIN_GO = (1, 21)
"""Oldest Go that can build these modules: 1.21 introduced GOTOOLCHAIN, which fetches the newer toolchain
a module's `go` line asks for (kwok v0.8.0 asks for 1.26) from the module proxy."""


@dataclass(frozen=True)
class Binary:
    """One executable and how to build it."""

    name: str
    component: str
    """kubernetes | etcd | kwok (the recipe and the version key)."""
    package: str
    """Go package path of the main package ('.' = the generated main of the build folder)."""
    minutes: int
    """Rough cold-build time on 2 cores with an empty Go build cache (shown in the progress line)."""


BINARIES: tuple[Binary, ...] = (
    # Minutes measured on a shared 2-core machine, in this order (later ones reuse the Go build cache).
    Binary("etcd", "etcd", ".", 3),
    Binary("kube-apiserver", "kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver", 12),
    Binary("kube-controller-manager", "kubernetes", "k8s.io/kubernetes/cmd/kube-controller-manager", 4),
    Binary("kube-scheduler", "kubernetes", "k8s.io/kubernetes/cmd/kube-scheduler", 1),
    Binary("kubectl", "kubernetes", "k8s.io/kubernetes/cmd/kubectl", 2),
    # Real nodes (`real: true` pools) only; built on first use by `hexrl cluster up` or `cluster build`.
    Binary("kubelet", "kubernetes", "k8s.io/kubernetes/cmd/kubelet", 2),
    Binary("kube-proxy", "kubernetes", "k8s.io/kubernetes/cmd/kube-proxy", 1),
    Binary("coredns", "coredns", ".", 6),
    Binary("kwok", "kwok", "sigs.k8s.io/kwok/cmd/kwok", 8),
    Binary("kwokctl", "kwok", "sigs.k8s.io/kwok/cmd/kwokctl", 1),
)
BY_NAME = {b.name: b for b in BINARIES}

KWOK_STAGE_DIRS = ("kustomize/stage/node/fast", "kustomize/stage/node/heartbeat-with-lease", "kustomize/stage/pod/fast")
"""Upstream Stage folders used by the simulated nodes: initialise nodes Ready, renew their heartbeat and
lease, and move bound pods to Running (and to Succeeded/deleted when they finish or are deleted)."""


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Builder:
    """Finds or builds the pinned binaries. `path(name)` is what the rest of devcluster uses."""

    def __init__(self, settings: BuildSettings | None = None, progress: Progress = stderr_progress) -> None:
        self.settings = settings or BuildSettings()
        self.progress = progress

    # ------------------------------------------------------------------------------------------ lookup

    def version_of(self, binary: Binary) -> str:
        return str(getattr(self.settings.versions, binary.component))

    def cache_dir_of(self, binary: Binary) -> Path:
        return self.settings.bin_root / f"{binary.component}-{self.version_of(binary)}"

    def find(self, name: str) -> Path | None:
        """The binary to use without building, or None."""
        binary = BY_NAME[name]
        if self.settings.bin_dir is not None:
            candidate = self.settings.bin_dir / name
            if _is_executable(candidate):
                return candidate
        cached = self.cache_dir_of(binary) / name
        if self._cached_ok(binary, cached):
            return cached
        on_path = shutil.which(name)
        if on_path and (self.settings.use_path_binaries or _reports_version(Path(on_path), self.version_of(binary))):
            return Path(on_path)
        return None

    def _cached_ok(self, binary: Binary, cached: Path) -> bool:
        """A cached binary counts when our build stamped it, or when it reports the pinned version (a
        binary copied in by hand); an unversioned or wrong-version binary is rebuilt."""
        if not _is_executable(cached):
            return False
        version = self.version_of(binary)
        stamp = cached.with_name(f".{binary.name}.version")
        if stamp.exists() and stamp.read_text().strip() == version:
            return True
        if _reports_version(cached, version):
            stamp.write_text(version)
            return True
        return False

    def path(self, name: str) -> Path:
        """The binary, building it first if needed."""
        found = self.find(name)
        if found is not None:
            return found
        return self.build(BY_NAME[name])

    def ensure_all(self) -> dict[str, Path]:
        """Every binary (built if needed) plus kwok's stages; quick when everything is cached."""
        paths = {b.name: self.path(b.name) for b in BINARIES}
        self.kwok_stages()
        return paths

    def status(self) -> dict[str, str]:
        """For `hexrl cluster status`: where each binary comes from, or 'not built'."""
        return {b.name: str(self.find(b.name) or "not built") for b in BINARIES}

    # ------------------------------------------------------------------------------------------- build

    def build(self, binary: Binary) -> Path:
        version = self.version_of(binary)
        out_dir = self.cache_dir_of(binary)
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / binary.name
        with _locked(out_dir / f".{binary.name}.lock"):
            if self._cached_ok(binary, target):  # another process built it while we waited for the lock
                return target
            go = self._check_go()
            self.progress(
                f"building {binary.name} {version} from the Go module proxy "
                f"(first time only, ~{binary.minutes} min on 2 cores)…"
            )
            started = time.monotonic()
            workdir = self._prepare(binary, go)
            tmp = out_dir / f".{binary.name}.tmp"
            cmd = [
                go, "build", "-trimpath", "-p", str(self.settings.parallel),
                "-ldflags", " ".join(["-s", "-w", *self._stamps(binary)]),
                "-o", str(tmp), binary.package,
            ]  # fmt: skip
            self._run_go(cmd, workdir, what=f"building {binary.name} {version}")
            tmp.chmod(0o755)
            tmp.replace(target)
            target.with_name(f".{binary.name}.version").write_text(version)
            self.progress(f"built {binary.name} {version} in {time.monotonic() - started:.0f}s → {target}")
            return target

    def _stamps(self, binary: Binary) -> list[str]:
        """`-X` flags that stamp the version upstream's release scripts would (what `--version` prints)."""
        v = self.version_of(binary)
        if binary.component == "kubernetes":
            major, minor = v.removeprefix("v").split(".")[:2]
            flags = []
            for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
                flags += [f"-X {pkg}.gitVersion={v}", f"-X {pkg}.gitMajor={major}", f"-X {pkg}.gitMinor={minor}"]
                flags += [f"-X {pkg}.gitTreeState=clean"]
            return flags
        if binary.component == "kwok":
            return [f"-X sigs.k8s.io/kwok/pkg/consts.Version={v}", f"-X sigs.k8s.io/kwok/pkg/consts.KubeVersion={self.settings.versions.kubernetes}"]
        return []

    def _prepare(self, binary: Binary, go: str) -> Path:
        """Write the build folder of the binary's component (go.mod + sources); returns it."""
        v = self.settings.versions
        workdir = self.settings.build_root / f"{binary.component}-{self.version_of(binary)}"
        workdir.mkdir(parents=True, exist_ok=True)
        if binary.component == "kubernetes":
            gomod = self._kubernetes_gomod(go, v.kubernetes, v.staging)
            tools = [b.package for b in BINARIES if b.component == "kubernetes"]
        elif binary.component == "coredns":
            gomod = (
                f"module hexrl.local/coredns-build\n\ngo 1.24\n\nrequire (\n\tgithub.com/coredns/coredns {v.coredns}\n"
                + "".join(f"\tk8s.io/{m} {v.staging}\n" for m in ("api", "apimachinery", "client-go"))
                + ")\n"
            )
            (workdir / "main.go").write_text(_template("coredns_main.go.tmpl").replace("{version}", v.coredns))
            tools = []
        elif binary.component == "etcd":
            gomod = f"module hexrl.local/etcd-build\n\ngo 1.21\n\nrequire go.etcd.io/etcd/server/v3 {v.etcd}\n"
            main = _template("etcd_main.go.tmpl").replace("{version}", v.etcd)
            (workdir / "main.go").write_text(main)
            tools = []
        else:
            gomod = f"module hexrl.local/kwok-build\n\ngo 1.21\n\nrequire sigs.k8s.io/kwok {v.kwok}\n"
            tools = [b.package for b in BINARIES if b.component == "kwok"]
        if tools:
            imports = "\n".join(f'\t_ "{t}"' for t in tools)
            (workdir / "tools.go").write_text(_template("tools.go.tmpl").replace("{imports}", imports))
        gomod_path = workdir / "go.mod"
        # Keep a go.mod that `go build -mod=mod` already completed (it adds requirements and go.sum
        # lines); rewrite it only when the recipe changed.
        recipe = workdir / ".recipe"
        if not gomod_path.exists() or not recipe.exists() or recipe.read_text() != gomod:
            gomod_path.write_text(gomod)
            (workdir / "go.sum").unlink(missing_ok=True)
            recipe.write_text(gomod)
        return workdir

    def _kubernetes_gomod(self, go: str, version: str, staging: str) -> str:
        """go.mod of a main module that builds k8s.io/kubernetes@version's commands."""
        info = self._go_json([go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"], "k8s.io/kubernetes")
        upstream = self._go_json([go, "mod", "edit", "-json", info["GoMod"]], "k8s.io/kubernetes go.mod")
        lines = ["module hexrl.local/kubernetes-build", "", f"go {upstream.get('Go', '1.24')}", ""]
        for godebug in upstream.get("Godebug") or []:
            lines.append(f"godebug {godebug['Key']}={godebug['Value']}")
        lines += ["", f"require k8s.io/kubernetes {version}", "", "replace ("]
        for rep in upstream.get("Replace") or []:
            old, new = rep["Old"]["Path"], rep["New"]["Path"]
            if new.startswith("./staging/"):
                lines.append(f"\t{old} => {old} {staging}")
        lines.append(")")
        return "\n".join(lines) + "\n"

    def kwok_stages(self) -> Path:
        """Folder of kwok Stage YAML for the pinned kwok version (copied from the module once), or
        `$HEXRL_BIN_DIR/kwok-stages/` when that holds them."""
        if self.settings.bin_dir is not None:
            given = self.settings.bin_dir / "kwok-stages"
            if given.is_dir() and any(given.glob("*.yaml")):
                return given
        v = self.settings.versions.kwok
        stages = self.settings.bin_root / f"kwok-{v}" / "stages"
        if stages.is_dir() and any(stages.glob("*.yaml")):
            return stages
        try:
            go = self._check_go()
        except DevClusterError as e:
            raise DevClusterError(
                f"kwok's Stage files are not cached and cannot be fetched: {e.problem}",
                "install Go (the stages come from the sigs.k8s.io/kwok module), or put the Stage YAML files "
                "in $HEXRL_BIN_DIR/kwok-stages/",
            ) from None
        info = self._go_json([go, "mod", "download", "-json", f"sigs.k8s.io/kwok@{v}"], "sigs.k8s.io/kwok")
        module_dir = Path(info["Dir"])
        tmp = stages.with_name("stages.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for sub in KWOK_STAGE_DIRS:
            for f in sorted((module_dir / sub).glob("*.yaml")):
                if f.name != "kustomization.yaml":
                    shutil.copyfile(f, tmp / f.name)
        shutil.rmtree(stages, ignore_errors=True)
        tmp.rename(stages)
        return stages

    # ---------------------------------------------------------------------------------------------- go

    def _check_go(self) -> str:
        go = shutil.which(self.settings.go)
        hint = (
            "install Go ≥ 1.21 (https://go.dev/dl, or `apt-get install golang-go` on Debian trixie), or put "
            "pre-built binaries in a folder and set HEXRL_BIN_DIR to it"
        )
        if go is None:
            raise DevClusterError(f"the Go toolchain ('{self.settings.go}') was not found on PATH", hint)
        try:
            out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60, check=True)
        except (subprocess.SubprocessError, OSError) as e:
            raise DevClusterError(f"the Go toolchain at {go} does not run ({e})", hint) from None
        m = re.match(r"go(\d+)\.(\d+)", out.stdout.strip())
        if not m or (int(m[1]), int(m[2])) < MIN_GO:
            raise DevClusterError(f"Go at {go} is {out.stdout.strip() or 'unknown'}, too old", hint)
        return go

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        flags = [f for f in env.get("GOFLAGS", "").split() if not f.startswith("-mod=")]
        env["GOFLAGS"] = " ".join(["-mod=mod", *flags])
        return env

    def _go_json(self, cmd: list[str], what: str) -> dict:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self._env(), timeout=1800)
        if proc.returncode != 0:
            raise DevClusterError(
                f"`{' '.join(cmd[1:])}` failed for {what}: {_tail(proc.stderr or proc.stdout)}",
                "check access to the Go module proxy (GOPROXY) and that the pinned version exists",
            )
        data: dict = json.loads(proc.stdout)
        return data

    def _run_go(self, cmd: list[str], workdir: Path, what: str) -> None:
        log = workdir / "build.log"
        with log.open("w") as fh:
            try:
                proc = subprocess.run(
                    cmd, cwd=workdir, stdout=fh, stderr=subprocess.STDOUT, env=self._env(),
                    timeout=self.settings.timeout_seconds,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                raise DevClusterError(
                    f"{what} took longer than {self.settings.timeout_seconds:.0f}s and was stopped",
                    f"see {log}; retry (the Go build cache keeps finished packages)",
                ) from None
        if proc.returncode != 0:
            raise DevClusterError(
                f"{what} failed (go exit code {proc.returncode}): {_tail(log.read_text())}",
                f"full log: {log}. Check access to the Go module proxy and free disk space; "
                "or put pre-built binaries in HEXRL_BIN_DIR",
            )


# ------------------------------------------------------------------------------------------------ helpers


def _template(name: str) -> str:
    return resources.files("hexrl.devcluster").joinpath("gosrc", name).read_text()


def _is_executable(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def _reports_version(binary: Path, version: str) -> bool:
    """True when `binary --version` (or `kubectl version --client`) mentions `version`."""
    args = ["version", "--client"] if binary.name == "kubectl" else ["--version"]
    try:
        out = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=20)
    except (subprocess.SubprocessError, OSError):
        return False
    return version.removeprefix("v") in (out.stdout + out.stderr)


def _tail(text: str, lines: int = 8) -> str:
    return "\n    ".join(text.strip().splitlines()[-lines:])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
