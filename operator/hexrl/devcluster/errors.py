"""Errors of the local control plane that a user can fix: each carries what went wrong and what to do.

The CLI prints `DevClusterError` as two plain sentences and exits 1 (never a traceback); tests and other
helpers can catch it like any exception.
"""

from __future__ import annotations


class DevClusterError(RuntimeError):
    """A problem with building or running the local control plane, with a hint on how to fix it."""

    def __init__(self, problem: str, hint: str = "", port_conflict: bool = False) -> None:
        self.problem = problem
        self.hint = hint
        self.port_conflict = port_conflict
        """True when a component died because another program held its port (worth one retry)."""
        super().__init__(f"{problem}\n  → {hint}" if hint else problem)
