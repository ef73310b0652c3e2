"""Atomic trainer checkpoints: write everything into a temporary directory, fsync, rename.

Layout under the checkpoint directory:

    step-00000050/          a complete checkpoint (exists only after the rename)
        model.pt            model state dict
        optimizer.pt        optimizer state dict
        meta.json           {"step", "policyVersion", "coordinator": <snapshot>, "time"} — written last
    .tmp-step-00000060-<pid>/   an interrupted write; ignored and removed by the next save/resume

rename(2) of a directory within one filesystem is atomic, so a reader sees either the old set of
complete checkpoints or the new one; the fsyncs (files, then the new directory, then the parent) make
the result survive a power cut, not only a process kill. `keep` newest complete checkpoints are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

PREFIX = "step-"
TMP_PREFIX = ".tmp-"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: Path, final: Path) -> None:
    """The atomic step (separate so tests can kill the process right before it)."""
    os.rename(tmp, final)


def save(
    directory: str | Path, step: int, model_state: dict[str, Any], optim_state: dict[str, Any],
    meta: dict[str, Any], keep: int = 3,
) -> Path:
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f"{TMP_PREFIX}{PREFIX}{step:08d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save(model_state, tmp / "model.pt")
    torch.save(optim_state, tmp / "optimizer.pt")
    (tmp / "meta.json").write_text(json.dumps({**meta, "step": step, "time": time.time()}))
    for f in ("model.pt", "optimizer.pt", "meta.json"):
        _fsync_path(tmp / f)
    _fsync_path(tmp)
    if final.exists():  # re-saving the same step after a resume: replace it atomically enough
        shutil.rmtree(final)
    _commit(tmp, final)
    _fsync_path(root)
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    complete = complete_checkpoints(root)
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in root.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True)


def complete_checkpoints(directory: str | Path) -> list[Path]:
    root = Path(directory)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob(f"{PREFIX}*") if p.is_dir() and (p / "meta.json").is_file())


def latest(directory: str | Path) -> Path | None:
    found = complete_checkpoints(directory)
    return found[-1] if found else None


def load(path: str | Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    p = Path(path)
    meta = json.loads((p / "meta.json").read_text())
    model_state = torch.load(p / "model.pt", map_location="cpu", weights_only=True)
    optim_state = torch.load(p / "optimizer.pt", map_location="cpu", weights_only=True)
    return model_state, optim_state, meta
