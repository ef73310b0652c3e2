"""What the stages of one demo run share (`DemoRun`) and the numbers they collect for the summary (`Outcome`).

Each stage takes the `DemoRun`, reads the cluster and the job through it, and records what it measured in
`run.out`; the runner creates it once the control plane is up.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hexrl.commands.demo.kube import get_json
from hexrl.commands.demo.settings import DemoError, DemoSettings


@dataclass
class Outcome:
    """Numbers for the summary."""

    plan_before: dict[str, Any] = field(default_factory=dict)
    plan_after: dict[str, Any] = field(default_factory=dict)
    reclaimed: list[str] = field(default_factory=list)
    replan_seconds: float = 0.0
    replaced_seconds: float = 0.0
    pods_replaced: int = 0


@dataclass
class DemoRun:
    """What the stages of one demo run share: where to print, the cluster, the job, the operator process."""

    con: Any
    """The rich console every stage prints to."""
    cluster: Any
    """The running `DevCluster`."""
    settings: DemoSettings
    job: str
    """The RLJob's name (from its manifest)."""
    ns: str
    """The RLJob's namespace (from its manifest; default when it names none)."""
    out: Outcome = field(default_factory=Outcome)
    operator: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    """The operator's log file (its tail is shown when it exits early)."""
    pods: Any = None
    """The real-pod part's `PodsOutcome` (None without real nodes)."""

    def alive(self) -> None:
        """Raise DemoError with the end of its log if the operator has exited (checked while waiting)."""
        if self.operator is not None and self.operator.poll() is not None:
            assert self.log is not None
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
            raise DemoError(f"the operator exited with status {self.operator.returncode}; its log {self.log} "
                            f"ends with:\n{tail}")

    def rljob(self) -> dict[str, Any]:
        """The RLJob as the API server has it now."""
        return get_json(self.cluster, "rlj", "-n", self.ns, self.job)
