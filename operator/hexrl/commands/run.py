"""Run an RLJob on this machine: coordinator, rollout workers and trainer, with Ray (local by default).

Example: `hexrl run manifests/examples/rljob-tiny.yaml --steps 100 --summary out.json`. Prints a live
progress line and, at the end, a one-line JSON summary (also written to --summary FILE).

Checkpoints go to --checkpoint-dir if given, else to spec.checkpoint.path when the RLJob sets it (a rerun of the
same file resumes there; the step budget counts from the start of the job), else to a fresh temporary directory;
the directory is printed on stderr. TensorBoard events, the final Hugging Face export (spec.export) and, by
default, W&B/MLflow files (spec.tracking) land under it.

Exit status: 0 done; 1 bad input (the job file, a model or dataset it names, or a checkpoint directory that cannot
be written; the message says what to fix);
2 usage (an unknown option, or --no-local); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path

import typer

from hexrl.commands._inputs import EXIT_BAD_INPUT, EXIT_USAGE, InputError, load_job

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
    opts = LocalOptions(steps=steps, sync=sync, workers=workers, ray_address=ray_address, trainer_procs=trainer_procs,
                        checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None, show_progress=not quiet,
                        announce=lambda line: typer.echo(f"hexrl run: {line}", err=True))
    try:
        result = run_local(job, opts)
    except (ModelSourceError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"hexrl run: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:  # Ctrl-C while starting up, or a second one while stopping
        typer.echo("hexrl run: interrupted before the run could finish cleanly; no summary", err=True)
        raise typer.Exit(130) from None
    line = json.dumps(result, separators=(",", ":"))
    typer.echo(line)
    if summary is not None:
        summary.write_text(line + "\n")
    if result.get("interrupted"):
        where = f"; summary written to {summary}" if summary is not None else ""
        typer.echo(f"hexrl run: interrupted after {result['steps']} steps, everything stopped{where}", err=True)
        raise typer.Exit(130)
