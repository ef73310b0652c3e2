"""hexrl run (being built; see its issue)."""

from __future__ import annotations

import typer


def run_command() -> None:
    typer.echo("hexrl run: not available yet in this build", err=True)
    raise typer.Exit(1)
