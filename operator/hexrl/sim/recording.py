"""Recordings of real jobs: what a job ran on and how it progressed, for the simulator to replay (`replay.py`).

A recording is a JSON Lines file (UTF-8, one JSON object per line), format version 1:

    {"kind": "RLJobRecording", "formatVersion": 1, "job": {...}, "cluster": {...}, "plan": {...}, ...}
    {"t": 0.0, "trainedSteps": 0, "policyVersion": 0, "trainedTokens": 0, ..., "observedWork": []}
    {"t": 5.0, "trainedSteps": 3, "policyVersion": 3, "trainedTokens": 7936, ..., "observedWork": [...]}

Line 1, the header (`RecordingHeader`):
    `job` — the RLJob's spec exactly as `hexrl.api.models.RLJobSpec` validates it (camelCase, as in the YAML).
    `cluster` — the planner's `hexrl.sched.Cluster` as `dataclasses.asdict` writes it (snake_case fields:
        pools, nodes with their real names, inter_pool_gbps, gpu_overrides). Chosen over an inventory file
        because it round-trips exactly: an inventory renames nodes `<pool>-<i>` and drops GPU overrides, and
        the plan names nodes.
    `plan` — the planner's `hexrl.sched.Plan` the job ran, as `dataclasses.asdict` writes it (the operator's
        ConfigMap form, `hexrl.k8s.plancodec`). It is stored, never re-planned: a replay runs exactly the
        placement the job ran, whatever today's planner would choose. `planSource` says where it came from:
        `local-layout` (the fixed layout of `hexrl run`, expressed as a Plan by `local_layout`) or `operator`
        (the RLJob's status.plan).
    `profile` — the calibration profile in force when the job ran (`CalibrationProfile`, `entries` of
        {gpu, phase, factor}; empty = the catalog's rates). A replay uses it unless given another.
    `seed` — the simulator's seed for the replay (response lengths); the recorder writes the job's
        `algorithm.seed`.
    `maxSequencesPerReplica` — the rollout engine's concurrent sequences when the run capped them below the
        cost model's (`hexrl run`'s workers batch a few groups at a time), else null.
Every further line, a sample (`RecordingSample`) read from the coordinator: `t` seconds since the
coordinator started serving; cumulative `trainedSteps`, `trainedSamples`, `trainedTokens` (prompt +
response tokens trained) and `generatedTokens` (response tokens received from the rollout); the
coordinator's `policyVersion`, `tokensPerSecond` (its recent-window rate) and `observedStaleness` (mean
lag of the last batch); `done`; and `observedWork`, the coordinator's cumulative work per (GPU type,
phase): tokens and busy GPU-seconds as the workers reported them.

Rules a reader enforces (`parse_recording`), each broken one named with file, line and what is wrong: the
first non-blank line is a header of a known `formatVersion`; every other line is a sample; `t` ≥ 0 and
strictly increasing; the cumulative counters never go down (a coordinator that restarted begins a new
recording); at least one sample. A last line without its newline that is not JSON is the write a killed
recorder was in the middle of: it is left out, so a killed run leaves a usable file.

`RecordingWriter` writes a file line by line, flushing each (the recorder of `hexrl run --record`).
Pure apart from `load_recording` and `RecordingWriter`, which read and write the file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from hexrl.api.models import RLJobSpec
from hexrl.sched.calibration import CalibrationProfile, Phase
from hexrl.sched.catalog import DEFAULT_CATALOG, GPUSpec
from hexrl.sched.costmodel import (
    CostModelSettings,
    Workload,
    decode_tokens_per_second,
    training_tokens_per_second,
    weight_sync_seconds,
)
from hexrl.sched.onlinecalibration import parse_observed_work
from hexrl.sched.types import Cluster, NodeInfo, Plan, PoolInfo, RolloutReplica, TrainerAssignment

__all__ = [
    "FORMAT_VERSION",
    "KIND",
    "Recording",
    "RecordingError",
    "RecordingHeader",
    "RecordingSample",
    "RecordingWriter",
    "WorkTotal",
    "header_line",
    "load_recording",
    "local_layout",
    "parse_recording",
    "sample_from_progress",
    "sample_line",
]

KIND: Final = "RLJobRecording"
FORMAT_VERSION: Final = 1
"""The format this module writes and reads; a reader refuses any other (the layout of the lines changed)."""

MAX_RECORDING_BYTES = 256 * 1024 * 1024
"""Largest recording read, bytes (256 MiB: a sample is ~0.5 KiB, so a month of one sample every 5 s)."""

PlanSource = Literal["local-layout", "operator"]


class RecordingError(ValueError):
    """A recording cannot be used; the message names the file, the line and what is wrong."""


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, allow_inf_nan=False
    )


class WorkTotal(_Wire):
    """Cumulative work of one (GPU type, phase) since the coordinator started (`/v1/progress` observedWork)."""

    gpu: str = Field(..., min_length=1)
    """GPU type the workers ran on (catalog name, as the plan gave it to them)."""
    phase: Phase
    """decode (rollout workers) or train (the trainer); prefill is not reported separately."""
    tokens: float = Field(..., ge=0)
    """Tokens processed: generated (decode) or trained on (train)."""
    seconds: float = Field(..., ge=0)
    """Busy GPU-seconds they took (busy wall seconds × GPUs of the worker)."""


class RecordingSample(_Wire):
    """One read of the coordinator's progress."""

    t: float = Field(..., ge=0)
    """Seconds since the coordinator started serving (the recording's clock)."""
    trained_steps: int = Field(..., ge=0)
    """Trainer steps acknowledged so far."""
    policy_version: int = Field(..., ge=0)
    """The newest policy version (= trained steps, plus the version a resumed job started from)."""
    trained_samples: int = Field(0, ge=0)
    """Trajectories trained so far."""
    trained_tokens: float = Field(..., ge=0)
    """Prompt + response tokens trained so far: what the planner calls tokens consumed by training."""
    generated_tokens: float = Field(0.0, ge=0)
    """Response tokens received from the rollout workers so far."""
    tokens_per_second: float = Field(0.0, ge=0)
    """The coordinator's own trained tokens/s over its recent window (shown, not used for windows)."""
    observed_staleness: float = Field(0.0, ge=0)
    """Mean policy lag of the samples of the last trained batch, versions."""
    done: bool = False
    """The job had trained its step budget: later samples only watch it stop."""
    observed_work: tuple[WorkTotal, ...] = ()
    """Cumulative work per (GPU type, phase) as the workers reported it."""


class RecordingHeader(_Wire):
    """The first line: the job, where it ran, how it was placed and the calibration in force."""

    kind: Literal["RLJobRecording"] = KIND
    """Always RLJobRecording: tells a recording from any other JSON Lines file."""
    format_version: int = FORMAT_VERSION
    """Layout of the file's lines; this module reads `FORMAT_VERSION` only."""
    job: RLJobSpec
    """The RLJob's spec, as the API models validate it."""
    cluster: Cluster
    """The cluster snapshot the plan was made on (`dataclasses.asdict` of `hexrl.sched.Cluster`)."""
    plan: Plan
    """The placement the job ran (`dataclasses.asdict` of `hexrl.sched.Plan`), stored, never re-planned."""
    plan_source: PlanSource
    """local-layout (`hexrl run`'s processes as a plan) or operator (the RLJob's status.plan)."""
    profile: CalibrationProfile = CalibrationProfile()
    """Calibration factors in force when the job ran (empty: the catalog's rates)."""
    seed: int = Field(0, ge=0)
    """Seed of the simulator's replay (the recorder writes the job's algorithm.seed)."""
    max_sequences_per_replica: int | None = Field(None, ge=1)
    """Concurrent sequences one rollout engine ran when the job capped them below the cost model's own cap
    (`hexrl run`: its workers' work items per batch × groupSize); None: the cost model's. The plan's rates and
    the replay's use it, so the simulated replicas hold as many groups at once as the real ones did."""
    sample_period_seconds: float = Field(5.0, gt=0)
    """The recorder's sampling period (samples are that far apart, give or take a read's latency)."""
    recorded_by: str = ""
    """What wrote the file, e.g. `hexrl run --record`."""
    started_at: str = ""
    """Wall-clock time of t = 0, ISO 8601 UTC (information only)."""


# The planner's dataclasses name GPUSpec only for type checkers; pydantic needs it to build the validator.
RecordingHeader.model_rebuild(_types_namespace={"GPUSpec": GPUSpec})


@dataclass(frozen=True)
class Recording:
    """A parsed recording: the header and its samples, in time order."""

    header: RecordingHeader
    samples: tuple[RecordingSample, ...]
    source: str = "the recording"
    """How messages name it, e.g. the file's path."""

    @property
    def duration_seconds(self) -> float:
        """Seconds from t = 0 to the last sample."""
        return self.samples[-1].t if self.samples else 0.0


# ------------------------------------------------------------------------------------------ writing


def header_line(header: RecordingHeader) -> str:
    """The header as one JSON line (no newline)."""
    return json.dumps(header.model_dump(mode="json", by_alias=True), separators=(",", ":"))


def sample_line(sample: RecordingSample) -> str:
    """A sample as one JSON line (no newline)."""
    return json.dumps(sample.model_dump(mode="json", by_alias=True), separators=(",", ":"))


class RecordingWriter:
    """Writes a recording line by line; every line is flushed and synced, so a killed writer leaves a file
    that reads up to its last whole sample."""

    def __init__(self, path: Path, header: RecordingHeader) -> None:
        self.path = path
        self._file: TextIO | None = path.open("w", encoding="utf-8")
        self._write(header_line(header))

    def _write(self, line: str) -> None:
        if self._file is None:
            raise ValueError(f"the recording {self.path} is closed")
        self._file.write(line + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def write(self, sample: RecordingSample) -> None:
        self._write(sample_line(sample))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) else 0.0


def sample_from_progress(
    t: float, progress: Mapping[str, Any], trained_tokens: float, generated_tokens: float
) -> RecordingSample:
    """A sample from a `/v1/progress` answer (camelCase) read `t` seconds after the start, with the cumulative
    token counters (the coordinator's `hexrl_trained_tokens` and `hexrl_generated_tokens`). Work entries that
    are not well formed are left out, as the operator leaves them out (`parse_observed_work`)."""
    work = tuple(
        WorkTotal(gpu=w.gpu, phase=w.phase, tokens=w.tokens, seconds=w.seconds)
        for w in parse_observed_work(progress).values()
    )
    return RecordingSample(
        t=max(0.0, t),
        trained_steps=int(_number(progress.get("trainedSteps"))),
        policy_version=int(_number(progress.get("policyVersion"))),
        trained_samples=int(_number(progress.get("trainedSamples"))),
        trained_tokens=max(0.0, trained_tokens),
        generated_tokens=max(0.0, generated_tokens),
        tokens_per_second=_number(progress.get("tokensPerSecond")),
        observed_staleness=_number(progress.get("observedStaleness")),
        done=progress.get("done") is True,
        observed_work=work,
    )


# ------------------------------------------------------------------------------------------ reading


def _problem(exc: ValidationError) -> str:
    """The first validation problem as `field: what` (pydantic's wording, without its boilerplate)."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "the line"
    more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    return f"{where}: {str(err['msg']).removeprefix('Value error, ')}{more}"


def _header(doc: Any, where: str) -> RecordingHeader:
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise RecordingError(
            f"{where} is not a recording header (it must be a JSON object with \"kind\": \"{KIND}\"); "
            "a recording starts with its header line, as `hexrl run --record` writes it"
        )
    version = doc.get("formatVersion")
    if version != FORMAT_VERSION:
        raise RecordingError(
            f"{where}: formatVersion {version!r} is not supported; this hexrl reads recordings of version "
            f"{FORMAT_VERSION} (record the job again with this version)"
        )
    try:
        return RecordingHeader.model_validate(doc)
    except ValidationError as exc:
        raise RecordingError(f"{where}: invalid header: {_problem(exc)}") from None


def _sample(doc: Any, where: str, previous: RecordingSample | None) -> RecordingSample:
    if isinstance(doc, dict) and doc.get("kind") == KIND:
        raise RecordingError(f"{where} is a second header; a recording has one header, on its first line")
    if not isinstance(doc, dict):
        raise RecordingError(f"{where} must be a JSON object (a sample), not {type(doc).__name__}")
    try:
        sample = RecordingSample.model_validate(doc)
    except ValidationError as exc:
        raise RecordingError(f"{where}: invalid sample: {_problem(exc)}") from None
    if previous is not None:
        _check_order(previous, sample, where)
    return sample


def _check_order(before: RecordingSample, after: RecordingSample, where: str) -> None:
    """Time strictly increases and the cumulative counters never go down."""
    if after.t <= before.t:
        raise RecordingError(
            f"{where}: t {after.t:g} is not after the previous sample's {before.t:g}; samples must be in time order"
        )
    for name in ("trained_steps", "trained_tokens", "generated_tokens", "trained_samples"):
        if getattr(after, name) < getattr(before, name):
            raise RecordingError(
                f"{where}: {to_camel(name)} went down ({getattr(before, name):g} → {getattr(after, name):g}); "
                "the coordinator restarted, so record each of its runs separately"
            )


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordingError(f"{where} is not JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise RecordingError(f"{where} is nested too deeply to read") from None


def parse_recording(lines: Iterable[str], source: str = "the recording") -> Recording:
    """A recording from its lines (each with or without its newline); `RecordingError` names `source`, the
    line and the problem (module docstring: the rules)."""
    header: RecordingHeader | None = None
    samples: list[RecordingSample] = []
    pending: tuple[str, str] | None = None  # an unparsable line: fatal unless it is the unterminated last one
    for number, raw in enumerate(lines, start=1):
        if pending is not None:
            raise RecordingError(pending[1])
        text = raw.strip()
        if not text:
            continue
        where = f"{source}, line {number}"
        try:
            doc = _json(text, where)
        except RecordingError as exc:
            pending = (raw, str(exc))
            continue
        if header is None:
            header = _header(doc, where)
        else:
            samples.append(_sample(doc, where, samples[-1] if samples else None))
    if pending is not None and (pending[0].endswith("\n") or header is None):
        raise RecordingError(pending[1])
    if header is None:
        raise RecordingError(f"{source} is empty; a recording has a header line and samples")
    if not samples:
        raise RecordingError(f"{source} has a header but no samples; record the job for longer")
    return Recording(header, tuple(samples), source)


def load_recording(path: Path) -> Recording:
    """Read and parse the recording at `path` (at most `MAX_RECORDING_BYTES`)."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise RecordingError(f"cannot read the recording {str(path)!r}: it is not a regular file")
        if size > MAX_RECORDING_BYTES:
            raise RecordingError(
                f"the recording {str(path)!r} is larger than {MAX_RECORDING_BYTES // 2**20} MiB; "
                "record with a longer sampling period"
            )
        with path.open(encoding="utf-8") as f:
            return parse_recording(f, str(path))
    except FileNotFoundError:
        raise RecordingError(f"cannot read the recording {str(path)!r}: it does not exist") from None
    except UnicodeDecodeError as exc:
        raise RecordingError(f"the recording {str(path)!r} is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise RecordingError(f"cannot read the recording {str(path)!r}: {exc.strerror or exc}") from None


# ------------------------------------------------------------------------------- hexrl run's layout


LOCAL_POOL = "local"
LOCAL_NODE = "local-0"


def _local_cluster(spec: GPUSpec, gpus: int) -> Cluster:
    """This machine as a one-node cluster of `gpus` GPUs of `spec` (each process stands in for one GPU)."""
    return Cluster(
        pools=(PoolInfo(name=LOCAL_POOL, gpu=spec.name, gpus_per_node=gpus),),
        nodes=(NodeInfo(name=LOCAL_NODE, pool=LOCAL_POOL, gpu=spec.name, gpus=gpus),),
    )


def _bottleneck(rollout: float, training: float, sync_cap: float) -> str:
    slowest = min(rollout, training, sync_cap)
    return "rollout" if slowest == rollout else ("training" if slowest == training else "weight-sync")


def local_layout(
    job: RLJobSpec, gpu: str, workers: int, trainer_procs: int, settings: CostModelSettings | None = None
) -> tuple[Cluster, Plan]:
    """`hexrl run`'s fixed layout as the planner would describe it: one node of `workers + trainer_procs`
    GPUs of type `gpu` (each process stands in for one GPU), `workers` rollout replicas of TP = PP = 1 and a
    trainer of DP = `trainer_procs` (FSDP when more than one), every rate from the cost model under
    `settings`. ValueError (one sentence) when the GPU type is unknown or the model does not fit it."""
    s = settings or CostModelSettings()
    spec = DEFAULT_CATALOG.lookup(gpu)
    if spec is None:
        raise ValueError(f"GPU type {gpu!r} is not in the catalog; known types: {', '.join(DEFAULT_CATALOG.names)}")
    gpus = workers + trainer_procs
    w = Workload.from_spec(job)
    decode = decode_tokens_per_second(spec, w, 1, 1, s)
    train = training_tokens_per_second(spec, w, trainer_procs, 1, 1, trainer_procs > 1, s, gpus)
    if decode is None or train is None:
        raise ValueError(f"the job's model does not fit one {spec.name} ({spec.hbm_gb:g} GB); record it as a larger GPU")
    sync = weight_sync_seconds(w, spec.inter_node_gbps, spec.inter_node_gbps, s)
    rollout = workers * decode.tokens_per_second
    cap = w.tokens_per_step / sync if sync > 0 else math.inf
    tokens = min(rollout, train.tokens_per_second, cap)
    trainer = TrainerAssignment(
        gpu=spec.name, pool=LOCAL_POOL, data_parallel=trainer_procs, tensor_parallel=1, pipeline_parallel=1,
        fsdp=trainer_procs > 1, nodes=(LOCAL_NODE,), gpus_per_node=(trainer_procs,),
        tokens_per_second=train.tokens_per_second,
    )
    replica = RolloutReplica(pool=LOCAL_POOL, gpu=spec.name, tensor_parallel=1, pipeline_parallel=1,
                             nodes=(LOCAL_NODE,), spot=False, tokens_per_second=decode.tokens_per_second)
    plan = Plan(
        trainer=trainer, replicas=(replica,) * workers, tokens_per_second=tokens,
        samples_per_second=tokens / w.tokens_per_sample, cost_per_hour=gpus * spec.price(False),
        rollout_tokens_per_second=rollout, training_tokens_per_second=train.tokens_per_second,
        bottleneck=_bottleneck(rollout, train.tokens_per_second, cap), staleness_predicted=0.0, buffer_depth=0,
        weight_sync_seconds=sync, solve_seconds=0.0, solver="none", solver_status="hexrl run's fixed layout",
        notes=(f"hexrl run on this machine: {workers} rollout process(es) and {trainer_procs} trainer process(es), "
               f"each standing in for one {spec.name}",),
    )
    return _local_cluster(spec, gpus), plan
