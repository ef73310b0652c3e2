"""hexrl simulate (being built; see its issue)."""

from __future__ import annotations

import typer


def simulate_command() -> None:
    typer.echo("hexrl simulate: not available yet in this build", err=True)
    raise typer.Exit(1)
