"""What a job hands back besides checkpoints: `spec.export` (a Hugging Face model directory written when the
job ends) and `spec.tracking` (training curves for TensorBoard, Weights & Biases and MLflow).

Paths left unset default to places under the checkpoint directory (`spec.checkpoint.path` in pods, the
directory `hexrl run` uses locally), so they land on the checkpoint volume and survive the pods:
`<checkpoint dir>/hf-final`, `<checkpoint dir>/tensorboard`, `<checkpoint dir>/wandb`, and for MLflow without
a tracking URI a file store at `<checkpoint dir>/mlruns`. The trainer resolves them (`resolved_*` helpers
below), because only it knows the directory it actually writes to.

Imported by `hexrl.api.models` right before `RLJobSpec` (this module builds on `_Model`).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import PurePosixPath

from pydantic import Field, field_validator

from hexrl.api.models import _Model

EXPORT_DIR_NAME = "hf-final"
"""Default export directory, under the checkpoint directory."""
TENSORBOARD_DIR_NAME = "tensorboard"
"""Default TensorBoard log directory, under the checkpoint directory."""
WANDB_DIR_NAME = "wandb-runs"
"""Default parent of W&B's own `wandb/` run directories, under the checkpoint directory."""
MLRUNS_DIR_NAME = "mlruns"
"""Default MLflow file store, under the checkpoint directory."""


def _absolute(value: object, field: str) -> object:
    """A path field's value, refused with a sentence unless absolute (the CRD says the same with a pattern)."""
    if isinstance(value, str) and not value.startswith("/"):
        raise ValueError(f"{field} must be an absolute path (it is {value!r}); write it as /some/dir")
    return value


class ExportSpec(_Model):
    """A Hugging Face model directory (safetensors, tokenizer, generation config) written by the trainer after
    the final step; transformers' `from_pretrained` and vLLM load it."""

    at_end: bool = Field(True, description="Write the directory after the final step (and its checkpoint).")
    path: str | None = Field(
        None, pattern=r"^/", description="Absolute directory to write (replaced if it exists); unset: `<checkpoint.path>/hf-final`."
    )

    @field_validator("path", mode="before")
    @classmethod
    def _path_is_absolute(cls, value: object) -> object:
        return _absolute(value, "export.path")

    def resolved_path(self, checkpoint_dir: str) -> str:
        return self.path or str(PurePosixPath(checkpoint_dir) / EXPORT_DIR_NAME)


class TensorBoardSpec(_Model):
    """TensorBoard event files (one scalar per statistic, x-axis: trainer step)."""

    enabled: bool = Field(True, description="Write event files (on by default; they are small).")
    dir: str | None = Field(None, pattern=r"^/", description="Absolute log directory; unset: `<checkpoint.path>/tensorboard`.")

    @field_validator("dir", mode="before")
    @classmethod
    def _dir_is_absolute(cls, value: object) -> object:
        return _absolute(value, "tracking.tensorboard.dir")

    def resolved_dir(self, checkpoint_dir: str) -> str:
        return self.dir or str(PurePosixPath(checkpoint_dir) / TENSORBOARD_DIR_NAME)


class WandbMode(StrEnum):
    offline = "offline"
    online = "online"


class WandbSpec(_Model):
    """A Weights & Biases run. Offline (the default) writes the run under `dir` for `wandb sync` later; online
    needs network access and WANDB_API_KEY in the trainer's environment."""

    project: str = Field(..., min_length=1, description="W&B project name.")
    entity: str | None = Field(None, min_length=1, description="W&B entity (user or team); unset: the key's default.")
    name: str | None = Field(None, min_length=1, description="Run name; unset: the RLJob's name when known.")
    mode: WandbMode = Field(WandbMode.offline, description="offline (no network; `wandb sync` later) or online.")
    dir: str | None = Field(None, pattern=r"^/", description="Absolute directory for W&B's files; unset: `<checkpoint.path>/wandb-runs`.")

    @field_validator("dir", mode="before")
    @classmethod
    def _dir_is_absolute(cls, value: object) -> object:
        return _absolute(value, "tracking.wandb.dir")

    def resolved_dir(self, checkpoint_dir: str) -> str:
        return self.dir or str(PurePosixPath(checkpoint_dir) / WANDB_DIR_NAME)


class MlflowSpec(_Model):
    """An MLflow run. A `file:` URI (or none) is a file store on the checkpoint volume and needs no server;
    mlflow-skinny has no SQL store, so `sqlite:///` works only where full MLflow is installed."""

    tracking_uri: str | None = Field(
        None, min_length=1,
        description="Tracking URI: file:///checkpoints/mlruns, http(s)://server:5000, sqlite:///… (full mlflow "
        "only); unset: a file store at `<checkpoint.path>/mlruns`.",
    )
    experiment: str = Field("hexrl", min_length=1, description="Experiment name (created if missing).")
    run_name: str | None = Field(None, min_length=1, description="Run name; unset: the RLJob's name when known.")

    def resolved_uri(self, checkpoint_dir: str) -> str:
        return self.tracking_uri or PurePosixPath(checkpoint_dir, MLRUNS_DIR_NAME).as_uri()


class TrackingSpec(_Model):
    """Where the trainer logs its per-step statistics and the job's hyper-parameters. A tracker that fails
    (bad URI, no network) is switched off with one warning; training never stops for it."""

    tensorboard: TensorBoardSpec = Field(default_factory=TensorBoardSpec, description="TensorBoard event files.")
    wandb: WandbSpec | None = Field(None, description="A Weights & Biases run (unset: none).")
    mlflow: MlflowSpec | None = Field(None, description="An MLflow run (unset: none).")
