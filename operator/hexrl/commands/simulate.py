"""Simulate an RLJob on a cluster inventory under several placement policies and compare them.

A discrete-event simulation (hexrl.sim) of the job over --hours, driven by the planner's cost model.

Policies: sync (η = 0), homogeneous (best single GPU type), hexrl (heterogeneous plan),
hexrl-spot (spot offload, token-level migration), hexrl-spot-nomigrate, fixed-split (75/25).

Spot reclaims: a Poisson process per pool (preemptionsPerNodeHour), or --trace (CSV or YAML).

Prints a comparison table (or JSON); --out also writes CSV files and PNG plots.

Replay (--replay FILE, a recording of `hexrl run --record`, hexrl.sim.recording): the recorded plan is simulated
for the recorded duration with the recorded seed, under the recorded calibration profile or the --profile files,
and compared with what the job did, window by window (hexrl.sim.replay): throughput, steps, staleness and per-phase
rates, with a one-line verdict. The job, cluster and plan come from the recording (no --inventory, --job, --trace
or --policy). --format json prints the result document only; --out writes replay.json and replay-windows.csv.

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


def _print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"hexrl simulate: {title}")
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
    inventory: Path | None = typer.Option(
        None, "--inventory", "-i", help="ClusterInventory YAML (see manifests/clusters/); required without --replay."),
    job: Path | None = typer.Option(
        None, "--job", "-j", help="RLJob YAML (see manifests/examples/); required without --replay."),
    policy: list[str] = typer.Option(
        ["all"], "--policy", "-p",
        help="Policy to simulate (repeat or comma-separate): sync, homogeneous, hexrl, hexrl-spot, "
        "hexrl-spot-nomigrate, fixed-split, or all.",
    ),
    hours: float = typer.Option(24.0, "--hours", help="Simulated hours (> 0, at most 720)."),
    trace: Path | None = typer.Option(
        None, "--trace", help="Preemption trace (CSV or YAML: time,pool,node,event); default Poisson per pool."
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Random seed (response lengths, Poisson trace); same seed, same run. Default 0, or the "
        "recording's with --replay."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Directory for CSV files and PNG plots."),
    profile: list[Path] = typer.Option(
        [], "--profile", help="Calibration profile (`hexrl calibrate`) correcting the cost model's rates; repeatable."
        " With --replay it replaces the recorded profile."
    ),
    replay: Path | None = typer.Option(
        None, "--replay", help="Replay a recording (`hexrl run --record`) and compare the simulation with it."),
) -> None:
    if fmt not in FORMATS:
        _fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if replay is not None:
        if inventory is not None or job is not None or trace is not None:
            _fail("--replay takes the job, the cluster and the plan from the recording; drop --inventory, --job "
                  "and --trace")
        _replay(replay, profile, fmt, out, seed)
        return
    if inventory is None or job is None:
        _fail("--inventory and --job are required (or --replay FILE to replay a recording)")
    seed = 0 if seed is None else seed
    if not 0 < hours <= 720:
        _fail(f"--hours must be more than 0 and at most 720 (30 days), got {hours:g}")
    if seed < 0:
        _fail(f"--seed must be a non-negative integer, got {seed}")
    names = _policies(policy)

    from hexrl.sim.report import compare

    try:
        cluster = load_inventory(inventory)
        planner_settings = load_profiles(profile, cluster)
    except InputError as exc:
        _fail(str(exc))
    spec = _load_job(job)
    events = _load_trace(trace, cluster) if trace is not None else None
    outcomes = compare(spec, cluster, names, hours, seed, events, planner_settings=planner_settings)
    _report(outcomes, fmt, out, f"{hours:g} h, seed {seed}, preemptions from "
            f"{trace if trace else 'a Poisson process per spot pool'}")


def _report(outcomes: list[Any], fmt: str, out: Path | None, title: str) -> None:
    """The comparison as a table (or JSON rows), the files of --out, and status 3 when no policy could run."""
    from hexrl.sim.report import row, write_csv, write_plots

    rows = [row(o) for o in outcomes]
    if fmt == "json":
        typer.echo(json.dumps(rows, indent=2))
    else:
        _print_table(rows, title)
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


# ------------------------------------------------------------------------------------------ replay


def _replay(path: Path, profiles: list[Path], fmt: str, out: Path | None, seed: int | None) -> None:
    """`--replay FILE`: simulate the recording's plan and print the comparison (module docstring)."""
    from dataclasses import replace

    from hexrl.sim.recording import RecordingError, load_recording
    from hexrl.sim.replay import replay
    from hexrl.sim.replay_result import replay_document

    if seed is not None and seed < 0:
        _fail(f"--seed must be a non-negative integer, got {seed}")
    try:
        recording = load_recording(path)
        if seed is not None:
            recording = replace(recording, header=recording.header.model_copy(update={"seed": seed}))
        settings = load_profiles(profiles, recording.header.cluster)
        result = replay(recording, settings.cost.calibration if settings is not None else None)
    except (InputError, RecordingError) as exc:
        _fail(str(exc))
    doc = replay_document(result)
    if fmt == "json":
        typer.echo(json.dumps(doc, indent=2))
    else:
        _print_replay(result)
    if out is not None:
        files = _write_replay(doc, out)
        if fmt == "table":
            typer.echo("wrote " + ", ".join(str(f) for f in files))


def _pct(x: float | None) -> str:
    from hexrl.sim.replay_result import format_change

    return format_change(x)


def _lag(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _print_replay(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    profile = "the recorded profile" if result.profile_source == "recorded" else "the given profile"
    table = Table(title=f"hexrl simulate --replay {result.source}: {result.duration_seconds:,.0f} s, seed "
                        f"{result.seed}, {profile}")
    for col in ("window (s)", "steady", "observed tok/s", "simulated tok/s", "error", "steps obs/sim",
                "lag obs/sim", "phase rates vs model"):
        table.add_column(col, justify="left" if col in ("window (s)", "phase rates vs model") else "right")
    for w in result.windows:
        phases = ", ".join(f"{p.gpu} {p.phase} {_pct(p.error)}" for p in w.phases)
        table.add_row(f"{w.start_seconds:,.0f}–{w.end_seconds:,.0f}", "yes" if w.steady else "no",
                      f"{w.observed_tokens_per_second:,.0f}", f"{w.simulated_tokens_per_second:,.0f}",
                      _pct(w.throughput_error), f"{w.observed_steps}/{w.simulated_steps:.1f}",
                      f"{_lag(w.observed_staleness)}/{_lag(w.simulated_staleness)}", phases)
    con = Console()
    if not con.is_terminal:
        con = Console(width=150)
    con.print(table)
    for line in _replay_summary(result):
        typer.echo(line)


def _replay_summary(result: Any) -> list[str]:
    """The summary lines under the table; the verdict last."""
    t, s = result.throughput, result.steps
    lines = [
        f"throughput: median {_pct(t.median)}, worst {_pct(t.worst)}, overall {_pct(t.overall_error)} "
        f"(the plan predicted {result.planned_tokens_per_second:,.0f} tok/s)",
        f"steps: median {_pct(s.median)}, worst {_pct(s.worst)}, overall {_pct(s.overall_error)}",
        f"staleness: observed {_lag(result.staleness_observed)}, simulated {_lag(result.staleness_simulated)} "
        f"versions (worst window difference {_lag(result.staleness_worst_difference)})",
    ]
    lines += [f"{p.gpu} {p.phase}: observed {p.observed:,.4g} vs model {p.predicted:,.4g} tokens per GPU-second "
              f"({_pct(p.errors.overall_error)}; windows median {_pct(p.errors.median)}, worst {_pct(p.errors.worst)})"
              + (f", busy {p.busy_fraction:.0%} of the time" if p.busy_fraction is not None else "")
              for p in result.phases]
    lines += [f"note: {n}" for n in result.notes]
    return [*lines, result.verdict]


def _write_replay(doc: dict[str, Any], out: Path) -> list[Path]:
    """replay.json (the document) and replay-windows.csv (one row per window) in `out`."""
    import csv

    rows = [{k: v for k, v in w.items() if k != "phases"} for w in doc["windows"]]
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "replay.json").write_text(json.dumps(doc, indent=2) + "\n")
        with (out / "replay-windows.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["startSeconds"])
            writer.writeheader()
            writer.writerows(rows)
    except OSError as exc:
        _fail(f"cannot write to {str(out)!r}: {exc.strerror or exc}")
    return [out / "replay.json", out / "replay-windows.csv"]
