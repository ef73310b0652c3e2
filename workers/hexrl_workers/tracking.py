"""Experiment tracking for trainer rank 0: per-step statistics to TensorBoard, Weights & Biases and MLflow.

One `Tracker` interface (`start` with the hyper-parameters once, `log` one step's scalars with the trainer
step as x-axis, `close`), three backends, and `FanOut`, which drives the configured ones and shields the
job from them: a backend that raises (a bad URI, no network in W&B online mode, a full disk) is closed and
dropped with one warning, and training goes on — curves are worth less than the run that produces them.
Prometheus stays the live view; these are the records a researcher keeps and compares.

W&B and MLflow are imported only when the spec names them (each costs seconds and hundreds of MB).
MLflow 3 refuses its file store unless `MLFLOW_ALLOW_FILE_STORE=true` (it steers users to a database
store), and mlflow-skinny ships no SQL store (no SQLAlchemy), so `sqlite:///` needs full mlflow: a `file:`
URI (the default, on the checkpoint volume) is what works offline here, and this module sets that variable
for `file:` URIs. An `http(s)://` tracking server works with either package.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from hexrl.api.models import RLJobSpec

log = logging.getLogger(__name__)

SCALAR_PREFIX = "train/"
"""Namespace of the per-step statistics in every backend (keeps them apart from evaluation curves)."""
MLFLOW_BATCH = 100
"""Most params or metrics MLflow accepts in one log_batch call."""
WANDB_INIT_SECONDS = 30
"""How long wandb.init may try to reach the W&B server (online mode) before the tracker is dropped, seconds,
unless WANDB_INIT_TIMEOUT says otherwise: the trainer's first step waits for it."""
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                        "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
"""MLflow client retry settings unless the environment sets them: ~3 s of retries, 20 s per request."""
MLFLOW_PARAM_CHARS = 6000
"""Longest param value MLflow stores; longer ones (a long system prompt) are cut."""


class Tracker(Protocol):
    """One experiment-tracking backend."""

    name: str

    def start(self, params: Mapping[str, Any]) -> None:
        """Open the run and record the hyper-parameters (flattened spec) once."""

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        """Record one trainer step's statistics at x = `step`."""

    def close(self) -> None:
        """Flush and finish the run."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model.shape.layers": 2, ...}: nested mappings joined by dots; lists kept as JSON text."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Only CRITICAL records from `logger_name` while inside."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


class TensorBoardTracker:
    """Event files through torch's `SummaryWriter`; the spec is stored once as text. `first_step`: the step
    this process logs first; points at or after it left by an earlier process (one that ran past its last
    checkpoint and was restarted from it) are hidden by TensorBoard's purge, so a curve never doubles back."""

    name = "tensorboard"

    def __init__(self, log_dir: str, first_step: int = 1) -> None:
        self.log_dir, self.first_step = log_dir, first_step
        self._writer: Any = None

    def start(self, params: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=self.log_dir, purge_step=self.first_step)
        table = "\n".join(f"    {k}: {v}" for k, v in sorted(params.items()))
        self._writer.add_text("spec", table)

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        for key, value in scalars.items():
            self._writer.add_scalar(f"{SCALAR_PREFIX}{key}", value, global_step=step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class WandbTracker:
    """A W&B run (offline by default: written under `dir` for `wandb sync`)."""

    name = "wandb"

    def __init__(self, project: str, entity: str | None, run_name: str | None, mode: str, directory: str) -> None:
        self.settings: dict[str, Any] = {"project": project, "entity": entity, "name": run_name, "mode": mode, "dir": directory}
        self._run: Any = None

    def start(self, params: Mapping[str, Any]) -> None:
        os.makedirs(self.settings["dir"] or ".", exist_ok=True)
        os.environ.setdefault("WANDB_SILENT", "true")  # no banners in the trainer's log
        # online without network, wandb.init retries for 90 s by default before it raises; the trainer waits
        os.environ.setdefault("WANDB_INIT_TIMEOUT", str(WANDB_INIT_SECONDS))
        import wandb

        with _quiet("wandb"):  # a failed init logs its traceback as an ERROR; FanOut's one warning says why
            self._run = wandb.init(**self.settings, config=dict(params))

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        self._run.log({f"{SCALAR_PREFIX}{k}": v for k, v in scalars.items()}, step=step)

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


class MlflowTracker:
    """An MLflow run through `MlflowClient` (no global active-run state)."""

    name = "mlflow"

    def __init__(self, tracking_uri: str, experiment: str, run_name: str | None) -> None:
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self._client: Any = None
        self._run_id: str | None = None

    def start(self, params: Mapping[str, Any]) -> None:
        if self.tracking_uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        # MLflow retries an unreachable server with exponential backoff for minutes by default; the trainer
        # would wait that long before its first step. A few seconds of retries, then the tracker is dropped.
        for name, value in MLFLOW_HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        found = self._client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found is not None else self._client.create_experiment(self.experiment)
        self._run_id = self._client.create_run(experiment_id, run_name=self.run_name).info.run_id
        rows = [Param(k, str(v)[:MLFLOW_PARAM_CHARS]) for k, v in params.items()]
        for lo in range(0, len(rows), MLFLOW_BATCH):
            self._client.log_batch(self._run_id, params=rows[lo:lo + MLFLOW_BATCH])

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(f"{SCALAR_PREFIX}{k}", float(v), now, step) for k, v in scalars.items()]
        for lo in range(0, len(rows), MLFLOW_BATCH):
            self._client.log_batch(self._run_id, metrics=rows[lo:lo + MLFLOW_BATCH])

    def close(self) -> None:
        if self._client is not None and self._run_id is not None:
            self._client.set_terminated(self._run_id, "FINISHED")
            self._run_id = None


class FanOut:
    """Drives several trackers; one that raises is closed and dropped with a single warning."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = list(trackers)
        self.failed: dict[str, str] = {}
        """Backend name → why it was switched off (for tests and the final log line)."""

    def start(self, params: Mapping[str, Any]) -> None:
        self._each("start", params)

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        self._each("log", step, scalars)

    def close(self) -> None:
        self._each("close")
        self.trackers = []

    def _each(self, method: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:  # any backend failure: the job must go on
                self._drop(tracker, method, exc)

    def _drop(self, tracker: Tracker, method: str, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log.warning("experiment tracker %s failed in %s (%s); training continues without it", tracker.name,
                    method, reason)
        self.failed[tracker.name] = reason
        self.trackers.remove(tracker)
        if method != "close":
            with contextlib.suppress(Exception):  # already reported; closing a broken backend is best effort
                tracker.close()


def build_trackers(spec: RLJobSpec, checkpoint_dir: str, run_name: str | None = None, first_step: int = 1) -> FanOut:
    """The trackers `spec.tracking` asks for, their default paths under `checkpoint_dir` (absolute);
    `first_step`: the first step this process will log (resumed step + 1)."""
    root = os.path.abspath(checkpoint_dir)
    cfg = spec.tracking
    trackers: list[Tracker] = []
    if cfg.tensorboard.enabled:
        trackers.append(TensorBoardTracker(cfg.tensorboard.resolved_dir(root), first_step))
    if cfg.wandb is not None:
        w = cfg.wandb
        trackers.append(WandbTracker(w.project, w.entity, w.name or run_name, str(w.mode), w.resolved_dir(root)))
    if cfg.mlflow is not None:
        m = cfg.mlflow
        trackers.append(MlflowTracker(m.resolved_uri(root), m.experiment, m.run_name or run_name))
    return FanOut(trackers)
