"""The local images in a real containerd: import the operator and pause images and run them (the workers
image runs in pods on real nodes, tests/e2e/realnodes; here only its configuration is checked).

A private containerd (Debian's 1.6, as on the real nodes) runs for this module only: its own root, state
and socket under a fresh /tmp folder, the CRI plugin off (`ctr` drives it directly). `ctr run` asks for no
oom_score_adj, which matters here: this machine withholds CAP_SYS_RESOURCE, so a negative one would fail.
When the module ends, containerd is stopped and the fixture checks that nothing is left mounted under its
folder (/proc/self/mountinfo) before removing it.

The images come from the default cache (~/.cache/hexrl/images, as `make images` and the real nodes use);
the first build of the workers image takes several minutes (debootstrap, then torch and its CUDA wheels).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hexrl.devcluster.images import Image, ImageBuilder, has_image, load_image

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "k8s.io"


@dataclass
class Containerd:
    ctr: str
    address: str
    folder: Path

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.ctr, "--address", self.address, "--namespace", NAMESPACE, *args],
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([self.ctr, "--address", self.address, "--namespace", NAMESPACE, *args],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _mounts_under(folder: Path) -> list[str]:
    prefix = str(folder)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _processes_mentioning(folder: Path) -> list[int]:
    """Our containerd's shims (started with `-address <our socket>`), found by their command lines."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(folder).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return [p for p in pids if p != os.getpid()]


CONFIG = """\
version = 2
root = "{folder}/root"
state = "{folder}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{folder}/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{folder}/opt"
"""


def _stop(containerd: Containerd, proc: subprocess.Popen[bytes]) -> None:
    """Remove every task and container, stop containerd, end its leftover shims."""
    for cid in containerd.run("containers", "ls", "-q", check=False).stdout.split():
        containerd.run("task", "kill", "-s", "SIGKILL", cid, check=False, timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # a task can be deleted only once it has stopped
            gone = containerd.run("task", "delete", cid, check=False, timeout=30)
            if gone.returncode == 0 or "not found" in gone.stderr:
                break
            time.sleep(0.2)
        containerd.run("containers", "delete", cid, check=False, timeout=30)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pid in _processes_mentioning(containerd.folder):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    binary, ctr = shutil.which("containerd"), shutil.which("ctr")
    assert binary and ctr, "containerd/ctr missing: apt-get install containerd runc"
    # Short path: a unix socket's path is limited to 108 bytes (pytest's tmp_path can be longer).
    folder = Path(tempfile.mkdtemp(prefix="hexrl-ctd-", dir="/tmp"))
    (folder / "config.toml").write_text(CONFIG.format(folder=folder))
    log = open(folder / "containerd.log", "wb")  # noqa: SIM115  (closed in the finally below)
    proc = subprocess.Popen([binary, "--config", str(folder / "config.toml")], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    c = Containerd(ctr, str(folder / "containerd.sock"), folder)
    try:
        deadline = time.monotonic() + 30
        while c.run("version", check=False, timeout=10).returncode != 0:
            assert proc.poll() is None, f"containerd exited: {(folder / 'containerd.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "containerd did not answer within 30 s"
            time.sleep(0.2)
        yield c
    finally:
        _stop(c, proc)
        log.close()
        left = _mounts_under(folder)
        for point in reversed(left):  # never leave the machine dirty, even when the check below fails
            subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(folder, ignore_errors=True)
        assert left == [], f"still mounted after containerd stopped: {left}"
        assert not folder.exists()


@pytest.fixture(scope="module")
def builder() -> ImageBuilder:
    return ImageBuilder()


def _image_config(image: Image) -> dict[str, Any]:
    """The config blob of an image tarball (members are skipped by seeking, so this is quick)."""
    with tarfile.open(image.tar) as tar:
        def read(name: str) -> Any:
            f = tar.extractfile(name)
            assert f is not None
            return json.loads(f.read())

        index = read("index.json")
        manifest = read("blobs/sha256/" + index["manifests"][0]["digest"].removeprefix("sha256:"))
        return read("blobs/sha256/" + manifest["config"]["digest"].removeprefix("sha256:"))  # type: ignore[no-any-return]


def test_workers_image_config_matches_the_dockerfile(builder: ImageBuilder) -> None:
    """The workers image's configuration, read from its tarball. Importing and running its 6.6 GB here as
    well would cost ~4 min and ~13 GB more: tests/e2e/realnodes runs it for real, in pods on real nodes
    (torch training as uid 10001, the coordinator, the weight service and the rollout workers)."""
    image = builder.workers()
    config = _image_config(image)["config"]
    assert config["Entrypoint"] == ["python", "-m", "hexrl_workers"] and config["Cmd"] == ["rollout"]
    assert config["User"] == "10001" and set(config["ExposedPorts"]) == {f"{p}/tcp" for p in range(8000, 8004)}
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PATH"].startswith("/opt/hexrl/bin:") and env["HEXRL_CONFIG"] == "/etc/hexrl/config.yaml"
    assert env["HF_HUB_OFFLINE"] == "1" and env["OMP_NUM_THREADS"] == "1" and env["PYTHONUNBUFFERED"] == "1"


@pytest.mark.timeout(3600)
def test_operator_image_runs_hexrl_operator(containerd: Containerd, builder: ImageBuilder) -> None:
    image = builder.operator()
    config = _image_config(image)["config"]
    assert config["Entrypoint"] == ["hexrl", "operator"] and config["User"] == "65532:65532"
    load_image(image, ctr=containerd.ctr, address=containerd.address)
    assert has_image(image, ctr=containerd.ctr, address=containerd.address)
    # As the chart runs it: read-only root file system, its own uid, HOME=/tmp.
    out = containerd.run("run", "--rm", "--read-only", image.name, "operator-help", "hexrl", "operator", "--help",
                         timeout=300).stdout
    assert "--all-namespaces" in out and "--health-port" in out
    probe = "import kopf, kubernetes, hexrl.k8s.main, os; print('uid', os.getuid())"
    out = containerd.run("run", "--rm", "--read-only", image.name, "operator-probe", "python", "-c", probe,
                         timeout=300).stdout
    assert "uid 65532" in out


def test_pause_image_runs_until_sigterm_and_exits_0(containerd: Containerd, builder: ImageBuilder) -> None:
    image = builder.pause()
    load_image(image, ctr=containerd.ctr, address=containerd.address)
    run = containerd.popen("run", "--rm", image.name, "pause-probe")
    try:
        deadline = time.monotonic() + 60
        while "RUNNING" not in containerd.run("task", "ls", check=False).stdout:
            assert run.poll() is None, f"pause exited early: {run.stdout.read() if run.stdout else ''}"
            assert time.monotonic() < deadline, "the pause container did not start"
            time.sleep(0.2)
        time.sleep(0.5)
        assert run.poll() is None, "pause must keep running until it is signalled"
        containerd.run("task", "kill", "-s", "SIGTERM", "pause-probe")
        assert run.wait(timeout=30) == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
