"""Atomic, sharded trainer checkpoints (torch.distributed.checkpoint), resumable at another world size.

Layout under the checkpoint directory:

    step-00000050/          a complete checkpoint (exists only after the rename)
        .metadata           DCP's index of every tensor shard (which file, which offsets)
        __<rank>_0.distcp   each rank's shards of the model and optimizer state
        meta.json           {"step", "policyVersion", "coordinator": <snapshot>, "spec": <the RLJob spec>,
                            "time", "files"} — written last; `spec` is what `hexrl export` rebuilds the
                            model from (checkpoints from before it was recorded need the RLJob)
    .tmp-step-00000060/     an interrupted write; ignored, and removed by the next save

Every rank writes its own shards (`dcp.save`, a collective: no rank gathers the whole model, so a
checkpoint costs each rank its share of the state, not rank 0 all of it). The state is keyed by parameter
name (`get_state_dict`), so `load_into` reshards onto whatever layout loads it: a checkpoint written by
two FSDP ranks resumes in one process or in four, with or without tensor parallelism. A gang whose pods
are on several nodes needs the checkpoint directory on storage they all mount (a ReadWriteMany PVC).

Atomicity: rank 0 prepares the temporary directory, every rank writes and fsyncs into it (DCP's writer
syncs its files), rank 0 writes meta.json, fsyncs it and the directory, then renames the directory into
place — rename(2) within one filesystem is atomic, so a reader sees either the old set of complete
checkpoints or the new one — and fsyncs the parent, so the result survives a power cut, not only a
process kill. `keep` newest complete checkpoints are kept.

Integrity: meta.json records every file's size and BLAKE3 (each rank hashes the shards it wrote). At
start-up the trainer resumes from the newest checkpoint that still matches (`latest_intact`): a
truncated or emptied file, flipped bytes inside tensor data, a missing shard or an unreadable meta.json
make it fall back to the previous one, with the reason logged, instead of crash-looping on it or
loading it silently.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

PREFIX = "step-"
TMP_PREFIX = ".tmp-"
META = "meta.json"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: Path, final: Path) -> None:
    """The atomic step (separate so tests can kill the process right before it)."""
    os.rename(tmp, final)


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def _single_process_is_intended() -> Iterator[None]:
    """DCP warns that it assumes one process when no process group exists; for a one-process trainer
    that is exactly right."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def _from_rank0(value: str) -> str:
    """Rank 0's `value` on every rank."""
    import torch.distributed as dist

    if not _distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def _barrier() -> None:
    import torch.distributed as dist

    if _distributed():
        dist.barrier()


class CheckpointNotShared(RuntimeError):
    """The ranks of the gang do not see one checkpoint directory (each pod has its own volume)."""


def _all_see(tmp: Path, nonce: str) -> bool:
    """True when every rank reads the nonce rank 0 wrote into `tmp` (a collective when distributed)."""
    import torch.distributed as dist

    marker = tmp / ".nonce"
    mine = marker.is_file() and marker.read_text() == nonce
    if not _distributed():
        return mine
    flag = torch.tensor([1 if mine else 0], dtype=torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def save(
    directory: str | Path, step: int, model: Any, optim: torch.optim.Optimizer, meta: Callable[[], dict[str, Any]],
    keep: int = 3, rank: int = 0,
) -> Path:
    """Checkpoint `model` and `optim` as step `step` (a collective when distributed: every rank calls it).

    `meta` is called on rank 0 only, after the shards are written (it may ask the coordinator for its
    snapshot). Returns the final directory."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    root = Path(directory)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f"{TMP_PREFIX}{PREFIX}{step:08d}"
    nonce = _from_rank0(f"{step}-{time.time_ns()}")
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        (tmp / ".nonce").write_text(nonce)
    _barrier()
    if not _all_see(tmp, nonce):
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointNotShared(
            f"the trainer's ranks do not share the checkpoint directory {root} (each pod sees its own volume), "
            "so no rank can write a checkpoint the others can resume from; set spec.checkpoint.pvc to a claim "
            "that every trainer pod mounts (ReadWriteMany when the trainer spans nodes)"
        )
    model_state, optim_state = get_state_dict(model, optim)
    with _single_process_is_intended():
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp), no_dist=not _distributed())
    files = _gather_digests(tmp, rank)
    if rank == 0:
        (tmp / ".nonce").unlink(missing_ok=True)
        record = {**meta(), "step": step, "time": time.time(), "files": files}
        (tmp / META).write_text(json.dumps(record))
        _fsync_path(tmp / META)
        _fsync_path(tmp)
        if final.exists():  # re-saving a step after a resume: move the old one aside, never lose both
            aside = root / f"{TMP_PREFIX}old-{final.name}"
            shutil.rmtree(aside, ignore_errors=True)
            os.rename(final, aside)
        _commit(tmp, final)
        _fsync_path(root)
        _prune(root, keep)
    _barrier()
    return final


def _prune(root: Path, keep: int) -> None:
    complete = complete_checkpoints(root)
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in root.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _digest_file(path: Path) -> dict[str, Any]:
    import blake3

    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    h.update_mmap(str(path))
    return {"bytes": path.stat().st_size, "blake3": h.hexdigest()}


def _gather_digests(tmp: Path, rank: int) -> dict[str, dict[str, Any]]:
    """{file name: size and BLAKE3} of the checkpoint's files: each rank hashes the shard files it wrote
    (`__<rank>_*`), rank 0 also DCP's index; on rank 0 the union (a collective when distributed)."""
    import torch.distributed as dist

    mine = {p.name: _digest_file(p) for p in sorted(tmp.glob(f"__{rank}_*"))}
    if rank == 0:
        mine.update({p.name: _digest_file(p) for p in tmp.iterdir()
                     if p.is_file() and not p.name.startswith("__") and p.name not in (META, ".nonce")})
    if not _distributed():
        return mine
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, mine)
    return {k: v for part in parts for k, v in part.items()}


def problems(path: str | Path) -> list[str]:
    """Why the checkpoint at `path` cannot be trusted (empty: every recorded file is there, whole, with its
    recorded BLAKE3). Catches a truncated or emptied file, flipped bytes inside tensor data, a missing
    shard, and a meta.json that does not parse."""
    p = Path(path)
    try:
        record = json.loads((p / META).read_text())
        files = record["files"]
        int(record["policyVersion"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{META}: {type(exc).__name__}: {exc}"]
    out = []
    for name, want in files.items():
        f = p / name
        if not f.is_file():
            out.append(f"{name} is missing")
        elif f.stat().st_size != want["bytes"]:
            out.append(f"{name} has {f.stat().st_size} bytes, {want['bytes']} were written")
        elif _digest_file(f)["blake3"] != want["blake3"]:
            out.append(f"{name} does not match its recorded BLAKE3 (corrupted)")
    if not files:
        out.append("no files recorded")
    return out


def latest_intact(directory: str | Path, on_skip: Callable[[Path, list[str]], None] | None = None) -> Path | None:
    """The newest complete checkpoint that passes `problems` (a collective when distributed: rank 0 checks
    and every rank gets its choice); `on_skip(path, problems)` is told about each newer one passed over."""
    chosen = ""
    if not _distributed() or _rank() == 0:
        for ck in reversed(complete_checkpoints(directory)):
            found = problems(ck)
            if not found:
                chosen = str(ck)
                break
            if on_skip is not None:
                on_skip(ck, found)
    chosen = _from_rank0(chosen)
    return Path(chosen) if chosen else None


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if _distributed() else 0


def complete_checkpoints(directory: str | Path) -> list[Path]:
    root = Path(directory)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob(f"{PREFIX}*") if p.is_dir() and (p / META).is_file())


def latest(directory: str | Path) -> Path | None:
    found = complete_checkpoints(directory)
    return found[-1] if found else None


def read_meta(path: str | Path) -> dict[str, Any]:
    return dict(json.loads((Path(path) / META).read_text()))


def load_into(path: str | Path, model: Any, optim: torch.optim.Optimizer) -> dict[str, Any]:
    """Load a checkpoint into `model` and `optim` as they are laid out now (a collective when
    distributed; DCP reshards from whatever layout wrote it); returns its metadata."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optim_state = get_state_dict(model, optim)
    state: dict[str, Any] = {"model": model_state, "optim": optim_state}  # DCP loads into these in place
    with _single_process_is_intended():
        dcp.load(state, checkpoint_id=str(path), no_dist=not _distributed())
    set_state_dict(model, optim, model_state_dict=state["model"], optim_state_dict=state["optim"])
    return read_meta(path)


def load_model(path: str | Path, model: Any) -> dict[str, Any]:
    """Load only the model's weights of a checkpoint into `model` (one process, no optimizer state read:
    export reads a fraction of what a resume does); returns its metadata."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    state = {"model": get_model_state_dict(model)}
    with _single_process_is_intended():
        dcp.load(state, checkpoint_id=str(path), no_dist=True)
    set_model_state_dict(model, state["model"])
    return read_meta(path)


def load_full(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(model state dict, optimizer state dict, metadata) of a checkpoint, whole, in this one process
    (export and inspection; the trainer itself uses `load_into`)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory(prefix="hexrl-ckpt-") as tmp:
        out = Path(tmp) / "full.pt"
        dcp_to_torch_save(str(path), str(out))
        full = torch.load(out, map_location="cpu", weights_only=False)
    return full["model"], full["optim"], read_meta(path)
