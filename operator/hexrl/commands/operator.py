"""Run the hexrl operator: reconcile RLJobs on the cluster (kopf; metrics, health, leader election)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from hexrl.k8s.settings import OperatorSettings

# The command's options, one alias each so that the signature of `operator_command` stays readable; the
# help texts are `hexrl operator --help`. An option left at None keeps the value from the environment
# (OperatorSettings.from_env) or the built-in default.
KubeconfigOption = Annotated[Path | None, typer.Option(
    "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).")]
NamespaceOption = Annotated[str | None, typer.Option("--namespace", "-n", help="Watch only this namespace.")]
AllNamespacesOption = Annotated[bool, typer.Option(
    "--all-namespaces", "-A", help="Watch every namespace (the default).")]
MetricsPortOption = Annotated[int | None, typer.Option(
    "--metrics-port", help="Prometheus /metrics port (0 = off; default 8080).")]
HealthPortOption = Annotated[int | None, typer.Option(
    "--health-port", help="/healthz and /readyz port (0 = off; default 8081).")]
PeeringOption = Annotated[str | None, typer.Option("--peering", help="kopf peering object for leader election.")]
StandaloneOption = Annotated[bool, typer.Option("--standalone", help="No peering (a single replica).")]
PriorityOption = Annotated[int | None, typer.Option(
    "--priority", help="Peering priority (default: random per process).")]
LogLevelOption = Annotated[str | None, typer.Option(
    "--log-level", help="DEBUG, INFO, WARNING or ERROR (default INFO).")]
WorkerImageOption = Annotated[str | None, typer.Option(
    "--worker-image",
    help="Image for job pods whose RLJob keeps the built-in default image, e.g. a locally built "
         "hexrl.local/hexrl-workers:TAG loaded into the nodes (env HEXRL_OPERATOR_WORKER_IMAGE).",
)]
WorkerImagePullPolicyOption = Annotated[str | None, typer.Option(
    "--worker-image-pull-policy",
    help="imagePullPolicy for pods that get --worker-image: Never or IfNotPresent runs a loaded image without "
         "contacting a registry (default: the RLJob's spec.images.pullPolicy).",
)]
PrepareOption = Annotated[bool | None, typer.Option(
    "--prepare/--no-prepare",
    help="Create what a fresh cluster lacks before starting: the RLJob CRD (also updated), hexrl's PriorityClasses "
         "(the operator itself may only read them), the namespace of the key Secret (hexrl-system) and, with --peering, kopf's peering CRDs and object. Default: on when not "
         "running in a pod (a developer's `hexrl operator --kubeconfig …`), off in a pod (the chart installs them).",
)]
GpuCatalogOption = Annotated[Path | None, typer.Option(
    "--gpu-catalog",
    help="YAML/JSON file of GPU catalog overrides (GPU name → tflopsBf16, hbmGB, aliases, prices, …; "
         "the shape of an inventory's `catalog:`). Replaces $HEXRL_OPERATOR_GPU_CATALOG.",
)]


def operator_command(
    kubeconfig: KubeconfigOption = None,
    namespace: NamespaceOption = None,
    all_namespaces: AllNamespacesOption = False,
    metrics_port: MetricsPortOption = None,
    health_port: HealthPortOption = None,
    peering: PeeringOption = None,
    standalone: StandaloneOption = False,
    priority: PriorityOption = None,
    log_level: LogLevelOption = None,
    worker_image: WorkerImageOption = None,
    worker_image_pull_policy: WorkerImagePullPolicyOption = None,
    prepare: PrepareOption = None,
    gpu_catalog: GpuCatalogOption = None,
) -> None:
    """Check the options, build the operator's settings from the environment and the options, and run the
    operator until it is stopped; every mistake a user can fix exits 1 with one `error:` line."""
    if namespace and all_namespaces:
        typer.echo("error: give either --namespace NS or --all-namespaces, not both", err=True)
        raise typer.Exit(1)
    if kubeconfig is not None and not kubeconfig.is_file():
        typer.echo(f"error: kubeconfig {kubeconfig} does not exist; pass the path of a kubeconfig file", err=True)
        raise typer.Exit(1)
    overrides: dict[str, object] = {
        "namespace": namespace, "metrics_port": metrics_port, "health_port": health_port, "peering": peering,
        "priority": priority, "log_level": log_level, "worker_image": worker_image,
        "worker_image_pull_policy": worker_image_pull_policy}
    settings = _operator_settings(overrides, standalone, gpu_catalog)

    from hexrl.k8s.main import OperatorStartError, run

    if prepare is None:
        prepare = kubeconfig is not None or not os.environ.get("KUBERNETES_SERVICE_HOST")
    try:
        run(settings, str(kubeconfig) if kubeconfig else None, prepare=prepare)
    except OperatorStartError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _operator_settings(overrides: dict[str, object], standalone: bool, gpu_catalog: Path | None) -> OperatorSettings:
    """The environment's settings (OperatorSettings.from_env) with the options given on the command line laid
    over them — an override of None was not given — and the log level checked; exit 1 with the reason when the
    environment, the GPU catalog file or a value is invalid."""
    from hexrl.k8s.settings import OperatorSettings

    try:
        settings = OperatorSettings.from_env()
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    updates = {key: value for key, value in overrides.items() if value is not None}
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
    return settings


def _read_gpu_catalog(path: Path) -> dict[str, object]:
    """The override mapping in a `--gpu-catalog` file, read by the CLI's bounded reader (size, UTF-8, nesting, finite
    numbers); a clear error (exit 1) when missing, unreadable or not a mapping."""
    from hexrl.commands._inputs import InputError, load_gpu_catalog

    try:
        return load_gpu_catalog(path)
    except InputError as exc:
        typer.echo(f"error: --gpu-catalog: {exc}", err=True)
        raise typer.Exit(1) from None
