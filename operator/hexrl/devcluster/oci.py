"""OCI image layouts written by our own code: layer tars from directory trees, config, manifest, index.

The image builder (`hexrl.devcluster.images`) produces directory trees — a debootstrapped root file system,
then the upper directories of overlay mounts in which later steps ran — and this module turns them into one
OCI image tarball that `ctr images import` accepts:

    oci-layout                       {"imageLayoutVersion": "1.0.0"}
    index.json                       one manifest, named by `org.opencontainers.image.ref.name` and
                                     `io.containerd.image.name` (containerd 1.6 takes the name from these)
    blobs/sha256/<hex>               each layer (an uncompressed tar), the config, the manifest

Layers are uncompressed (`application/vnd.oci.image.layer.v1.tar`), so a layer's digest is also its
`diff_id`: compressing gigabytes of wheels costs minutes and saves nothing when the tarball never leaves
this machine.

A layer tar is *generated* from its tree every time it is needed rather than kept as a second copy of the
tree (the workers' Python environment is several GB). The generation is deterministic — entries in sorted
order, owner ids and modes and whole-second mtimes from the tree, no user or group names, no atime — so the
digest measured once (`measure_tree`) holds for every later copy, and `write_image` checks it again while
copying. Overlay upper directories mark deletions with their own whiteouts (a 0/0 character device, an
`trusted.overlay.opaque` directory); these become the OCI whiteouts `.wh.<name>` and `.wh..wh..opq`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
_OPAQUE_XATTR = "trusted.overlay.opaque"
_REDIRECT_XATTR = "trusted.overlay.redirect"
_BLOCK = 512


class LayerChanged(RuntimeError):
    """A tree no longer produces the digest measured when it was built (its cache entry is stale)."""


@dataclass(frozen=True)
class Layer:
    """One layer: a directory tree and the digest/size of the tar generated from it."""

    tree: Path
    digest: str
    """`sha256:<hex>` of the uncompressed tar (= its diff_id)."""
    size: int
    """Bytes of the tar."""
    created_by: str = ""
    """What made the layer (goes into the config's history, shown by image inspectors)."""


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an image config (the OCI `config` object), in OCI spelling."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""
    exposed_ports: tuple[int, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in (("User", self.user), ("WorkingDir", self.working_dir), ("Env", list(self.env)),
                           ("Entrypoint", list(self.entrypoint)), ("Cmd", list(self.cmd))):
            if value:
                out[key] = value
        if self.exposed_ports:
            out["ExposedPorts"] = {f"{p}/tcp": {} for p in self.exposed_ports}
        if self.labels:
            out["Labels"] = dict(self.labels)
        return out


# ------------------------------------------------------------------------------------ layers from trees


class _Sink(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through, optionally into another file."""

    def __init__(self, target: BinaryIO | None = None) -> None:
        self.sha = hashlib.sha256()
        self.size = 0
        self.target = target

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.size += len(view)
        if self.target is not None:
            self.target.write(view)
        return len(view)

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def _entries(root: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(path relative to root, entry) for everything under root, sorted, each directory before its content."""
    stack: list[tuple[str, str]] = [("", str(root))]
    while stack:
        rel_dir, abs_dir = stack.pop()
        with os.scandir(abs_dir) as it:
            children = sorted(it, key=lambda e: e.name)
        subdirs = []
        for entry in children:
            rel = f"{rel_dir}{entry.name}"
            yield rel, entry
            if entry.is_dir(follow_symlinks=False):
                subdirs.append((rel + "/", entry.path))
        stack.extend(reversed(subdirs))  # popped in sorted order


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _xattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _empty_file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info


def _tar_info(rel: str, entry: os.DirEntry[str], hardlinks: dict[tuple[int, int], str]) -> tarfile.TarInfo | None:
    """The tar header of one tree entry (None for sockets, which a layer cannot carry)."""
    st = entry.stat(follow_symlinks=False)
    mode = st.st_mode
    if _is_whiteout(st):
        parent, _, name = rel.rpartition("/")
        return _empty_file(f"{parent}/.wh.{name}" if parent else f".wh.{name}")
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    if stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in hardlinks:
            info.type, info.linkname = tarfile.LNKTYPE, hardlinks[key]
            return info
        if st.st_nlink > 1:
            hardlinks[key] = rel
        info.size = st.st_size
    elif stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(entry.path)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    else:
        return None
    return info


def write_tree_tar(tree: Path, out: BinaryIO) -> None:
    """Write the layer tar of `tree` to `out` (deterministic: the same tree gives the same bytes)."""
    hardlinks: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for rel, entry in _entries(tree):
            if _xattr(entry.path, _REDIRECT_XATTR) is not None:
                # A renamed directory of a lower layer: overlay records it in a way OCI layers cannot express.
                raise ValueError(f"{entry.path}: overlay redirect_dir entries are not supported in layers")
            info = _tar_info(rel, entry, hardlinks)
            if info is None:
                continue
            if info.isreg() and info.size:
                with open(entry.path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            if info.isdir() and _xattr(entry.path, _OPAQUE_XATTR) == b"y":
                tar.addfile(_empty_file(f"{rel}/.wh..wh..opq"))


def measure_tree(tree: Path) -> tuple[str, int]:
    """(digest, size) of the layer tar of `tree`, without writing it anywhere."""
    sink = _Sink()
    write_tree_tar(tree, sink)  # type: ignore[arg-type]
    return sink.digest, sink.size


# -------------------------------------------------------------------------------------- image layout


def _json_blob(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(blob).hexdigest(), "size": len(blob)}


def oci_arch() -> str:
    """This machine's architecture in OCI/Go spelling (the images run here)."""
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def config_blob(layers: list[Layer], config: ImageConfig) -> bytes:
    return _json_blob({
        "architecture": oci_arch(),
        "os": "linux",
        "config": config.as_json(),
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        "history": [{"created_by": layer.created_by or "hexrl image builder"} for layer in layers],
    })


def manifest_blob(layers: list[Layer], config: bytes) -> bytes:
    return _json_blob({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": _descriptor(CONFIG_MEDIA_TYPE, config),
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer.digest, "size": layer.size} for layer in layers],
    })


def manifest_digest(layers: list[Layer], config: ImageConfig) -> str:
    """The digest the image will have (its name's tag is derived from it before the tarball is written)."""
    return str(_descriptor(MANIFEST_MEDIA_TYPE, manifest_blob(layers, config_blob(layers, config)))["digest"])


def index_blob(manifest: bytes, name: str) -> bytes:
    desc = _descriptor(MANIFEST_MEDIA_TYPE, manifest)
    desc["platform"] = {"architecture": oci_arch(), "os": "linux"}
    desc["annotations"] = {REF_NAME: name, CONTAINERD_NAME: name}
    return _json_blob({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [desc]})


def _header(out: BinaryIO, name: str, size: int, *, directory: bool = False) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    out.write(info.tobuf(format=tarfile.PAX_FORMAT))


def _pad(out: BinaryIO, size: int) -> None:
    if size % _BLOCK:
        out.write(b"\0" * (_BLOCK - size % _BLOCK))


def _add_bytes(out: BinaryIO, name: str, data: bytes) -> None:
    _header(out, name, len(data))
    out.write(data)
    _pad(out, len(data))


def _add_layer(out: BinaryIO, layer: Layer) -> None:
    """Copy the generated tar of `layer.tree` into the archive, checking it still has the measured digest."""
    _header(out, "blobs/sha256/" + layer.digest.removeprefix("sha256:"), layer.size)
    sink = _Sink(out)
    write_tree_tar(layer.tree, sink)  # type: ignore[arg-type]
    if (sink.digest, sink.size) != (layer.digest, layer.size):
        raise LayerChanged(
            f"layer {layer.tree} now gives {sink.digest} ({sink.size} bytes), not the recorded {layer.digest} "
            f"({layer.size} bytes): the tree was changed after it was built"
        )
    _pad(out, layer.size)


def write_image(out: BinaryIO, layers: list[Layer], config: ImageConfig, name: str) -> str:
    """Write the OCI image tarball to `out`; returns the manifest digest."""
    config_bytes = config_blob(layers, config)
    manifest = manifest_blob(layers, config_bytes)
    _add_bytes(out, "oci-layout", _json_blob({"imageLayoutVersion": "1.0.0"}))
    _header(out, "blobs", 0, directory=True)
    _header(out, "blobs/sha256", 0, directory=True)
    for layer in layers:
        _add_layer(out, layer)
    for blob in (config_bytes, manifest):
        _add_bytes(out, "blobs/sha256/" + hashlib.sha256(blob).hexdigest(), blob)
    _add_bytes(out, "index.json", index_blob(manifest, name))
    out.write(b"\0" * (2 * _BLOCK))  # end-of-archive marker
    return "sha256:" + hashlib.sha256(manifest).hexdigest()

