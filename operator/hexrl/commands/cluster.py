"""A real local control plane with simulated GPU nodes: build, up, down, status, kubeconfig, kubectl, demo."""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

app = typer.Typer(help=__doc__, no_args_is_help=True)

F = TypeVar("F", bound=Callable[..., Any])

NAME_OPTION = typer.Option("hexrl", "--name", "-n", help="Cluster name (its files live in ~/.cache/hexrl/clusters/NAME).")
GPU_COLUMNS = "nvidia.com/gpu.product,nvidia.com/gpu.count,hexrl.dev/pool,karpenter.sh/capacity-type"


def _check_inventory(path: Path | None) -> None:
    """Read the inventory through the CLI's bounded reader first (size, UTF-8, nesting, finite numbers), so the
    cluster's own parser only ever sees a file that passed; a bad file is one sentence and exit 1."""
    from hexrl.commands._inputs import EXIT_BAD_INPUT, InputError, read_yaml

    if path is None:
        return
    try:
        read_yaml(path, "inventory")
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def friendly(fn: F) -> F:
    """Print a DevClusterError as its problem and hint and exit 1 — never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from hexrl.devcluster import DevClusterError

        try:
            return fn(*args, **kwargs)
        except DevClusterError as e:
            typer.secho(f"error: {e.problem}", fg="red", err=True)
            if e.hint:
                typer.echo(f"  → {e.hint}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _cluster(name: str, port: int | None = None) -> Any:
    from hexrl.devcluster import ClusterSettings, DevCluster

    return DevCluster(name=name, settings=ClusterSettings(apiserver_port=port))


@app.command("build")
@friendly
def build() -> None:
    """Build (or find) every pinned binary: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
    kubectl, kwok, kwokctl. Quick when cached; honours HEXRL_BIN_DIR and HEXRL_USE_PATH_BINARIES=1."""
    from hexrl.devcluster import Builder

    for name, path in Builder().ensure_all().items():
        typer.echo(f"{name:<24} {path}")


@app.command("images")
@friendly
def images(
    only: list[str] = typer.Option(None, "--image", help="workers, operator or pause (repeatable; default: all three)."),
) -> None:
    """Build (or find in the cache) the OCI images the real nodes run: workers, operator and pause.
    No Docker or registry: debootstrap + chroot as root; a second run with nothing changed returns at once."""
    from hexrl.devcluster.images import IMAGE_KINDS, ImageBuilder

    builder = ImageBuilder()
    for kind in only or IMAGE_KINDS:
        image = builder.build(kind)
        typer.echo(f"{image.name:<48} {image.size / 1e6:>9,.0f} MB  {image.tar}")


@app.command("up")
@friendly
def up(
    inventory: Path | None = typer.Option(
        None, "--inventory", "-i", help="ClusterInventory YAML whose pools become simulated GPU nodes."
    ),
    name: str = NAME_OPTION,
    port: int | None = typer.Option(None, "--port", help="kube-apiserver port on 127.0.0.1 (default: a free one)."),
) -> None:
    """Start the control plane (building binaries first if needed) and create the inventory's nodes."""
    _check_inventory(inventory)
    c = _cluster(name, port)
    c.up(inventory=inventory)
    typer.echo(f"kubeconfig: {c.kubeconfig}")
    typer.echo(f"try:        hexrl cluster kubectl --name {name} -- get nodes -L {GPU_COLUMNS}")


@app.command("down")
@friendly
def down(name: str = NAME_OPTION) -> None:
    """Stop every process of the cluster and remove its files (ports are free afterwards)."""
    _cluster(name).down()


@app.command("status")
@friendly
def status(
    name: str = NAME_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show whether the cluster runs, its processes, ports, nodes and GPUs, and the binaries in use."""
    from hexrl.devcluster import Builder

    info = _cluster(name).status()
    info["binaries"] = Builder().status()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"cluster {name}: {'running' if info['running'] else 'not running'}")
    for key in ("server", "kubeconfig", "nodes", "gpus"):
        if key in info:
            typer.echo(f"  {key:<11} {info[key]}")
    for comp, c in info.get("components", {}).items():
        typer.echo(f"  {comp:<24} pid {c['pid']:<8} port {c['port']:<6} {'alive' if c['alive'] else 'DEAD'}")
    typer.echo("binaries:")
    for b, path in info["binaries"].items():
        typer.echo(f"  {b:<24} {path}")
    if info.get("components") and not info["running"]:
        raise typer.Exit(1)


@app.command("kubeconfig")
@friendly
def kubeconfig(name: str = NAME_OPTION) -> None:
    """Print the path of the cluster's admin kubeconfig (e.g. `export KUBECONFIG=$(hexrl cluster kubeconfig)`)."""
    c = _cluster(name)
    c.server  # noqa: B018  (raises a clear error when the cluster is not running)
    typer.echo(str(c.kubeconfig))


@app.command(
    "kubectl",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
@friendly
def kubectl(ctx: typer.Context, name: str = NAME_OPTION) -> None:
    """Run the matching kubectl against the cluster: `hexrl cluster kubectl -- get nodes`."""
    c = _cluster(name)
    c.server  # noqa: B018
    binary = c.builder.path("kubectl")
    proc = subprocess.run([str(binary), f"--kubeconfig={c.kubeconfig}", *ctx.args])
    raise typer.Exit(proc.returncode)


@app.command("demo")
@friendly
def demo(
    inventory: Path = typer.Option(Path("manifests/clusters/hetero-3pool.yaml"), "--inventory", "-i"),
    job: Path = typer.Option(Path("manifests/examples/rljob.yaml"), "--job", "-j", help="RLJob to apply."),
    name: str = typer.Option("hexrl-demo", "--name", "-n"),
    keep: bool = typer.Option(False, "--keep", help="Leave the cluster running afterwards."),
) -> None:
    """Start a cluster with a heterogeneous inventory, install the CRD, apply an RLJob, show it, tear down."""
    from hexrl.api.crd import crd_yaml

    if not job.is_file():
        typer.echo(f"RLJob file {job} does not exist", err=True)
        raise typer.Exit(1)
    _check_inventory(inventory)
    c = _cluster(name)
    c.up(inventory=inventory)
    try:
        c.kubectl("apply", "-f", "-", input=crd_yaml())
        c.wait_established("rljobs.hexrl.dev")
        for title, args in (
            ("simulated GPU nodes", ("get", "nodes", "-L", GPU_COLUMNS)),
            ("apply the RLJob", ("apply", "-f", str(job))),
            ("RLJobs", ("get", "rlj", "-o", "wide")),
        ):
            typer.secho(f"\n$ kubectl {' '.join(args)}   # {title}", bold=True)
            typer.echo(c.kubectl(*args).stdout, nl=False)
    finally:
        if keep:
            typer.echo(f"\ncluster {name!r} keeps running; stop it with: hexrl cluster down --name {name}")
        else:
            c.down()
