"""hexrl operator (being built; see its issue)."""

from __future__ import annotations

import typer


def operator_command() -> None:
    typer.echo("hexrl operator: not available yet in this build", err=True)
    raise typer.Exit(1)
