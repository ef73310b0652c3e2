"""Reading the CLI's input files (inventories and RLJobs) with messages that name the file and the field.

Shared by `hexrl plan`, `hexrl simulate` and `hexrl run`; each command turns an `InputError` into its own
prefix and exit status.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class InputError(ValueError):
    """An input file the user must fix; the message says what is wrong and where."""


def read_yaml(path: Path, what: str) -> Any:
    """The parsed YAML of `path`; `what` (e.g. "job", "inventory") names the file in messages."""
    import yaml

    if not path.exists():
        raise InputError(f"cannot read the {what} file {str(path)!r}: it does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the {what} file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InputError(
            f"the {what} file {str(path)!r} is not valid YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from None


def load_inventory(path: Path) -> Any:
    """A ClusterInventory file → `hexrl.sched.Cluster`."""
    from hexrl.sched import InventoryError, parse_inventory

    try:
        return parse_inventory(read_yaml(path, "inventory"))
    except InventoryError as exc:
        raise InputError(f"{path}: {exc}") from None


def load_job(path: Path) -> Any:
    """An RLJob file → `hexrl.api.models.RLJob` (validation errors name the field, first six shown)."""
    from pydantic import ValidationError

    from hexrl.api.models import RLJob

    data = read_yaml(path, "job")
    if not isinstance(data, dict):
        raise InputError(f"{path}: the job file must be an RLJob YAML mapping (apiVersion, kind: RLJob, spec)")
    if data.get("kind", "RLJob") != "RLJob":
        raise InputError(f"{path}: kind is {data.get('kind')!r}; expected RLJob")
    try:
        return RLJob.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors()[:6]
        ]
        raise InputError(f"{path}: invalid RLJob: " + "; ".join(problems)) from None
