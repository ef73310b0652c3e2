"""The per-job coordinator: staleness-gated prompt dispatch, trajectory buffer, batches, progress.

`core.CoordinatorCore` is the pure state machine; `server.CoordinatorServer` serves it over HTTP;
`evaluation.Evaluator` runs the held-out evaluations the core dispatches alongside training work.
"""

from hexrl_workers.coordinator.core import CoordinatorCore, CoordinatorSettings, RejectedError
from hexrl_workers.coordinator.server import CoordinatorServer, ServerSettings, ThreadedCoordinator

__all__ = [
    "CoordinatorCore",
    "CoordinatorServer",
    "CoordinatorSettings",
    "RejectedError",
    "ServerSettings",
    "ThreadedCoordinator",
]
