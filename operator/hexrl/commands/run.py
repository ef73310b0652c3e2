"""Run an RLJob on this machine: coordinator, rollout workers and trainer, with Ray (local by default).

Example: `hexrl run manifests/examples/rljob-tiny.yaml --steps 100 --summary out.json`. Prints a live
progress line and, at the end, a one-line JSON summary (also written to --summary FILE).

Checkpoints go to --checkpoint-dir if given, else to spec.checkpoint.path when the RLJob sets it (a rerun of the
same file resumes there; the step budget counts from the start of the job), else to a fresh temporary directory;
the directory is printed on stderr. TensorBoard events, the final Hugging Face export (spec.export) and, by
default, W&B/MLflow files (spec.tracking) land under it.

With --record FILE the run is recorded for `hexrl simulate --replay FILE`: the job, this machine as a one-node
cluster whose processes stand in for --record-gpu GPUs, that layout as a plan, the calibration profile(s) given
with --profile, then a sample of the coordinator's progress every --record-every seconds (hexrl.sim.recording).
The workers then report their work as that GPU type (observedWork), as pods do.

Exit status: 0 done; 1 bad input (the job file, a model or dataset it names, or a checkpoint directory that cannot
be written; the message says what to fix);
2 usage (an unknown option, or --no-local); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import logging
import signal
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from hexrl.commands._inputs import EXIT_BAD_INPUT, EXIT_USAGE, InputError, load_job, load_profiles

if TYPE_CHECKING:
    from hexrl.api.models import RLJobSpec
    from hexrl.commands._recorder import ProgressRecorder

DEFAULT_JOB = "manifests/examples/rljob-tiny.yaml"


def run_command(
    job_file: Path = typer.Argument(Path(DEFAULT_JOB), metavar="RLJOB.yaml", help="The RLJob to run."),
    local: bool = typer.Option(True, "--local/--no-local", help="Run on this machine (the only mode so far)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Trainer steps (default: spec totalSteps)."),
    sync: bool = typer.Option(False, "--sync", help="η = 0 (synchronous-equivalent), for comparisons."),
    summary: Path | None = typer.Option(None, "--summary", help="Also write the JSON summary to this file."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Join an existing Ray cluster."),
    workers: int = typer.Option(2, "--workers", min=1, max=256, help="Rollout workers."),
    trainer_procs: int = typer.Option(
        1, "--trainer-procs", min=1, max=64,
        help="Trainer processes: FSDP ranks over gloo, launched as a trainer pod launches them.",
    ),
    checkpoint_dir: Path | None = typer.Option(
        None, "--checkpoint-dir",
        help="Where checkpoints go (a rerun resumes there). Default: spec.checkpoint.path when the RLJob sets it, "
        "else a fresh temp dir.",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No live progress line."),
    record: Path | None = typer.Option(
        None, "--record", help="Write a recording of the run (JSON Lines) for `hexrl simulate --replay`."),
    record_every: float = typer.Option(
        5.0, "--record-every", min=0.1, max=3600.0, help="Seconds between two samples of the recording."),
    record_gpu: str = typer.Option(
        "L4", "--record-gpu", help="GPU type this machine's processes stand in for in the recording."),
    profile: list[Path] = typer.Option(
        [], "--profile", help="Calibration profile in force, written into the recording; repeatable."),
) -> None:
    # Ctrl-C must stop the run even when this process inherited SIGINT as ignored (a parent that ignores it,
    # e.g. a test runner or a nohup'd shell, passes that on, and Python then never raises KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not local:
        typer.echo("hexrl run: only --local is supported; submit the RLJob with kubectl for a cluster run", err=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        job = load_job(job_file)
    except InputError as exc:
        typer.echo(f"hexrl run: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    from hexrl_workers.local import LocalOptions, run_local
    from hexrl_workers.modeling import ModelSourceError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    recorder = None if record is None else _recorder(
        job.spec, record, RecordOptions(record_every, record_gpu, profile, workers, trainer_procs, steps, sync))
    opts = LocalOptions(steps=steps, sync=sync, workers=workers, ray_address=ray_address, trainer_procs=trainer_procs,
                        checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None, show_progress=not quiet,
                        announce=lambda line: typer.echo(f"hexrl run: {line}", err=True),
                        gpu_type=recorder.gpu if recorder is not None else None,
                        observer=recorder.observer if recorder is not None else None)
    try:
        result = run_local(job, opts)
    except (ModelSourceError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"hexrl run: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:  # Ctrl-C while starting up, or a second one while stopping
        typer.echo("hexrl run: interrupted before the run could finish cleanly; no summary", err=True)
        raise typer.Exit(130) from None
    if recorder is not None:
        typer.echo(f"hexrl run: recorded {recorder.observer.samples} samples to {record}", err=True)
    _report(result, summary)


def _report(result: dict[str, Any], summary: Path | None) -> None:
    """The one-line JSON summary on stdout (and in --summary FILE); status 130 when the run was interrupted."""
    line = json.dumps(result, separators=(",", ":"))
    typer.echo(line)
    if summary is not None:
        summary.write_text(line + "\n")
    if result.get("interrupted"):
        where = f"; summary written to {summary}" if summary is not None else ""
        typer.echo(f"hexrl run: interrupted after {result['steps']} steps, everything stopped{where}", err=True)
        raise typer.Exit(130)


@dataclass(frozen=True)
class RecordOptions:
    """What `--record` needs besides the job and the file."""

    period: float
    """Seconds between two samples."""
    gpu: str
    """GPU type the processes stand in for."""
    profiles: list[Path]
    """Calibration profiles in force (written into the header)."""
    workers: int
    trainer_procs: int
    steps: int | None
    sync: bool


@dataclass(frozen=True)
class _Recording:
    observer: ProgressRecorder
    gpu: str
    """The GPU type as the catalog names it (what the workers report their work as)."""


def _record_fail(msg: str) -> NoReturn:
    typer.echo(f"hexrl run: {msg}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def _recorder(spec: RLJobSpec, path: Path, o: RecordOptions) -> _Recording:
    """The recorder of this run: the header (the spec as this run changes it, the local layout as a plan) is
    written now, so a bad GPU type, profile or path fails before the job starts."""
    from datetime import UTC, datetime

    from hexrl.commands._recorder import ProgressRecorder
    from hexrl.sched import CostModelSettings
    from hexrl.sim.recording import RecordingHeader, local_layout
    from hexrl_workers.local import LocalOptions

    run_spec = spec.model_copy(deep=True)
    run_spec.algorithm.total_steps = o.steps or run_spec.algorithm.total_steps or 100
    if o.sync:
        run_spec.staleness.max_policy_lag = 0
    # The workers batch `max_items` groups at a time: the plan (and the replay) take that as the engine's cap.
    cap = LocalOptions().max_items * run_spec.algorithm.group_size
    try:
        cluster, _ = local_layout(run_spec, o.gpu, o.workers, o.trainer_procs)
        settings = load_profiles(o.profiles, cluster)
        cost = replace(settings.cost if settings is not None else CostModelSettings(), max_sequences_per_replica=cap)
        cluster, plan = local_layout(run_spec, o.gpu, o.workers, o.trainer_procs, cost)
    except InputError as exc:
        _record_fail(str(exc))
    except ValueError as exc:
        _record_fail(f"--record-gpu: {exc}")
    header = RecordingHeader(
        job=run_spec, cluster=cluster, plan=plan, plan_source="local-layout",
        profile=cost.calibration, seed=run_spec.algorithm.seed, max_sequences_per_replica=cap,
        sample_period_seconds=o.period, recorded_by="hexrl run --record",
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    try:
        return _Recording(ProgressRecorder(path, header, o.period), plan.trainer.gpu)
    except OSError as exc:
        _record_fail(f"cannot write the recording {str(path)!r}: {exc.strerror or exc}")
