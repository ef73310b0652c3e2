"""What one demo run is asked to do (`DemoSettings`) and the error a user can fix (`DemoError`).

Every stage module reads these; this module imports nothing else of the demo, so any of them can import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT_HINT = "run it from the repository root (where manifests/ is), or pass --inventory and --job"


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs and how long it waits."""

    inventory: Path = Path("manifests/clusters/hetero-3pool.yaml")
    """Cluster inventory (DESIGN.md §4): on-demand training GPUs, spot decode GPUs and a third type."""
    job: Path = Path("manifests/examples/rljob.yaml")
    """The RLJob to apply."""
    pods_job: Path = Path("manifests/examples/rljob-tiny.yaml")
    """The RLJob trained in real pods when the inventory has `real: true` pools (step 6)."""
    cluster_name: str = "hexrl-demo"
    """Name of the local cluster (its files live in ~/.cache/hexrl/clusters/<name>)."""
    reclaim: int = 2
    """Spot nodes to reclaim in step 5 (default 2 of the pool's nodes; at least one stays)."""
    keep: bool = False
    """Leave the cluster and the operator running at the end (default: stop everything)."""
    wait_seconds: float = 180.0
    """Upper bound for each wait (plan, pods, re-plan), seconds; the demo fails with the reason after it."""
    workdir: Path = field(default_factory=lambda: Path.home() / ".cache" / "hexrl" / "demo")
    """Where the operator's log and the demo's state (operator PID for `--keep`) are written."""


class DemoError(RuntimeError):
    """Something the user can fix; the message says what."""
