"""The workers, operator and pause images of the real nodes, built locally: no Docker, no registry.

`ImageBuilder` produces OCI image tarballs that `ctr images import` loads into a node's containerd
(`load_image`). What is in them:

- **workers** — what `workers/Dockerfile` describes: Python 3.11, a venv at /opt/hexrl with the locked
  dependencies of `hexrl[workers]` (`requirements/workers.lock`) and hexrl itself (a wheel, no deps), user
  10001 with a home and /checkpoints, entrypoint `python -m hexrl_workers`, command `rollout`.
- **operator** — what `deploy/operator/Dockerfile` describes: the same base, a venv from
  `requirements/operator.lock`, user 65532 (the chart's securityContext), entrypoint `hexrl operator`.
- **pause** — the pod sandbox: our own `pause.c` built with `gcc -static`, nothing else.

Layers (each a directory tree; `hexrl.devcluster.oci` turns them into tars):

1. base: Debian `suite` by `debootstrap --variant=minbase` from this machine's apt mirror, plus python3,
   python3-venv and ca-certificates (Debian bookworm's Python is 3.11, which runs the cp311 wheels), the
   users, /checkpoints; apt lists and caches removed. Shared by workers and operator.
2. venv: `python3 -m venv /opt/hexrl` and `pip install --require-hashes` of the image's lock, in a chroot
   over the base (overlay: the upper directory is the layer). The wheels are downloaded on the host by the
   host's pip (checked against the lock's hashes) and installed offline, so the chroot needs no network.
3. project: hexrl built as a wheel on the host from the checkout and installed with `--no-deps` the same
   way, over base + venv. Editing the project's source rebuilds only this layer (seconds).

Caching by content: each layer's key is a hash of its inputs (the builder's recipe version, the Debian
suite and packages, the lock file, the project's source files, the parent layer's key); an image's key
hashes its layers' keys and its config. Everything lives under `<cache_dir>/images/` (default
~/.cache/hexrl/images, env HEXRL_CACHE_DIR): `layers/<step>-<key>/` (tree, digest, log) and
`<image>-<tag>.oci.tar` with a record `<image>.<key>.json`. A build with nothing changed reads a few
hundred source files, finds the record and returns in well under a second, without root. Builds hold a
file lock and write under temporary names that are renamed at the end, so an interrupted build never leaves
a half layer or a half image; older images and unreferenced layers are pruned after each build.

Building needs root (debootstrap, chroot, overlay mounts in a private mount namespace), debootstrap, gcc
with a static libc and network access to the Debian and Python package registries; missing pieces raise a
`DevClusterError` naming what to apt-get install.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from hexrl.devcluster import oci, rootfs
from hexrl.devcluster.build import Progress, stderr_progress
from hexrl.devcluster.errors import DevClusterError
from hexrl.devcluster.settings import BuildSettings

RECIPE_VERSION = "1"
"""Part of every cache key: bump it when a recipe below changes what a layer contains."""

IMAGE_KINDS = ("workers", "operator", "pause")
WORKER_UID = 10001
OPERATOR_UID = 65532
PAUSE_UID = 65535
IMAGE_PATH = "/opt/hexrl/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SOURCE_TREES = ("operator", "workers")
SOURCE_FILES = ("pyproject.toml", "README.md")
_IGNORED_SOURCE_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}

BASE_SETUP = f"""\
useradd --uid {WORKER_UID} --create-home --no-log-init --shell /bin/sh hexrl
groupadd --gid {OPERATOR_UID} nonroot
useradd --uid {OPERATOR_UID} --gid {OPERATOR_UID} --home-dir /tmp --no-create-home --no-log-init \\
  --shell /usr/sbin/nologin nonroot
mkdir -p /checkpoints /etc/hexrl
chown hexrl /checkpoints
"""
"""Run in the base (as root, in a chroot): the workers' user with a home and /checkpoints (as in
workers/Dockerfile), the operator's user 65532 that the chart runs it as, and /etc/hexrl for the config.
`--no-log-init` keeps a sparse multi-MB /var/log/lastlog out of the layer."""

VENV_SETUP = """\
python3 -m venv /opt/hexrl
/opt/hexrl/bin/python -m pip install -q --no-index --find-links /tmp/in/wheels --require-hashes \\
  -r /tmp/in/requirements.lock
"""
PROJECT_SETUP = "/opt/hexrl/bin/python -m pip install -q --no-index --no-deps /tmp/in/wheel/*.whl\n"


def _default_source_dir() -> Path:
    """The checkout this module runs from (operator/hexrl/devcluster/images.py → the repository root)."""
    return Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class ImageSettings:
    """What goes into the local images and where they are cached."""

    cache_dir: Path = field(default_factory=lambda: BuildSettings().cache_dir / "images")
    """Layers, image tarballs and the build lock (default ~/.cache/hexrl/images; follows HEXRL_CACHE_DIR)."""
    suite: str = "bookworm"
    """Debian release of the base (bookworm ships Python 3.11, the version of the project's cp311 wheels)."""
    mirror: str | None = field(default_factory=lambda: os.environ.get("HEXRL_DEBIAN_MIRROR") or None)
    """Debian mirror URL (env HEXRL_DEBIAN_MIRROR); default: the one this machine's apt sources use for
    `suite`. Not part of the cache key — every mirror serves the same packages."""
    packages: tuple[str, ...] = ("python3", "python3-venv", "ca-certificates")
    """Debian packages added to the minbase system (python3-venv brings ensurepip for `python3 -m venv`)."""
    source_dir: Path = field(default_factory=_default_source_dir)
    """The hexrl checkout: its pyproject.toml, README.md, operator/, workers/ and requirements/*.lock."""
    registry: str = "hexrl.local"
    """Registry part of the image names (never contacted: the images are imported, never pulled)."""


@dataclass(frozen=True)
class Image:
    """A built image: its name (with a tag derived from its manifest digest), tarball and digest."""

    name: str
    """e.g. `hexrl.local/hexrl-workers:0123456789ab`; what a pod's `image:` names."""
    tar: Path
    """The OCI image tarball (`ctr images import` input)."""
    digest: str
    """`sha256:…` of the manifest: what `ctr images ls` shows for the imported image."""

    @property
    def size(self) -> int:
        return self.tar.stat().st_size


@dataclass(frozen=True)
class Step:
    """One layer: its cache key and how to build its tree on top of the trees of the layers below."""

    name: str
    """Short name, also the folder prefix in the cache (base, venv-workers, project-operator, pause)."""
    key: str
    """Hex hash of everything the layer is made from."""
    describe: str
    """What made the layer, for progress lines and the config's history."""
    build: Callable[[Path, list[Path], Path], None]
    """build(tree, lower trees top-most first, log file)."""

    @property
    def folder(self) -> str:
        return f"{self.name}-{self.key[:16]}"


@dataclass(frozen=True)
class Plan:
    """An image before it is built: its layers' steps and its runtime config (all cheap to compute)."""

    short_name: str
    steps: tuple[Step, ...]
    config: oci.ImageConfig

    @property
    def key(self) -> str:
        return _hash(RECIPE_VERSION, self.short_name, *(s.key for s in self.steps),
                     json.dumps(self.config.as_json(), sort_keys=True))


def _hash(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))  # length-prefixed: ("ab", "c") ≠ ("a", "bc")
        h.update(data)
    return h.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def source_files(source_dir: Path) -> list[Path]:
    """The files the project's wheel is built from (sorted; caches and bytecode left out)."""
    files = [source_dir / name for name in SOURCE_FILES]
    for tree in SOURCE_TREES:
        for path in (source_dir / tree).rglob("*"):
            rel = path.relative_to(source_dir).parts
            if path.is_file() and not _IGNORED_SOURCE_PARTS.intersection(rel) and path.suffix != ".pyc" \
                    and not any(part.endswith(".egg-info") for part in rel):
                files.append(path)
    return sorted(files)


def source_hash(source_dir: Path) -> str:
    """Hash of the project's source files: names and contents (the project layer's input)."""
    parts: list[str | bytes] = []
    for path in source_files(source_dir):
        parts += [str(path.relative_to(source_dir)), path.read_bytes()]
    return _hash(*parts)


class ImageBuilder:
    """Builds the local images, or finds them in the cache. `workers()`, `operator()`, `pause()`."""

    def __init__(
        self, settings: BuildSettings | None = None, progress: Progress = stderr_progress,
        images: ImageSettings | None = None,
    ) -> None:
        self.settings = settings or BuildSettings()
        self.images = images or ImageSettings(cache_dir=self.settings.cache_dir / "images")
        self.progress = progress

    # -------------------------------------------------------------------------------------- public

    def workers(self) -> Image:
        return self.build("workers")

    def operator(self) -> Image:
        return self.build("operator")

    def pause(self) -> Image:
        return self.build("pause")

    def build(self, kind: str) -> Image:
        """The image of `kind` (workers | operator | pause): from the cache, or built now."""
        plan = self.plan(kind)
        cached = self._cached(plan)
        if cached is not None:
            return cached
        with _locked(self.root / ".lock"):
            cached = self._cached(plan)  # another process may have built it while we waited
            if cached is not None:
                return cached
            self._remove_leftovers()
            started = time.monotonic()
            layers = [self._layer(step, plan.steps[:i]) for i, step in enumerate(plan.steps)]
            image = self._assemble(plan, layers)
            self.progress(f"image {image.name}: {_mb(image.size)} in {time.monotonic() - started:.0f}s")
            self.prune()
            return image

    def plan(self, kind: str) -> Plan:
        """The steps and config of an image (no building; reads the lock and source files for the keys)."""
        if kind == "pause":
            return Plan("pause", (self._pause_step(),), _pause_config())
        if kind not in ("workers", "operator"):
            raise DevClusterError(f"unknown image {kind!r}", f"one of {', '.join(IMAGE_KINDS)}")
        base = self._base_step()
        venv = self._venv_step(kind, base)
        project = self._project_step(kind, venv)
        config = _workers_config() if kind == "workers" else _operator_config()
        return Plan(f"hexrl-{kind}", (base, venv, project), config)

    @property
    def root(self) -> Path:
        return self.images.cache_dir

    # --------------------------------------------------------------------------------------- steps

    def _base_step(self) -> Step:
        s = self.images
        key = _hash(RECIPE_VERSION, "base", s.suite, "minbase", *s.packages, BASE_SETUP, *rootfs.BASE_CLEANUP)
        return Step("base", key, f"debootstrap --variant=minbase {s.suite} + {' '.join(s.packages)}", self._build_base)

    def _lock_file(self, kind: str) -> Path:
        lock = self.images.source_dir / "requirements" / f"{kind}.lock"
        if not lock.is_file():
            raise DevClusterError(f"the lock file {lock} is missing", "run `make lock` in the checkout")
        return lock

    def _venv_step(self, kind: str, base: Step) -> Step:
        lock = self._lock_file(kind)
        key = _hash(RECIPE_VERSION, "venv", base.key, lock.read_bytes(), VENV_SETUP)
        return Step(f"venv-{kind}", key, f"venv /opt/hexrl from requirements/{lock.name}",
                    lambda tree, lowers, log: self._build_venv(lock, tree, lowers, log))

    def _project_step(self, kind: str, venv: Step) -> Step:
        if not (self.images.source_dir / "pyproject.toml").is_file():
            raise DevClusterError(f"{self.images.source_dir} is not a hexrl checkout (no pyproject.toml)",
                                  "build the images from a source checkout of hexrl")
        key = _hash(RECIPE_VERSION, "project", venv.key, source_hash(self.images.source_dir), PROJECT_SETUP)
        return Step(f"project-{kind}", key, "hexrl (wheel of the checkout, --no-deps)", self._build_project)

    def _pause_step(self) -> Step:
        source = resources.files("hexrl.devcluster").joinpath("pause.c").read_bytes()
        key = _hash(RECIPE_VERSION, "pause", source, _gcc_version())
        return Step("pause", key, "pause (pause.c, gcc -static)", lambda tree, lowers, log: _build_pause(source, tree, log))

    # ------------------------------------------------------------------------------------ builders

    def _build_base(self, tree: Path, lowers: list[Path], log: Path) -> None:
        s = self.images
        mirror = s.mirror or rootfs.debian_mirror(s.suite)
        self.progress(f"  debootstrap {s.suite} from {mirror} (~2 min the first time)…")
        rootfs.debootstrap(tree, suite=s.suite, mirror=mirror, packages=s.packages, debs=self.root / "debs", log=log)
        rootfs.run_in_root(tree, BASE_SETUP, log=log, what="setting up the base (users, /checkpoints)")
        rootfs.clean_base(tree)

    def _build_venv(self, lock: Path, tree: Path, lowers: list[Path], log: Path) -> None:
        wheels = tree.parent / "wheels"
        self.progress(f"  downloading the wheels of {lock.name} (checked against its hashes)…")
        _host_pip(["download", "-q", "--no-deps", "--only-binary=:all:", "--require-hashes", "-r", str(lock),
                   "-d", str(wheels)], log=log, what=f"downloading the wheels of {lock.name}")
        self.progress(f"  installing them into /opt/hexrl ({_mb(_tree_bytes(wheels))} of wheels)…")
        try:
            rootfs.run_in_overlay(lowers, tree, VENV_SETUP, inputs={"wheels": wheels, "requirements.lock": lock},
                                  log=log, what=f"installing {lock.name} into the image's venv",
                                  env=rootfs.chroot_env(PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1"))
        finally:
            shutil.rmtree(wheels, ignore_errors=True)

    def _build_project(self, tree: Path, lowers: list[Path], log: Path) -> None:
        wheel_dir = tree.parent / "wheel"
        self._build_wheel(wheel_dir, log)
        try:
            rootfs.run_in_overlay(lowers, tree, PROJECT_SETUP, inputs={"wheel": wheel_dir}, log=log,
                                  what="installing hexrl into the image's venv",
                                  env=rootfs.chroot_env(PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1"))
        finally:
            shutil.rmtree(wheel_dir, ignore_errors=True)

    def _build_wheel(self, out: Path, log: Path) -> None:
        """hexrl's wheel from a copy of the source files (the checkout gets no build/ or egg-info from us)."""
        src = out.parent / "src"
        shutil.rmtree(src, ignore_errors=True)
        for path in source_files(self.images.source_dir):
            dest = src / path.relative_to(self.images.source_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        try:
            _host_pip(["wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), str(src)],
                      log=log, what="building the hexrl wheel", hint="the dev install has setuptools: `make install`")
        finally:
            shutil.rmtree(src, ignore_errors=True)

    # ----------------------------------------------------------------------------------- the cache

    def _layer(self, step: Step, below: tuple[Step, ...]) -> oci.Layer:
        """The layer of `step` from the cache, or built now (under the lock, in a temporary folder)."""
        folder = self.root / "layers" / step.folder
        meta = folder / "layer.json"
        if meta.is_file():
            data = json.loads(meta.read_text())
            return oci.Layer(folder / "tree", data["digest"], data["size"], step.describe)
        rootfs.require_root(f"building the {step.name} layer")
        tmp = self.root / "layers" / f".tmp-{step.folder}"
        shutil.rmtree(tmp, ignore_errors=True)
        tree = tmp / "tree"
        tree.mkdir(parents=True)
        lowers = [self.root / "layers" / s.folder / "tree" for s in reversed(below)]
        self.progress(f"layer {step.name}: {step.describe}…")
        started = time.monotonic()
        step.build(tree, lowers, tmp / "build.log")
        digest, size = oci.measure_tree(tree)
        (tmp / "layer.json").write_text(json.dumps({"digest": digest, "size": size, "step": step.name,
                                                    "describe": step.describe}))
        tmp.rename(folder)
        self.progress(f"layer {step.name}: {_mb(size)} in {time.monotonic() - started:.0f}s")
        return oci.Layer(folder / "tree", digest, size, step.describe)

    def _record(self, plan: Plan) -> Path:
        return self.root / f"{plan.short_name}.{plan.key[:16]}.json"

    def _cached(self, plan: Plan) -> Image | None:
        record = self._record(plan)
        if not record.is_file():
            return None
        data = json.loads(record.read_text())
        image = Image(data["name"], self.root / data["tar"], data["digest"])
        return image if image.tar.is_file() else None

    def _assemble(self, plan: Plan, layers: list[oci.Layer]) -> Image:
        digest = oci.manifest_digest(layers, plan.config)
        tag = digest.removeprefix("sha256:")[:12]
        name = f"{self.images.registry}/{plan.short_name}:{tag}"
        tar = self.root / f"{plan.short_name}-{tag}.oci.tar"
        if not tar.is_file():
            self.progress(f"writing {name} ({_mb(sum(layer.size for layer in layers))})…")
            tmp = tar.with_name(f".{tar.name}.tmp")
            try:
                with open(tmp, "wb") as out:
                    written = oci.write_image(out, layers, plan.config, name)
            except oci.LayerChanged as e:
                tmp.unlink(missing_ok=True)
                for step in plan.steps:  # some tree was modified: rebuild its layers next time
                    shutil.rmtree(self.root / "layers" / step.folder, ignore_errors=True)
                raise DevClusterError(str(e), "run the build again; the changed layers are rebuilt") from None
            assert written == digest
            tmp.rename(tar)
        # Names relative to the cache folder: the folder can be moved or copied to another machine.
        record = {"name": name, "tar": tar.name, "digest": digest, "layers": [s.folder for s in plan.steps]}
        tmp_record = self._record(plan).with_suffix(".tmp")
        tmp_record.write_text(json.dumps(record, indent=2))
        tmp_record.rename(self._record(plan))
        return Image(name, tar, digest)

    def _remove_leftovers(self) -> None:
        """Temporary files of interrupted builds (only ever called under the lock)."""
        for tmp in [*self.root.glob("layers/.tmp-*"), *self.root.glob(".*.tmp"), *self.root.glob("*.tmp")]:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)

    def prune(self) -> None:
        """Keep the newest image of each name and the layers it uses; delete older images and layers."""
        newest: dict[str, tuple[float, Path]] = {}
        records = sorted(self.root.glob("*.json"))
        for record in records:
            short = record.name.split(".", 1)[0]
            mtime = record.stat().st_mtime
            if short not in newest or mtime > newest[short][0]:
                newest[short] = (mtime, record)
        keep_layers: set[str] = set()
        keep_tars: set[str] = set()
        for _, record in newest.values():
            data = json.loads(record.read_text())
            keep_layers.update(data["layers"])
            keep_tars.add(Path(data["tar"]).name)
        for record in records:
            if all(record != r for _, r in newest.values()):
                record.unlink(missing_ok=True)
        for tar in self.root.glob("*.oci.tar"):
            if tar.name not in keep_tars:
                tar.unlink(missing_ok=True)
        for layer in self.root.glob("layers/*"):
            if layer.name not in keep_layers and not layer.name.startswith("."):
                shutil.rmtree(layer, ignore_errors=True)


# ------------------------------------------------------------------------------------------- configs


def _workers_config() -> oci.ImageConfig:
    return oci.ImageConfig(
        entrypoint=("python", "-m", "hexrl_workers"),
        cmd=("rollout",),
        env=(f"PATH={IMAGE_PATH}", "LANG=C.UTF-8", "PYTHONUNBUFFERED=1", "HEXRL_CONFIG=/etc/hexrl/config.yaml",
             "HF_HUB_OFFLINE=1", "OMP_NUM_THREADS=1"),
        user=str(WORKER_UID),
        # coordinator, weight service (trainer rank 0), relay (rollout), trainer metrics
        exposed_ports=(8000, 8001, 8002, 8003),
        labels=(("org.opencontainers.image.title", "hexrl-workers"), ("dev.hexrl.recipe", RECIPE_VERSION)),
    )


def _operator_config() -> oci.ImageConfig:
    return oci.ImageConfig(
        # The chart runs `hexrl operator --all-namespaces|--namespace=… --metrics-port … --health-port …`
        # (its own command and args); without a kubeconfig the operator uses the in-cluster config.
        entrypoint=("hexrl", "operator"),
        env=(f"PATH={IMAGE_PATH}", "LANG=C.UTF-8", "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1", "HOME=/tmp"),
        user=f"{OPERATOR_UID}:{OPERATOR_UID}",
        working_dir="/tmp",
        exposed_ports=(8080, 8081),  # metrics, health (the chart's defaults)
        labels=(("org.opencontainers.image.title", "hexrl-operator"), ("dev.hexrl.recipe", RECIPE_VERSION)),
    )


def _pause_config() -> oci.ImageConfig:
    return oci.ImageConfig(entrypoint=("/pause",), user=f"{PAUSE_UID}:{PAUSE_UID}",
                           labels=(("org.opencontainers.image.title", "hexrl-pause"),))


# ----------------------------------------------------------------------------------------- helpers


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _host_pip(args: list[str], *, log: Path, what: str, hint: str = "") -> None:
    """The host's pip (the dev install's, which runs this code), output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONWARNINGS": "ignore::UserWarning"}  # setuptools' notes on editable checkouts
    with open(log, "ab") as out:
        proc = subprocess.run([sys.executable, "-m", "pip", *args], stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-rootfs.LOG_TAIL_LINES:]
        raise DevClusterError(f"{what} failed (exit {proc.returncode}):\n    " + "\n    ".join(tail),
                              hint or f"full log: {log}")


def _gcc_version() -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        return "no gcc"  # _build_pause says what to install; the key only has to differ from a real one
    return subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout.split("\n", 1)[0]


def _build_pause(source: bytes, tree: Path, log: Path) -> None:
    gcc = rootfs.require_tool("gcc", "gcc libc6-dev")
    src = tree.parent / "pause.c"
    src.write_bytes(source)
    with open(log, "ab") as out:
        proc = subprocess.run([gcc, "-static", "-Os", "-s", "-Wall", "-o", str(tree / "pause"), str(src)],
                              stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise DevClusterError(f"compiling pause.c failed: {log.read_text(errors='replace')[-2000:]}",
                              "a static build needs the C library's static archive: apt-get install libc6-dev")
    (tree / "pause").chmod(0o755)


# -------------------------------------------------------------------------------------- containerd


def _ctr(ctr: str, address: str, namespace: str, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ctr, "--address", address, "--namespace", namespace, *args],
                          capture_output=True, text=True, timeout=timeout)


def has_image(image: Image, *, ctr: str, address: str, namespace: str = "k8s.io") -> bool:
    """Whether that containerd already holds `image.name` pointing at `image.digest`."""
    proc = _ctr(ctr, address, namespace, "images", "ls", f"name=={image.name}", timeout=60)
    if proc.returncode != 0:
        raise DevClusterError(f"`ctr images ls` on {address} failed: {proc.stderr.strip()}",
                              "is that node's containerd running?")
    for line in proc.stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3 and cols[0] == image.name and cols[2] == image.digest:
            return True
    return False


def load_image(image: Image, *, ctr: str, address: str, namespace: str = "k8s.io") -> bool:
    """Import `image` into the containerd at `address` (unpacked for its default snapshotter).

    Idempotent: nothing is done when that containerd already has the name at that digest. Returns True when
    it imported, False when the image was already there.
    """
    if has_image(image, ctr=ctr, address=address, namespace=namespace):
        return False
    proc = _ctr(ctr, address, namespace, "images", "import", str(image.tar))
    if proc.returncode != 0 or not has_image(image, ctr=ctr, address=address, namespace=namespace):
        raise DevClusterError(f"`ctr images import {image.tar}` into {address} failed: "
                              f"{(proc.stderr or proc.stdout).strip() or 'the image is not listed afterwards'}",
                              "rebuild it (`hexrl cluster images`) and check the containerd's log")
    return True
