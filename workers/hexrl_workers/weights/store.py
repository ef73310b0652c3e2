"""Packing a state dict into one versioned blob with a chunked digest manifest, and back.

Layout: the tensors' raw bytes (CPU, contiguous, native byte order), concatenated in state-dict order;
`TensorInfo.offset/nbytes` locate each one. The blob is cut into fixed `chunk_bytes` pieces (the last
may be shorter) and the manifest lists the digest of each, so a client verifies every piece before it
is used and re-fetches only the pieces that fail.

Digest: BLAKE3 (the `blake3` package, bindings of the reference Rust implementation) by default: ~4.8
GB/s on one core here against ~1.2 GB/s for sha256, which capped a verified pull on a small machine
below the link. The manifest names its digest, so a sha256 manifest still verifies.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import blake3
import torch

from hexrl_workers.protocol import TensorInfo, WeightManifest


def chunk_ranges(total: int, chunk: int) -> list[tuple[int, int]]:
    """[start, end) byte ranges of the chunks."""
    return [(s, min(total, s + chunk)) for s in range(0, total, chunk)]


DEFAULT_DIGEST = "blake3"


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> object: ...
    def hexdigest(self) -> str: ...


def new_hasher(digest: str) -> Hasher:
    """An incremental hasher for the manifest's `digest` (blake3 or sha256)."""
    if digest == "blake3":
        return blake3.blake3()
    if digest == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown weight digest {digest!r}; expected blake3 or sha256")


def hexdigest(digest: str, data: bytes | bytearray | memoryview) -> str:
    h = new_hasher(digest)
    h.update(data)
    return h.hexdigest()


def pack(state: dict[str, Any], version: int, chunk_bytes: int,
         digest: str = DEFAULT_DIGEST) -> tuple[WeightManifest, bytearray]:
    """Serialise `state` (name → tensor) as version `version`, each chunk's `digest` in the manifest."""
    infos: list[TensorInfo] = []
    parts: list[torch.Tensor] = []
    offset = 0
    for name, t in state.items():
        flat = t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        infos.append(
            TensorInfo(
                name=name, shape=list(t.shape), dtype=str(t.dtype).removeprefix("torch."), offset=offset,
                nbytes=flat.numel(),
            )
        )
        parts.append(flat)
        offset += flat.numel()
    blob = bytearray(offset)
    view = memoryview(blob)
    for info, flat in zip(infos, parts, strict=True):
        view[info.offset : info.offset + info.nbytes] = flat.numpy().tobytes()
    sums = [hexdigest(digest, view[a:b]) for a, b in chunk_ranges(offset, chunk_bytes)]
    manifest = WeightManifest(
        version=version, total_bytes=offset, chunk_bytes=chunk_bytes, digest=digest, chunk_digests=sums,
        tensors=infos,
    )
    return manifest, blob


def unpack(manifest: WeightManifest, blob: bytes | bytearray) -> dict[str, torch.Tensor]:
    """name → tensor views into `blob` (copy them if the blob is reused)."""
    if len(blob) != manifest.total_bytes:
        raise ValueError(f"blob has {len(blob)} bytes, manifest says {manifest.total_bytes}")
    out: dict[str, torch.Tensor] = {}
    for info in manifest.tensors:
        dtype = getattr(torch, info.dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"tensor {info.name}: unknown dtype {info.dtype!r}")
        if info.nbytes == 0:
            out[info.name] = torch.empty(info.shape, dtype=dtype)
            continue
        raw = torch.frombuffer(blob, dtype=torch.uint8, count=info.nbytes, offset=info.offset)
        out[info.name] = raw.view(dtype).reshape(info.shape)
    return out
