"""The local image builder without Debian or containerd: OCI layout, whiteouts, cache keys, warm builds.

The layout is checked by an independent reader (below), not by the writer's own functions: every blob's
sha256 matches its name and the size its descriptor gives, the config's diff_ids are the sha256 of the
uncompressed layers, and index.json names the image the way `ctr images import` reads it. The real pause
image (gcc only, well under a second) stands in for the big images where a real build is needed; the
workers image itself is built, imported and run in tests/e2e/test_images_in_containerd.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hexrl.devcluster import oci, rootfs
from hexrl.devcluster.errors import DevClusterError
from hexrl.devcluster.images import ImageBuilder, ImageSettings, source_hash

ROOT = Path(__file__).resolve().parents[2]


def read_layout(tar_path: Path) -> dict[str, Any]:
    """Check an OCI image tarball and return {name, manifest, config, layers: [TarFile members]}."""
    with tarfile.open(tar_path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1], f"{name}: content does not match"

    def blob(desc: dict[str, Any]) -> bytes:
        data = files["blobs/sha256/" + desc["digest"].removeprefix("sha256:")]
        assert len(data) == desc["size"], f"{desc['digest']}: size {len(data)} ≠ descriptor {desc['size']}"
        return data

    index = json.loads(files["index.json"])
    assert index["schemaVersion"] == 2 and len(index["manifests"]) == 1
    desc = index["manifests"][0]
    name = desc["annotations"][oci.REF_NAME]
    assert desc["annotations"][oci.CONTAINERD_NAME] == name
    assert desc["mediaType"] == oci.MANIFEST_MEDIA_TYPE
    manifest = json.loads(blob(desc))
    config = json.loads(blob(manifest["config"]))
    layers = [blob(layer) for layer in manifest["layers"]]
    assert all(layer["mediaType"] == oci.LAYER_MEDIA_TYPE for layer in manifest["layers"])
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(data).hexdigest() for data in layers]
    assert len(config["history"]) == len(layers)
    members = []
    for data in layers:
        with tarfile.open(fileobj=io.BytesIO(data)) as layer_tar:
            members.append(layer_tar.getmembers())
    return {"name": name, "digest": desc["digest"], "manifest": manifest, "config": config, "layers": members,
            "layer_bytes": layers}


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _layer(tree: Path) -> oci.Layer:
    digest, size = oci.measure_tree(tree)
    return oci.Layer(tree, digest, size, f"test {tree.name}")


def test_image_layout_is_valid_and_converts_overlay_whiteouts(tmp_path: Path) -> None:
    base = _tree(tmp_path / "base", {"etc/a.conf": "a", "etc/gone": "x", "opt/old/f": "old", "usr/bin/tool": "#!"})
    (base / "usr/bin/tool").chmod(0o755)
    os.symlink("tool", base / "usr/bin/alias")
    os.link(base / "usr/bin/tool", base / "usr/bin/hard")
    upper = _tree(tmp_path / "upper", {"etc/new.conf": "n", "opt/old/g": "fresh"})
    os.mknod(upper / "etc/gone", stat.S_IFCHR | 0o600, 0)  # overlay's whiteout: etc/gone was deleted
    os.setxattr(upper / "opt/old", "trusted.overlay.opaque", b"y")  # opt/old was replaced as a whole
    layers = [_layer(base), _layer(upper)]
    config = oci.ImageConfig(entrypoint=("/usr/bin/tool",), cmd=("x",), env=("A=1",), user="10001",
                             exposed_ports=(8000,))
    out = tmp_path / "image.tar"
    with open(out, "wb") as f:
        digest = oci.write_image(f, layers, config, "hexrl.local/test:abc")

    layout = read_layout(out)
    assert layout["name"] == "hexrl.local/test:abc" and layout["digest"] == digest
    assert digest == oci.manifest_digest(layers, config)
    cfg = layout["config"]["config"]
    assert cfg["Entrypoint"] == ["/usr/bin/tool"] and cfg["Cmd"] == ["x"] and cfg["User"] == "10001"
    assert cfg["ExposedPorts"] == {"8000/tcp": {}} and layout["config"]["os"] == "linux"
    lower_members = {m.name: m for m in layout["layers"][0]}
    assert lower_members["usr/bin/hard"].mode == 0o755 and lower_members["usr/bin/alias"].issym()
    # Hard links: the first name in sorted order carries the content, the later ones link to it.
    assert lower_members["usr/bin/tool"].islnk() and lower_members["usr/bin/tool"].linkname == "usr/bin/hard"
    assert all(m.uname == "" and m.gname == "" for m in layout["layers"][0])
    upper_names = [m.name for m in layout["layers"][1]]
    assert "etc/.wh.gone" in upper_names and "etc/gone" not in upper_names
    assert "opt/old/.wh..wh..opq" in upper_names and "opt/old/g" in upper_names
    assert upper_names.index("opt/old") < upper_names.index("opt/old/.wh..wh..opq")


def test_layer_tar_is_deterministic_and_a_changed_tree_is_caught(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t", {"a/b": "1", "c": "2"})
    layer = _layer(tree)
    assert oci.measure_tree(tree) == (layer.digest, layer.size)
    (tree / "c").write_text("3")
    with pytest.raises(oci.LayerChanged), open(tmp_path / "x.tar", "wb") as f:
        oci.write_image(f, [layer], oci.ImageConfig(), "hexrl.local/x:1")


# ----------------------------------------------------------------------------------------- cache keys


def _checkout(root: Path) -> Path:
    """A minimal hexrl-shaped checkout: what the image keys read."""
    _tree(root, {"pyproject.toml": "[project]\nname='hexrl'\n", "README.md": "hi",
                 "operator/hexrl/__init__.py": "", "operator/hexrl/x.py": "X = 1\n",
                 "workers/hexrl_workers/__init__.py": "",
                 "requirements/workers.lock": "torch==1 \\\n    --hash=sha256:00\n",
                 "requirements/operator.lock": "pyyaml==6 \\\n    --hash=sha256:00\n"})
    return root


def _keys(builder: ImageBuilder, kind: str = "workers") -> dict[str, str]:
    return {s.name: s.key for s in builder.plan(kind).steps} | {"image": builder.plan(kind).key}


def test_project_source_change_changes_only_the_project_layer(tmp_path: Path) -> None:
    src = _checkout(tmp_path / "src")
    builder = ImageBuilder(progress=lambda _: None, images=ImageSettings(cache_dir=tmp_path / "c", source_dir=src))
    before = _keys(builder)
    # Not inputs: mtimes, bytecode, caches.
    os.utime(src / "operator/hexrl/x.py", (1, 1))
    _tree(src, {"operator/hexrl/__pycache__/x.cpython-311.pyc": "junk", "workers/.mypy_cache/y": "z",
                "operator/hexrl.egg-info/PKG-INFO": "p"})
    assert _keys(builder) == before
    (src / "operator/hexrl/x.py").write_text("X = 2\n")
    after = _keys(builder)
    assert after["base"] == before["base"] and after["venv-workers"] == before["venv-workers"]
    assert after["project-workers"] != before["project-workers"] and after["image"] != before["image"]
    _tree(src, {"workers/hexrl_workers/new.py": ""})  # a new file is an input too
    assert _keys(builder)["project-workers"] != after["project-workers"]


def test_lock_change_rebuilds_venv_and_project_but_not_base(tmp_path: Path) -> None:
    src = _checkout(tmp_path / "src")
    builder = ImageBuilder(progress=lambda _: None, images=ImageSettings(cache_dir=tmp_path / "c", source_dir=src))
    before, operator_before = _keys(builder), _keys(builder, "operator")
    (src / "requirements/workers.lock").write_text("torch==2 \\\n    --hash=sha256:01\n")
    after = _keys(builder)
    assert after["base"] == before["base"]
    assert after["venv-workers"] != before["venv-workers"] and after["project-workers"] != before["project-workers"]
    assert _keys(builder, "operator") == operator_before  # the operator image does not use workers.lock
    assert builder.plan("operator").steps[0].key == builder.plan("workers").steps[0].key  # one shared base


def test_source_hash_covers_the_files_the_wheel_is_built_from(tmp_path: Path) -> None:
    src = _checkout(tmp_path / "src")
    h = source_hash(src)
    (src / "README.md").write_text("changed")  # the wheel's long description
    assert source_hash(src) != h


def test_missing_lock_says_how_to_make_it(tmp_path: Path) -> None:
    src = _checkout(tmp_path / "src")
    (src / "requirements/operator.lock").unlink()
    builder = ImageBuilder(progress=lambda _: None, images=ImageSettings(cache_dir=tmp_path / "c", source_dir=src))
    with pytest.raises(DevClusterError, match=r"operator\.lock is missing") as e:
        builder.plan("operator")
    assert "make lock" in e.value.hint


# ------------------------------------------------------------------------------------ real pause builds


def _pause_builder(cache: Path, lines: list[str]) -> ImageBuilder:
    return ImageBuilder(progress=lines.append, images=ImageSettings(cache_dir=cache, source_dir=ROOT))


def test_pause_image_is_valid_and_a_warm_build_rewrites_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    first = _pause_builder(tmp_path / "c", lines).pause()
    layout = read_layout(first.tar)
    assert layout["name"] == first.name and layout["digest"] == first.digest
    assert first.name.startswith("hexrl.local/pause:") and first.name.endswith(first.digest[7:19])
    assert [m.name for m in layout["layers"][0]] == ["pause"]
    assert layout["config"]["config"]["Entrypoint"] == ["/pause"]
    before = first.tar.stat()

    lines.clear()
    second = _pause_builder(tmp_path / "c", lines).pause()
    after = second.tar.stat()
    assert second == first and lines == []  # nothing built, nothing said
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_interrupted_build_leaves_no_half_layer_or_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hexrl.devcluster import images

    def broken(source: bytes, tree: Path, log: Path) -> None:
        (tree / "pause").write_bytes(source[:10])  # half a result, then the build dies
        raise KeyboardInterrupt

    monkeypatch.setattr(images, "_build_pause", broken)
    cache = tmp_path / "c"
    with pytest.raises(KeyboardInterrupt):
        _pause_builder(cache, []).pause()
    assert not list(cache.glob("layers/pause-*")) and not list(cache.glob("*.oci.tar"))
    assert not list(cache.glob("*.json"))
    monkeypatch.undo()
    image = _pause_builder(cache, []).pause()  # the next build cleans up and succeeds
    read_layout(image.tar)
    assert not list(cache.glob("layers/.tmp-*"))


def test_prune_keeps_only_the_newest_image_and_its_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hexrl.devcluster import images

    cache = tmp_path / "c"
    old = _pause_builder(cache, []).pause()
    config = images._pause_config()
    changed = oci.ImageConfig(entrypoint=config.entrypoint, user=config.user, labels=(("test", "next"),))
    monkeypatch.setattr(images, "_pause_config", lambda: changed)  # a new config: new key, new image
    new = _pause_builder(cache, []).pause()
    assert new.name != old.name and new.tar.is_file() and not old.tar.exists()
    assert len(list(cache.glob("layers/pause-*"))) == 1 and len(list(cache.glob("pause.*.json"))) == 1


# ------------------------------------------------------------------------------------------ the mirror


def test_debian_mirror_comes_from_the_apt_sources(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\nTypes: deb deb-src\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    (d / "other.list.disabled").write_text("deb http://wrong.example/debian bookworm main\n")
    assert rootfs.debian_mirror("bookworm", [tmp_path / "none", d]) == "http://mirror.example/debian"
    one_line = tmp_path / "sources.list"
    one_line.write_text("# deb http://old.example/debian bookworm main\ndeb [arch=amd64] http://m.example/d bookworm main\n")
    assert rootfs.debian_mirror("bookworm", [one_line]) == "http://m.example/d"
    with pytest.raises(DevClusterError, match="no apt source") as e:
        rootfs.debian_mirror("trixie", [one_line, d])
    assert "HEXRL_DEBIAN_MIRROR" in e.value.hint


def test_missing_tools_and_root_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DevClusterError, match="hexrl-no-such-tool is not installed") as e:
        rootfs.require_tool("hexrl-no-such-tool", "debootstrap")
    assert e.value.hint == "apt-get install debootstrap"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(DevClusterError, match="needs root") as e:
        rootfs.require_root("building the base layer")
    assert "sudo" in e.value.hint


# ---------------------------------------------------------------------------------------- the pause program


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_pause_reaps_orphans_as_pid_1_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    """pause as PID 1 of a new PID namespace (as in a pod sharing its PID namespace): an orphan handed to it
    is reaped when it exits (no zombie stays), and SIGTERM ends it with status 0."""
    binary = tmp_path / "pause"
    subprocess.run(["gcc", "-static", "-Os", "-o", str(binary), str(ROOT / "operator/hexrl/devcluster/pause.c")],
                   check=True)
    assert subprocess.run([str(binary), "-v"], capture_output=True, text=True).stdout.startswith("hexrl-pause")
    ns = subprocess.Popen(["unshare", "--pid", "--fork", str(binary)])
    pause = 0
    try:
        _wait_for("pause did not start", lambda: len(_children(ns.pid)) == 1)
        pause = _children(ns.pid)[0]
        # A shell in pause's PID namespace starts `sleep` and exits: the orphaned sleep becomes pause's child.
        subprocess.run(["nsenter", "-t", str(pause), "-p", "sh", "-c", "sleep 1 & exit 0"], check=True)
        _wait_for("the orphan was not handed to pause", lambda: len(_children(pause)) == 1)
        _wait_for("pause left a zombie behind", lambda: _children(pause) == [], timeout=15)
        os.kill(pause, signal.SIGTERM)
        assert ns.wait(timeout=10) == 0
    finally:
        if ns.poll() is None:  # a failed check: end pause (and with it its namespace), then unshare
            if pause:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pause, signal.SIGKILL)
            ns.kill()
            ns.wait()
