"""Run an RLJob on this machine: coordinator, rollout workers and trainer, with Ray (local by default).

Example: `hexrl run manifests/examples/rljob-tiny.yaml --steps 100 --summary out.json`. Prints a live
progress line and, at the end, a one-line JSON summary (also written to --summary FILE).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

DEFAULT_JOB = "manifests/examples/rljob-tiny.yaml"


def _load_job(path: Path):  # type: ignore[no-untyped-def]
    import yaml
    from pydantic import ValidationError

    from hexrl.api.models import RLJob

    if not path.is_file():
        raise typer.BadParameter(f"{path} does not exist; pass an RLJob YAML file (e.g. {DEFAULT_JOB})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("kind") not in (None, "RLJob"):
        raise typer.BadParameter(f"{path} is not an RLJob (kind: {raw.get('kind') if isinstance(raw, dict) else '?'})")
    try:
        return RLJob.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(f"{path}: {problems}") from exc


def run_command(
    job_file: Path = typer.Argument(Path(DEFAULT_JOB), metavar="RLJOB.yaml", help="The RLJob to run."),
    local: bool = typer.Option(True, "--local/--no-local", help="Run on this machine (the only mode so far)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Trainer steps (default: spec totalSteps)."),
    sync: bool = typer.Option(False, "--sync", help="η = 0 (synchronous-equivalent), for comparisons."),
    summary: Path | None = typer.Option(None, "--summary", help="Also write the JSON summary to this file."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Join an existing Ray cluster."),
    workers: int = typer.Option(2, "--workers", min=1, max=256, help="Rollout workers."),
    checkpoint_dir: Path | None = typer.Option(None, "--checkpoint-dir", help="Default: a fresh temp dir."),
    quiet: bool = typer.Option(False, "--quiet", help="No live progress line."),
) -> None:
    if not local:
        typer.echo("hexrl run: only --local is supported; submit the RLJob with kubectl for a cluster run", err=True)
        raise typer.Exit(2)
    try:
        job = _load_job(job_file)
    except typer.BadParameter as exc:
        typer.echo(f"hexrl run: {exc}", err=True)
        raise typer.Exit(2) from None
    from hexrl_workers.local import LocalOptions, run_local
    from hexrl_workers.modeling import ModelSourceError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    opts = LocalOptions(steps=steps, sync=sync, workers=workers, ray_address=ray_address,
                        checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None, show_progress=not quiet)
    try:
        result = run_local(job, opts)
    except (ModelSourceError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"hexrl run: {exc}", err=True)
        raise typer.Exit(2) from None
    line = json.dumps(result, separators=(",", ":"))
    typer.echo(line)
    if summary is not None:
        summary.write_text(line + "\n")
    if result.get("interrupted"):
        raise typer.Exit(130)
