"""Simulate an RLJob on a cluster inventory under several placement policies and compare them.

A discrete-event simulation (hexrl.sim) of the job over --hours, driven by the planner's cost model.

Policies: sync (η = 0), homogeneous (best single GPU type), hexrl (heterogeneous plan),
hexrl-spot (spot offload, token-level migration), hexrl-spot-nomigrate, fixed-split (75/25).

Spot reclaims: a Poisson process per pool (preemptionsPerNodeHour), or --trace (CSV or YAML).

Prints a comparison table (or JSON); --out also writes CSV files and PNG plots.

Exit status: 0 at least one policy ran; 1 bad input (the message names the file, the field and what to do);
2 usage (an unknown option); 3 no policy could run on this cluster (the reasons say why).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import typer

from hexrl.commands._inputs import (
    EXIT_BAD_INPUT,
    EXIT_INFEASIBLE,
    InputError,
    load_inventory,
    load_job,
    load_profiles,
    parse_yaml,
    read_text,
)

FORMATS = ("table", "json")


def _fail(msg: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    typer.echo(f"hexrl simulate: {msg}", err=True)
    raise typer.Exit(code)


def _load_trace(path: Path, cluster: Any) -> Any:
    """The trace's events, read through the bounded reader (size, UTF-8, nesting, finite numbers)."""
    from hexrl.sim.trace import TraceError, parse_trace_text

    try:
        text = read_text(path, "trace")
        if path.suffix.lower() in (".yaml", ".yml", ".json"):
            parse_yaml(text, f"the trace file {str(path)!r}")  # bounded first; the trace module parses it again
        return parse_trace_text(text, path.suffix, cluster)
    except InputError as exc:
        _fail(str(exc))
    except TraceError as exc:
        _fail(f"{path}: {exc}")


def _load_job(path: Path) -> Any:
    try:
        return load_job(path).spec
    except InputError as exc:
        _fail(str(exc))


def _policies(given: list[str]) -> list[str]:
    from hexrl.sim.scenario import POLICIES

    names: list[str] = []
    for item in given:
        for name in (x.strip() for x in item.split(",")):
            if not name:
                continue
            if name == "all":
                names.extend(POLICIES)
            elif name in POLICIES:
                names.append(name)
            else:
                _fail(f"unknown policy {name!r}; choose from {', '.join(POLICIES)} or all")
    return list(dict.fromkeys(names)) or list(POLICIES)


def _print_table(rows: list[dict[str, Any]], hours: float, seed: int, trace: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"hexrl simulate: {hours:g} h, seed {seed}, preemptions from {trace}")
    for col, just in (
        ("policy", "left"), ("tokens/s", "right"), ("planner tok/s", "right"), ("samples/s", "right"),
        ("$/h", "right"), ("$/1M tok", "right"), ("trainer idle", "right"), ("GPU-h lost", "right"),
        ("lag p50/max", "right"), ("GPUs", "right"), ("preempt.", "right"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows:
        if not r["feasible"]:
            table.add_row(r["policy"], f"[red]cannot run: {r['reason']}[/]", *[""] * 9)
            continue
        table.add_row(
            r["policy"],
            f"{r['tokensPerSecond']:,.0f}",
            f"{r['predictedTokensPerSecond']:,.0f}",
            f"{r['samplesPerSecond']:,.2f}",
            f"{r['costPerHour']:,.2f}",
            f"{r['dollarsPerMillionTokens']:,.3f}" if r["dollarsPerMillionTokens"] is not None else "–",
            f"{r['trainerIdleFraction']:.1%}",
            f"{r['gpuHoursLostToPreemption']:,.2f}",
            f"{r['stalenessP50']}/{r['stalenessMax']}",
            str(r["gpus"]),
            str(r["preemptions"]),
        )
    con = Console()
    if not con.is_terminal:
        con = Console(width=150)  # piped output: do not squeeze the columns to 80
    con.print(table)


def simulate_command(
    inventory: Path = typer.Option(..., "--inventory", "-i", help="ClusterInventory YAML (see manifests/clusters/)."),
    job: Path = typer.Option(..., "--job", "-j", help="RLJob YAML (see manifests/examples/)."),
    policy: list[str] = typer.Option(
        ["all"], "--policy", "-p",
        help="Policy to simulate (repeat or comma-separate): sync, homogeneous, hexrl, hexrl-spot, "
        "hexrl-spot-nomigrate, fixed-split, or all.",
    ),
    hours: float = typer.Option(24.0, "--hours", help="Simulated hours (> 0, at most 720)."),
    trace: Path | None = typer.Option(
        None, "--trace", help="Preemption trace (CSV or YAML: time,pool,node,event); default Poisson per pool."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (response lengths, Poisson trace); same seed, same run."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Directory for CSV files and PNG plots."),
    profile: list[Path] = typer.Option(
        [], "--profile", help="Calibration profile (`hexrl calibrate`) correcting the cost model's rates; repeatable."
    ),
) -> None:
    if fmt not in FORMATS:
        _fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not 0 < hours <= 720:
        _fail(f"--hours must be more than 0 and at most 720 (30 days), got {hours:g}")
    if seed < 0:
        _fail(f"--seed must be a non-negative integer, got {seed}")
    names = _policies(policy)

    from hexrl.sim.report import compare, row, write_csv, write_plots

    try:
        cluster = load_inventory(inventory)
        planner_settings = load_profiles(profile, cluster)
    except InputError as exc:
        _fail(str(exc))
    spec = _load_job(job)
    events = _load_trace(trace, cluster) if trace is not None else None
    outcomes = compare(spec, cluster, names, hours, seed, events, planner_settings=planner_settings)
    rows = [row(o) for o in outcomes]
    if fmt == "json":
        typer.echo(json.dumps(rows, indent=2))
    else:
        _print_table(rows, hours, seed, str(trace) if trace else "a Poisson process per spot pool")
        for r in rows:
            if r["feasible"] and r.get("droppedStaleSamples"):
                typer.echo(f"{r['policy']}: {r['droppedStaleSamples']} stale samples dropped")
    if out is not None:
        try:
            files = write_csv(outcomes, out) + write_plots(outcomes, out)
        except OSError as exc:
            _fail(f"cannot write to {str(out)!r}: {exc.strerror or exc}")
        if fmt == "table":
            typer.echo("wrote " + ", ".join(str(f) for f in files))
    if not any(o.result is not None for o in outcomes):
        _fail(
            "no policy could run on this cluster: " + "; ".join(f"{o.policy}: {o.reason}" for o in outcomes),
            EXIT_INFEASIBLE,
        )
