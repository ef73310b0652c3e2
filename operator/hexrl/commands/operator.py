"""Run the hexrl operator: reconcile RLJobs on the cluster (kopf; metrics, health, leader election)."""

from __future__ import annotations

from pathlib import Path

import typer


def operator_command(
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Watch only this namespace."),
    all_namespaces: bool = typer.Option(False, "--all-namespaces", "-A", help="Watch every namespace (the default)."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", help="Prometheus /metrics port (0 = off; default 8080)."),
    health_port: int | None = typer.Option(None, "--health-port", help="/healthz and /readyz port (0 = off; default 8081)."),
    peering: str | None = typer.Option(None, "--peering", help="kopf peering object for leader election."),
    standalone: bool = typer.Option(False, "--standalone", help="No peering (a single replica)."),
    priority: int | None = typer.Option(None, "--priority", help="Peering priority (default: random per process)."),
    log_level: str | None = typer.Option(None, "--log-level", help="DEBUG, INFO, WARNING or ERROR (default INFO)."),
) -> None:
    from dataclasses import replace

    if namespace and all_namespaces:
        typer.echo("error: give either --namespace NS or --all-namespaces, not both", err=True)
        raise typer.Exit(1)
    if kubeconfig is not None and not kubeconfig.is_file():
        typer.echo(f"error: kubeconfig {kubeconfig} does not exist; pass the path of a kubeconfig file", err=True)
        raise typer.Exit(1)
    from hexrl.k8s.settings import OperatorSettings

    try:
        settings = OperatorSettings.from_env()
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    updates: dict[str, object] = {}
    for key, value in (("namespace", namespace), ("metrics_port", metrics_port), ("health_port", health_port),
                       ("peering", peering), ("priority", priority), ("log_level", log_level)):
        if value is not None:
            updates[key] = value
    if standalone:
        updates["standalone"] = True
    settings = replace(settings, **updates)  # type: ignore[arg-type]
    if settings.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        typer.echo(f"error: --log-level {settings.log_level!r} is not one of DEBUG, INFO, WARNING, ERROR", err=True)
        raise typer.Exit(1)

    from hexrl.k8s.main import OperatorStartError, run

    try:
        run(settings, str(kubeconfig) if kubeconfig else None)
    except OperatorStartError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
