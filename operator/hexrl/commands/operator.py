"""Run the hexrl operator: reconcile RLJobs on the cluster (kopf; metrics, health, leader election)."""

from __future__ import annotations

import os
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
    worker_image: str | None = typer.Option(
        None, "--worker-image",
        help="Image for job pods whose RLJob keeps the built-in default image, e.g. a locally built "
             "hexrl.local/hexrl-workers:TAG loaded into the nodes (env HEXRL_OPERATOR_WORKER_IMAGE).",
    ),
    worker_image_pull_policy: str | None = typer.Option(
        None, "--worker-image-pull-policy",
        help="imagePullPolicy for pods that get --worker-image: Never or IfNotPresent runs a loaded image without "
             "contacting a registry (default: the RLJob's spec.images.pullPolicy).",
    ),
    prepare: bool | None = typer.Option(
        None, "--prepare/--no-prepare",
        help="Create what a fresh cluster lacks before starting: the RLJob CRD (also updated), hexrl's PriorityClasses "
             "(the operator itself may only read them), the namespace of the key Secret (hexrl-system) and, with --peering, kopf's peering CRDs and object. Default: on when not "
             "running in a pod (a developer's `hexrl operator --kubeconfig …`), off in a pod (the chart installs them).",
    ),
    gpu_catalog: Path | None = typer.Option(
        None, "--gpu-catalog",
        help="YAML/JSON file of GPU catalog overrides (GPU name → tflopsBf16, hbmGB, aliases, prices, …; "
             "the shape of an inventory's `catalog:`). Replaces $HEXRL_OPERATOR_GPU_CATALOG.",
    ),
) -> None:
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
                       ("peering", peering), ("priority", priority), ("log_level", log_level),
                       ("worker_image", worker_image), ("worker_image_pull_policy", worker_image_pull_policy)):
        if value is not None:
            updates[key] = value
    if standalone:
        updates["standalone"] = True
    if gpu_catalog is not None:
        updates["gpu_catalog"] = _read_gpu_catalog(gpu_catalog)
    try:
        settings = settings.with_values(**updates)
    except ValueError as exc:  # a bad --gpu-catalog (CatalogError names the GPU and field) or pull policy
        typer.echo(f"error: {f'{gpu_catalog}: ' if gpu_catalog else ''}{exc}", err=True)
        raise typer.Exit(1) from None
    if settings.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        typer.echo(f"error: --log-level {settings.log_level!r} is not one of DEBUG, INFO, WARNING, ERROR", err=True)
        raise typer.Exit(1)

    from hexrl.k8s.main import OperatorStartError, run

    if prepare is None:
        prepare = kubeconfig is not None or not os.environ.get("KUBERNETES_SERVICE_HOST")
    try:
        run(settings, str(kubeconfig) if kubeconfig else None, prepare=prepare)
    except OperatorStartError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _read_gpu_catalog(path: Path) -> dict[str, object]:
    """The override mapping in a `--gpu-catalog` file, read by the CLI's bounded reader (size, UTF-8, nesting, finite
    numbers); a clear error (exit 1) when missing, unreadable or not a mapping."""
    from hexrl.commands._inputs import InputError, load_gpu_catalog

    try:
        return load_gpu_catalog(path)
    except InputError as exc:
        typer.echo(f"error: --gpu-catalog: {exc}", err=True)
        raise typer.Exit(1) from None
