"""hexrl plan (being built; see its issue)."""

from __future__ import annotations

import typer


def plan_command() -> None:
    typer.echo("hexrl plan: not available yet in this build", err=True)
    raise typer.Exit(1)
