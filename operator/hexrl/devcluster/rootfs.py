"""Root file systems for the local images: debootstrap, and commands run in a chroot over overlay layers.

Every mount lives in a private mount namespace (`unshare --mount`) owned by the one shell that needs it, so
the mounts vanish with that shell — also when the build is interrupted or killed — and nothing is ever left
mounted on the host. Steps after the base run in a chroot whose root is an overlay mount: the lower layers
read-only, an empty upper directory collecting exactly what the step changed; that upper directory is the
next image layer (`hexrl.devcluster.oci` turns overlay whiteouts into OCI ones).

The Debian mirror is the machine's own (its apt sources), so the build reaches the same package registry
apt-get does and no host name is written into the project.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from hexrl.devcluster.errors import DevClusterError

APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOG_TAIL_LINES = 25


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise DevClusterError(
            f"{what} needs root (debootstrap, chroot and overlay mounts)",
            "run it as root (e.g. `sudo -E .venv/bin/hexrl cluster images`); a cached image needs no root",
        )


def require_tool(name: str, package: str) -> str:
    """The path of a host program, or a DevClusterError naming the Debian package to install."""
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.exists()), None
    )
    if found is None:
        raise DevClusterError(f"{name} is not installed (needed to build the local images)",
                              f"apt-get install {package}")
    return found


# ----------------------------------------------------------------------------------------- the mirror


def _one_line_sources(text: str) -> Iterable[tuple[str, list[str]]]:
    """(URI, suites) of `deb` lines in the one-line format: `deb [options] URI suite components…`."""
    for line in text.splitlines():
        words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            yield words[1], [words[2]]


def _deb822_sources(text: str) -> Iterable[tuple[str, list[str]]]:
    """(URI, suites) of enabled `Types: deb` stanzas in the deb822 format (*.sources)."""
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split()


def debian_mirror(suite: str, sources: Iterable[Path] = APT_SOURCES) -> str:
    """The URI of the first apt source that serves `suite` (e.g. bookworm) on this machine."""
    files: list[Path] = []
    for src in sources:
        if src.is_dir():
            files += sorted(p for p in src.iterdir() if p.suffix in (".list", ".sources"))
        elif src.is_file():
            files.append(src)
    for path in files:
        text = path.read_text(errors="replace")
        parsed = _deb822_sources(text) if path.suffix == ".sources" else _one_line_sources(text)
        for uri, suites in parsed:
            if suite in suites:
                return uri
    raise DevClusterError(
        f"no apt source on this machine serves Debian {suite} (looked in {', '.join(map(str, files)) or 'nothing'})",
        "set HEXRL_DEBIAN_MIRROR to a Debian mirror URL, or add the suite to /etc/apt/sources.list",
    )


# ------------------------------------------------------------------------------------ namespaced shells


def _fail(what: str, code: int, log: Path) -> DevClusterError:
    tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:] if log.exists() else []
    return DevClusterError(
        f"{what} failed (exit {code}); its last lines:\n    " + "\n    ".join(tail),
        f"full log: {log}",
    )


def run_namespaced(script: str, *, log: Path, what: str, env: Mapping[str, str] | None = None) -> None:
    """Run a shell script in a private mount namespace (its mounts die with it); output appended to `log`."""
    unshare = require_tool("unshare", "util-linux")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.run(
            [unshare, "--mount", "--propagation", "private", "/bin/sh", "-euc", script],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
        )
    if proc.returncode != 0:
        raise _fail(what, proc.returncode, log)


def chroot_script(root: str, command: str, env: Mapping[str, str]) -> str:
    """A shell line that runs `command` with /bin/sh inside `root`, with exactly `env` set."""
    assigns = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    return f"chroot {shlex.quote(root)} /usr/bin/env -i {assigns} /bin/sh -euc {shlex.quote(command)}"


def system_mounts(root: str) -> str:
    """Mount /proc, the host's /dev and a fresh /tmp inside `root` (inside the namespace only)."""
    r = shlex.quote(root)
    return "\n".join([
        f"mount -t proc proc {r}/proc",
        f"mount --bind /dev {r}/dev",
        f"mount -t tmpfs -o mode=1777 tmpfs {r}/tmp",
    ])


def bind_inputs(root: str, inputs: Mapping[str, Path]) -> str:
    """Bind each host path read-only at /tmp/in/<name> inside `root` (after `system_mounts`: on the tmpfs)."""
    lines = []
    for name, src in inputs.items():
        dest = shlex.quote(f"{root}/tmp/in/{name}")
        make = f"mkdir -p {dest}" if src.is_dir() else f"mkdir -p $(dirname {dest}) && touch {dest}"
        lines += [make, f"mount --bind {shlex.quote(str(src))} {dest}", f"mount -o remount,bind,ro {dest}"]
    return "\n".join(lines)


def chroot_env(**extra: str) -> dict[str, str]:
    """The environment of every step in a chroot: nothing from the host leaks in (no PIP_* settings, no
    proxies), and Python writes no bytecode caches for the interpreter's own modules into the layer."""
    return {"PATH": CHROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", **extra}


def run_in_overlay(
    lowers: list[Path], upper: Path, command: str, *, inputs: Mapping[str, Path], log: Path, what: str,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run `command` in a chroot whose root is overlay(lowers, upper): what it changes lands in `upper`.

    `lowers` go top-most first (overlayfs order); `inputs` are bound read-only at /tmp/in/<name>.
    """
    upper.mkdir(parents=True, exist_ok=True)
    scratch = upper.parent / (upper.name + ".mnt")
    work, merged = scratch / "work", scratch / "merged"
    shutil.rmtree(scratch, ignore_errors=True)
    work.mkdir(parents=True)
    merged.mkdir()
    opts = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"
    script = "\n".join([
        f"mount -t overlay overlay -o {shlex.quote(opts)} {shlex.quote(str(merged))}",
        system_mounts(str(merged)),
        bind_inputs(str(merged), inputs),
        chroot_script(str(merged), command, env or chroot_env()),
    ])
    try:
        run_namespaced(script, log=log, what=what)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_in_root(root: Path, command: str, *, log: Path, what: str) -> None:
    """Run `command` in a chroot of the plain directory `root` (the base layer, before any overlay)."""
    script = "\n".join([system_mounts(str(root)), chroot_script(str(root), command, chroot_env())])
    run_namespaced(script, log=log, what=what)


# ------------------------------------------------------------------------------------------ debootstrap


def debootstrap(target: Path, *, suite: str, mirror: str, packages: Iterable[str], debs: Path, log: Path) -> None:
    """A minimal Debian `suite` in `target` (variant minbase) with `packages`; .debs cached in `debs`."""
    tool = require_tool("debootstrap", "debootstrap")
    debs.mkdir(parents=True, exist_ok=True)
    cmd = [tool, "--variant=minbase", f"--include={','.join(packages)}", f"--cache-dir={debs}",
           suite, str(target), mirror]
    # debootstrap mounts /proc and /sys in the target itself; the namespace makes sure they never outlive it.
    run_namespaced(shlex.join(cmd), log=log, what=f"debootstrap {suite}")


BASE_CLEANUP = (
    # Provided by the runtime at start (runc mounts /dev, /proc, /sys; containerd/kubelet bind-mount the
    # files), or apt/dpkg state a container never needs: dropping them keeps the base layer small and free
    # of anything host-specific (bootstrap.log names the mirror).
    "dev/*", "proc/*", "sys/*", "tmp/*", "etc/resolv.conf", "etc/hostname", "etc/machine-id",
    "var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
    "var/cache/apt/archives/partial/*", "var/cache/debconf/*-old", "var/log/*.log", "var/log/apt/*",
    "root/.cache",
)


def clean_base(root: Path) -> None:
    """Delete `BASE_CLEANUP` from a debootstrapped tree."""
    for pattern in BASE_CLEANUP:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
