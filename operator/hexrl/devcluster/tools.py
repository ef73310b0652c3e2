"""Pinned developer tools built from the Go module proxy: `helm` and `ct` (chart-testing).

The chart checks (`tests/chart/`) and `make chart` need Helm and chart-testing. Like the Kubernetes
binaries of the local control plane, they are not downloaded as release archives (our machines reach
package registries only) but compiled from their Go modules at a pinned version with `go install`,
once, into `~/.cache/hexrl/bin/<tool>-<version>/<tool>`. Later runs find them there in milliseconds.

Resolution order for a tool (first hit wins):

1. the environment variable named in `GoTool.env` (e.g. `HEXRL_HELM=/opt/helm/bin/helm`): a file used as is;
2. `$HEXRL_BIN_DIR/<tool>` (the folder of pre-built binaries the control plane also honours);
3. the cache folder `<cache>/<tool>-<version>/<tool>` (cache root `$HEXRL_CACHE_DIR`, default `~/.cache/hexrl`);
4. a binary of that name on `PATH` whose `version` output contains the pinned version;
5. a build: a generated main module in `<cache>/build/<tool>-<version>/` requires the tool's module at the
   pinned version and `go build -mod=mod` compiles its main package into a temporary file that is
   renamed into the cache when the build succeeded (an interrupted build never leaves a half-written
   binary behind). We do not use `go install pkg@version`: it asks the proxy for the module's version
   list to check deprecations, and proxies that serve pinned versions only refuse that request.

Every failure a user can fix (no Go toolchain, the proxy refuses a module, the build fails) raises
`ToolError` whose message says what happened and what to do. Builds hold a file lock, so two test
processes never compile the same tool twice.

Run as a script to build everything up front: `python -m hexrl.devcluster.tools [helm] [ct]`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


class ToolError(RuntimeError):
    """A tool could not be found or built; the message says what to do."""


@dataclass(frozen=True)
class GoTool:
    """A command-line tool compiled from one Go module at one pinned version."""

    name: str
    """Binary name, e.g. `helm`."""
    module: str
    """Go module path, e.g. `helm.sh/helm/v3`."""
    package: str
    """Import path of the `main` package inside the module."""
    version: str
    """Pinned module version (a tag such as `v3.22.0`); bump it deliberately, never float."""
    env: str
    """Environment variable that points at a pre-built binary to use instead."""
    version_args: tuple[str, ...] = ("version",)
    """Arguments that make the binary print its version (used to accept a binary found on PATH)."""
    ldflags: tuple[str, ...] = ()
    """Extra `-X` linker flags (e.g. the version string the tool reports)."""
    minutes: int = 3
    """Typical cold build time on 2 cores, shown in the progress line so nobody thinks it hangs."""
    support_files: tuple[str, ...] = ()
    """Files of the module (paths inside it) copied next to the binary, e.g. ct's default lint configs."""


HELM = GoTool(
    name="helm",
    module="helm.sh/helm/v3",
    package="helm.sh/helm/v3/cmd/helm",
    version="v3.22.0",
    env="HEXRL_HELM",
    version_args=("version", "--short"),
    # Helm reports "v3.x.y" only when told at link time; without it `helm version` says v3.*-dev and
    # chart `kubeVersion`/`helm lint` checks behave as for a development build.
    ldflags=(
        "-X helm.sh/helm/v3/internal/version.version=v3.22.0",
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
    ),
    minutes=4,
)

CT = GoTool(
    name="ct",
    module="github.com/helm/chart-testing/v3",
    package="github.com/helm/chart-testing/v3/ct",
    version="v3.14.0",
    env="HEXRL_CT",
    ldflags=("-X github.com/helm/chart-testing/v3/ct/cmd.Version=v3.14.0",),
    minutes=3,
    # `ct lint` validates Chart.yaml with this yamale schema and runs yamllint with this config; release
    # archives ship them in etc/, a module build must fetch them from the module itself.
    support_files=("etc/chart_schema.yaml", "etc/lintconf.yaml"),
)

TOOLS: dict[str, GoTool] = {t.name: t for t in (HELM, CT)}


@dataclass(frozen=True)
class ToolSettings:
    """Where tools are cached and how they are built."""

    cache_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("HEXRL_CACHE_DIR") or Path.home() / ".cache" / "hexrl") / "bin"
    )
    """Root of the binary cache (default `~/.cache/hexrl/bin`, or `$HEXRL_CACHE_DIR/bin`, as for the control
    plane); outside the repo so a fresh clone or `git clean` never throws away minutes of compilation."""
    bin_dir: Path | None = field(
        default_factory=lambda: Path(os.environ["HEXRL_BIN_DIR"]) if os.environ.get("HEXRL_BIN_DIR") else None
    )
    """A folder of pre-built binaries (env `HEXRL_BIN_DIR`) searched before the cache; default none."""
    go: str = field(default_factory=lambda: os.environ.get("HEXRL_GO", "go"))
    """The Go toolchain command (default `go` on PATH, or `$HEXRL_GO`)."""
    build_timeout_s: float = 1800.0
    """Upper bound for one cold build, seconds (default 30 min: 2 shared cores can be very slow)."""
    progress_every_s: float = 30.0
    """Seconds between "still building" lines, so a long build never looks like a hang."""


def cached_path(tool: GoTool, settings: ToolSettings | None = None) -> Path:
    """Where the pinned build of `tool` lives in the cache."""
    settings = settings or ToolSettings()
    return settings.cache_dir / f"{tool.name}-{tool.version}" / tool.name


def _usable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _on_path_with_version(tool: GoTool) -> Path | None:
    """A binary on PATH that reports the pinned version, or None."""
    found = shutil.which(tool.name)
    if not found:
        return None
    try:
        out = subprocess.run(
            [found, *tool.version_args], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(found) if tool.version in (out.stdout + out.stderr) else None


def find_tool(tool: GoTool, settings: ToolSettings | None = None) -> Path | None:
    """The binary to use for `tool` without building anything, or None."""
    override = os.environ.get(tool.env)
    if override:
        if not _usable(Path(override)):
            raise ToolError(f"{tool.env}={override} is not an executable file; unset it or point it at {tool.name}")
        return Path(override)
    settings = settings or ToolSettings()
    if settings.bin_dir and _usable(settings.bin_dir / tool.name):
        return settings.bin_dir / tool.name
    cached = cached_path(tool, settings)
    if _usable(cached) and all((cached.parent / rel).is_file() for rel in tool.support_files):
        return cached
    return _on_path_with_version(tool)


def _check_go(settings: ToolSettings) -> str:
    go = shutil.which(settings.go)
    if not go:
        raise ToolError(
            f"building {', '.join(TOOLS)} needs a Go toolchain (1.24 or newer) and none was found as "
            f"'{settings.go}'. Install Go (e.g. `apt-get install golang` or the official tarball), put it on "
            "PATH or set HEXRL_GO=/path/to/go, or point HEXRL_HELM / HEXRL_CT at pre-built binaries."
        )
    try:
        subprocess.run([go, "version"], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolError(f"'{go} version' failed ({exc}); repair the Go installation or set HEXRL_GO=/path/to/go") from exc
    return go


def _ticker(label: str, every_s: float, stop: threading.Event, emit: Callable[[str], None]) -> None:
    start = time.monotonic()
    while not stop.wait(every_s):
        emit(f"  … still building {label} ({time.monotonic() - start:.0f} s)")


def build_tool(
    tool: GoTool, settings: ToolSettings | None = None, emit: Callable[[str], None] | None = None
) -> Path:
    """Compile `tool` at its pinned version into the cache and return the binary's path."""
    settings = settings or ToolSettings()
    emit = emit or (lambda line: print(line, file=sys.stderr, flush=True))
    go = _check_go(settings)
    target = cached_path(tool, settings)
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    label = f"{tool.name} {tool.version}"
    emit(
        f"building {label} from the Go module proxy into {target.parent} "
        f"(first time only; about {tool.minutes} min on 2 cores)"
    )
    workdir = settings.cache_dir.parent / "build" / f"{tool.name}-{tool.version}"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "go.mod").write_text(
        f"module hexrl.local/tools/{tool.name}\n\ngo 1.24\n\nrequire {tool.module} {tool.version}\n"
    )
    staging = Path(tempfile.mkdtemp(prefix=f".{tool.name}-", dir=target.parent.parent))
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false"}
    ldflags = " ".join(("-s", "-w", *tool.ldflags))
    cmd = [go, "build", "-trimpath", f"-ldflags={ldflags}", "-o", str(staging / tool.name), tool.package]
    stop = threading.Event()
    ticker = threading.Thread(target=_ticker, args=(label, settings.progress_every_s, stop, emit), daemon=True)
    ticker.start()
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=settings.build_timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ToolError(
            f"building {label} took longer than {settings.build_timeout_s:.0f} s; the machine may be busy — "
            "run `make chart-tools` again (the Go build cache keeps finished packages)"
        ) from exc
    finally:
        stop.set()
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        hint = (
            "the module proxy refused the module; check GOPROXY and that the version exists"
            if "403" in tail or "404" in tail or "not available" in tail
            else "see the compiler output above"
        )
        raise ToolError(f"`{' '.join(cmd)}` failed ({hint}):\n{tail}")
    built = staging / tool.name
    if not _usable(built):
        shutil.rmtree(staging, ignore_errors=True)
        raise ToolError(f"go build finished but produced no {built}; is {tool.package} a main package?")
    target.parent.mkdir(parents=True, exist_ok=True)
    _copy_support_files(tool, go, workdir, env, target.parent)
    os.replace(built, target)
    shutil.rmtree(staging, ignore_errors=True)
    emit(f"built {label} in {time.monotonic() - started:.0f} s -> {target}")
    return target


def _copy_support_files(tool: GoTool, go: str, workdir: Path, env: dict[str, str], dest: Path) -> None:
    """Copy `tool.support_files` from the downloaded module into `dest` (keeping their relative paths)."""
    if not tool.support_files:
        return
    proc = subprocess.run(
        [go, "mod", "download", "-json", f"{tool.module}@{tool.version}"],
        cwd=workdir, capture_output=True, text=True, env=env, timeout=600, check=False,
    )
    try:
        module_dir = Path(json.loads(proc.stdout)["Dir"])
    except (ValueError, KeyError) as exc:
        raise ToolError(f"could not locate the downloaded module {tool.module}@{tool.version}: {proc.stderr}") from exc
    for rel in tool.support_files:
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(module_dir / rel, out)


def support_file(binary: Path, rel: str) -> Path | None:
    """A support file installed next to `binary` (e.g. `etc/lintconf.yaml` for ct), or None."""
    path = binary.parent / rel
    return path if path.is_file() else None


@contextlib.contextmanager
def _build_lock(settings: ToolSettings, tool: GoTool) -> Iterator[None]:
    """An exclusive file lock per tool, so concurrent test sessions build it once."""
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.cache_dir / f".{tool.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_tool(
    tool: GoTool | str, settings: ToolSettings | None = None, emit: Callable[[str], None] | None = None
) -> Path:
    """The binary for `tool`, building it first when neither an override, the cache nor PATH has it."""
    if isinstance(tool, str):
        if tool not in TOOLS:
            raise ToolError(f"unknown tool '{tool}'; known: {', '.join(TOOLS)}")
        tool = TOOLS[tool]
    settings = settings or ToolSettings()
    found = find_tool(tool, settings)
    if found:
        return found
    with _build_lock(settings, tool):
        # Another process may have finished the build while we waited for the lock.
        return find_tool(tool, settings) or build_tool(tool, settings, emit)


def main(argv: list[str] | None = None) -> int:
    """Build (or find) the named tools and print one `name path` line each."""
    names = (argv if argv is not None else sys.argv[1:]) or list(TOOLS)
    try:
        for name in names:
            print(f"{name} {ensure_tool(name)}", flush=True)
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
