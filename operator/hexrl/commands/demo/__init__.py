"""The GPU-less demo behind `make run`: a real control plane, the operator, an RLJob, a spot reclaim.

Six steps (seven when the inventory has pools of real nodes), each shown as it happens:

1. start the local control plane (etcd, kube-apiserver with RBAC, controller-manager, scheduler, kwok) with
   simulated GPU nodes from an inventory — on-demand H800s for training, spot H20s for decoding, L40S;
2. install the RLJob CRD and start `hexrl operator` against it;
3. apply the example RLJob and show the operator's plan — which GPUs train, which decode, predicted
   tokens/s and $/h — next to the best homogeneous plan at the same budget;
4. show the job's pods on their pools and the job's status and conditions;
5. reclaim spot nodes (taint as a cloud would, then delete) and show the re-plan, the Event saying why,
   and the replacement pods;
6. when the inventory has pools of real kubelet nodes: train the tiny job in real pods on them and
   reclaim one of those nodes;
7. print a summary and stop everything — or, with `--keep`, leave it running and say how to reach it.

Nothing here is mocked: the pods are scheduled by kube-scheduler onto kwok's simulated nodes (which is
why no GPU is needed), and the plan is the one the operator writes into the RLJob's status.
"""

# This docstring is also `hexrl demo --help` (hexrl/cli.py registers the command with help=demo.__doc__).
# The package holds one module per step — control_plane (1), operator_process (2), job_plan (3),
# running (4), reclaim (5), real_pods (6, real nodes only), summary (last: 6 or 7) — run in order by runner.

from __future__ import annotations

from pathlib import Path

import typer

from hexrl.commands.demo.runner import run_demo
from hexrl.commands.demo.settings import DemoError, DemoSettings
from hexrl.commands.demo.state import Outcome

__all__ = ["DemoError", "DemoSettings", "Outcome", "demo_command", "run_demo"]


def demo_command(
    keep: bool = typer.Option(False, "--keep", help="Leave the cluster and the operator running and print how to reach them."),
    inventory: Path = typer.Option(DemoSettings.inventory, "--inventory", "-i", help="Cluster inventory (GPU node pools)."),
    job: Path = typer.Option(DemoSettings.job, "--job", "-j", help="RLJob manifest to apply."),
    name: str = typer.Option(DemoSettings.cluster_name, "--name", "-n", help="Local cluster name."),
    reclaim: int = typer.Option(DemoSettings.reclaim, "--reclaim", min=0, help="Spot nodes to reclaim in step 5 (0 = skip)."),
) -> None:
    """Run the demo with the command line's settings; a DemoError or a cluster error exits 1 with its
    sentence, Ctrl-C exits 130 after the runner has stopped what it started."""
    from hexrl.devcluster import DevClusterError

    settings = DemoSettings(inventory=inventory, job=job, cluster_name=name, reclaim=reclaim, keep=keep)
    try:
        run_demo(settings)
    except (DemoError, DevClusterError) as exc:
        typer.echo(f"hexrl demo: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("hexrl demo: interrupted; stopped the operator and the control plane", err=True)
        raise typer.Exit(130) from None
