"""Step 1: check the input files, start the local control plane with the inventory's nodes, show the pools.

The inputs are checked before anything starts, so a wrong path costs no cluster start-up.
"""

from __future__ import annotations

from typing import Any

from hexrl.commands.demo.kube import get_json
from hexrl.commands.demo.settings import ROOT_HINT, DemoError, DemoSettings
from hexrl.commands.demo.state import DemoRun


def check_inputs(settings: DemoSettings) -> tuple[str, str]:
    """The job's name and namespace, after both files passed the CLI's bounded, validating loaders (the demo
    reads them again later, knowing they are sound)."""
    from hexrl.commands._inputs import InputError, load_inventory, load_job

    for path, what in ((settings.inventory, "inventory"), (settings.job, "RLJob")):
        if not path.is_file():
            raise DemoError(f"the {what} file {path} does not exist; {ROOT_HINT}")
    try:
        load_inventory(settings.inventory)
        job = load_job(settings.job)
    except InputError as exc:
        raise DemoError(str(exc)) from None
    return str(job.metadata.name or ""), str(job.metadata.namespace or "default")


def start_control_plane(con: Any, settings: DemoSettings) -> Any:
    """Bring up the local cluster (etcd, apiserver, controller-manager, scheduler, kwok and the inventory's
    nodes), printing its progress; returns the running `DevCluster`."""
    from hexrl.devcluster import DevCluster

    cluster = DevCluster(name=settings.cluster_name, progress=lambda line: con.print(f"  [dim]{line}"))
    cluster.up(inventory=settings.inventory)
    return cluster


def show_nodes(run: DemoRun) -> None:
    """Print the cluster's GPU node pools."""
    run.con.print(nodes_table(run.cluster))


def nodes_table(cluster: Any) -> Any:
    """The cluster's nodes grouped by pool: GPU type, nodes, GPUs, capacity, price, simulated or real."""
    from rich.table import Table

    pools: dict[str, dict[str, Any]] = {}
    for node in get_json(cluster, "nodes").get("items", []):
        labels = node["metadata"].get("labels", {})
        pool = pools.setdefault(labels.get("hexrl.dev/pool", "?"), {
            "gpu": labels.get("nvidia.com/gpu.product", "?"), "nodes": 0, "gpus": 0,
            "spot": labels.get("hexrl.dev/spot") == "true", "price": labels.get("hexrl.dev/price-per-gpu-hour", "catalog")})
        pool["nodes"] += 1
        pool["gpus"] += int(node["status"].get("allocatable", {}).get("nvidia.com/gpu", 0))
        pool["real"] = labels.get("hexrl.dev/real") == "true"
    table = Table(title="GPU node pools (kwok nodes simulate GPU servers; real nodes run containers on this machine)",
                  title_justify="left")
    for col in ("pool", "GPU", "nodes", "GPUs", "capacity", "$/GPU-h", "kind"):
        table.add_column(col)
    for name, pool in sorted(pools.items()):
        table.add_row(name, pool["gpu"], str(pool["nodes"]), str(pool["gpus"]), "[yellow]spot" if pool["spot"] else "on-demand",
                      str(pool["price"]), "[bold green]real" if pool["real"] else "[dim]simulated")
    return table
