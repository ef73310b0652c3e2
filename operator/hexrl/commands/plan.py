"""Plan an RLJob on a cluster inventory: where rollout and training run, predicted throughput and cost.

Exit status: 0 a feasible plan; 1 bad input (the message names the file, the field and what to do);
2 usage (an unknown option); 3 infeasible (the reason says what to change).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import typer

from hexrl.commands._inputs import (
    EXIT_BAD_INPUT,
    EXIT_INFEASIBLE,
    EXIT_OK,
    InputError,
    load_inventory,
    load_job,
    load_profiles,
)


def _fail(msg: str) -> NoReturn:
    typer.echo(f"hexrl plan: {msg}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def _load_inventory(path: Path) -> Any:
    try:
        return load_inventory(path)
    except InputError as exc:
        _fail(str(exc))


def _load_job(path: Path) -> Any:
    try:
        return load_job(path).spec
    except InputError as exc:
        _fail(str(exc))


def _table(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from hexrl.sched import Infeasible

    con = Console()
    if isinstance(result, Infeasible):
        con.print(f"[bold red]Infeasible[/] ({result.reason}): {result.message}")
    else:
        p, t = result, result.trainer
        con.print(
            f"[bold green]Plan[/]: {p.tokens_per_second:,.0f} tokens/s, {p.samples_per_second:,.2f} samples/s, "
            f"${p.cost_per_hour:,.2f}/h, ${p.dollars_per_million_tokens:,.3f} per 1M tokens, {p.gpus} GPUs; "
            f"bottleneck {p.bottleneck}; staleness {p.staleness_predicted:g} (buffer {p.buffer_depth}); "
            f"solved by {p.solver} ({p.solver_status}) in {p.solve_seconds * 1e3:,.0f} ms"
        )
        tab = Table(title="Placement")
        for col in ("role", "gpu", "pool", "replicas", "GPUs each", "layout", "tokens/s", "nodes"):
            tab.add_column(col)
        layout = f"DP{t.data_parallel}×TP{t.tensor_parallel}×PP{t.pipeline_parallel}" + (" FSDP" if t.fsdp else "")
        tab.add_row("trainer", t.gpu, t.pool, "1", str(t.gpus), layout, f"{t.tokens_per_second:,.0f}", _nodes(t.nodes))
        for g in p.rollout_groups():
            tab.add_row(
                "rollout" + (" (spot)" if g.spot else ""), g.gpu, g.pool, str(g.replicas), str(g.gpus_per_replica),
                f"TP{g.gpus_per_replica}", f"{g.tokens_per_second:,.0f}", _nodes(g.nodes),
            )
        con.print(tab)
        con.print(
            f"rates: rollout {p.rollout_tokens_per_second:,.0f}, training {p.training_tokens_per_second:,.0f} tokens/s; "
            f"weight sync {p.weight_sync_seconds:.1f} s per version"
        )
        for c in p.changes:
            con.print(f"  {c.kind:8} {c.role:8} {c.detail}")
        for n in p.notes:
            con.print(f"[yellow]note[/]: {n}")
    if result.baselines:
        tab = Table(title="Best homogeneous plans on the same budget")
        for col in ("gpu", "tokens/s", "$/h", "ratio (this plan / baseline)"):
            tab.add_column(col)
        ours = getattr(result, "tokens_per_second", 0.0)
        for b in result.baselines:
            ratio = f"{ours / b.tokens_per_second:.2f}×" if b.feasible and b.tokens_per_second > 0 else "—"
            tab.add_row(b.gpu, f"{b.tokens_per_second:,.0f}" if b.feasible else "infeasible", f"{b.cost_per_hour:,.2f}", ratio)
        con.print(tab)


def _nodes(nodes: tuple[str, ...]) -> str:
    return ", ".join(nodes) if len(nodes) <= 4 else f"{', '.join(nodes[:3])}, … ({len(nodes)} nodes)"


def plan_command(
    inventory: Path = typer.Option(..., "--inventory", "-i", help="ClusterInventory YAML file."),
    job: Path = typer.Option(..., "--job", "-j", help="RLJob YAML file."),
    fmt: str = typer.Option("table", "--format", "-o", help="table | json | yaml"),
    replan_after: Path | None = typer.Option(
        None, "--replan-after", help="A second inventory: re-plan the first plan on it, preferring least change."
    ),
    profile: list[Path] = typer.Option(
        [], "--profile", help="Calibration profile (`hexrl calibrate`) correcting the cost model's rates; repeatable."
    ),
) -> None:
    """Plan an RLJob on a cluster inventory: where rollout and training run, predicted throughput and cost.

    Exit status: 0 a plan; 1 bad input; 2 usage; 3 infeasible (the reason says what to change).
    """
    if fmt not in ("table", "json", "yaml"):
        _fail(f"--format must be table, json or yaml, not {fmt!r}")
    cluster = _load_inventory(inventory)
    spec = _load_job(job)
    from hexrl.sched import Plan, plan, replan

    after = _load_inventory(replan_after) if replan_after is not None else None  # bad input before a long solve
    try:
        settings = load_profiles(profile, cluster)
    except InputError as exc:
        _fail(str(exc))
    result = plan(spec, cluster, settings)
    if after is not None:
        if not isinstance(result, Plan):
            _emit(result, fmt)
            raise typer.Exit(EXIT_INFEASIBLE)
        result = replan(spec, after, result, settings)
    _emit(result, fmt)
    raise typer.Exit(EXIT_OK if isinstance(result, Plan) else EXIT_INFEASIBLE)


def _emit(result: Any, fmt: str) -> None:
    from hexrl.sched import plan_to_json

    if fmt == "json":
        typer.echo(json.dumps(plan_to_json(result), indent=2))
    elif fmt == "yaml":
        import yaml

        typer.echo(yaml.safe_dump(plan_to_json(result), sort_keys=False))
    else:
        _table(result)
