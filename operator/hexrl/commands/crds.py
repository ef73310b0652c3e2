"""Generate the RLJob and GPUCalibration CRDs from the API models, or check that the committed ones are current."""

from __future__ import annotations

import difflib
from pathlib import Path

import typer

app = typer.Typer(help=__doc__, no_args_is_help=True)


@app.command("generate")
def generate(
    out: Path = typer.Option(Path("crds"), "--out", help="Folder to write the CRD files into."),
    check: bool = typer.Option(
        False, "--check", help="Write nothing; exit 1 with a diff when the file differs from the models."
    ),
) -> None:
    """Write crds/rljobs.hexrl.dev.yaml and crds/gpucalibrations.hexrl.dev.yaml (or, with --check, fail on drift)."""
    from hexrl.api.crd import generated_crds

    files = generated_crds()
    if check:
        stale = [name for name, text in files.items() if not _current(out / name, text)]
        if stale:
            raise typer.Exit(1)
        return
    if out.exists() and not out.is_dir():
        typer.echo(f"--out {out} is not a folder; pass the folder the CRD files go into", err=True)
        raise typer.Exit(1)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
        typer.echo(f"wrote {out / name}")


def _current(target: Path, text: str) -> bool:
    """Whether `target` holds `text`; if not, print the diff and what to do."""
    current = target.read_text() if target.exists() else ""
    if current == text:
        typer.echo(f"{target} is up to date")
        return True
    diff = difflib.unified_diff(current.splitlines(keepends=True), text.splitlines(keepends=True), str(target),
                                "generated")
    typer.echo("".join(diff), err=True)
    typer.echo(f"{target} is out of date with hexrl.api: run `make crds` and commit it", err=True)
    return False


@app.command("print")
def print_crd(
    priority_classes: bool = typer.Option(
        False, "--priority-classes",
        help="Also print hexrl's fixed PriorityClasses (hexrl-trainer, hexrl-rollout, hexrl-rollout-spot): what a "
             "cluster admin installs without the Helm chart, since the operator may not create them.",
    ),
) -> None:
    """Print the generated CRD YAML to stdout (e.g. `hexrl crds print --priority-classes | kubectl apply -f -`)."""
    if priority_classes:
        from hexrl.k8s.bootstrap import install_yaml

        typer.echo(install_yaml(), nl=False)
        return
    from hexrl.api.crd import calibration_crd_yaml, crd_yaml

    typer.echo(crd_yaml() + "---\n" + calibration_crd_yaml(), nl=False)
