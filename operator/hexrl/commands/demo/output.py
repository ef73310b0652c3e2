"""How the demo prints: the console, the step headers, and the tables more than one stage shows.

The plan table and line (steps 3 and 5) and the pods table and not-Running explanation (steps 4 and 5) are
here so both stages render them the same way. rich is imported when first used, keeping `hexrl --help` fast.
"""

from __future__ import annotations

from typing import Any


def console() -> Any:
    """The rich console the demo prints to (no automatic highlighting: the colours are chosen per line)."""
    from rich.console import Console

    return Console(highlight=False)


def print_step(con: Any, number: int, title: str, total: int) -> None:
    """A blank line and a rule headed `number/total  title`."""
    con.print()
    con.rule(f"[bold cyan]{number}/{total}  {title}", align="left")


def fmt_tps(tokens_per_second: float) -> str:
    """Tokens per second as a whole number with thousands separators."""
    return f"{tokens_per_second:,.0f}"


def plan_table(plan: dict[str, Any], title: str) -> Any:
    """The plan from an RLJob's status as a table: the trainer, then one row per rollout group."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False)
    for col in ("role", "GPU", "pool", "capacity", "replicas × GPUs", "layout", "tokens/s"):
        table.add_column(col, justify="right" if col in ("replicas × GPUs", "tokens/s") else "left")
    trainer = plan.get("trainer") or {}
    if trainer:
        layout = (f"DP{trainer.get('dataParallel', 1)}×TP{trainer.get('tensorParallel', 1)}"
                  f"×PP{trainer.get('pipelineParallel', 1)}")
        table.add_row("[magenta]trainer", trainer["gpu"], trainer["pool"], "on-demand", f"1 × {trainer['gpus']}",
                      layout, fmt_tps(trainer.get("tokensPerSecond", 0)))
    for group in plan.get("rollout", []):
        table.add_row("[green]rollout", group["gpu"], group["pool"], "[yellow]spot" if group.get("spot") else "on-demand",
                      f"{group['replicas']} × {group['gpusPerReplica']}", f"TP{group['gpusPerReplica']}",
                      fmt_tps(group.get("tokensPerSecond", 0)))
    return table


def plan_line(plan: dict[str, Any]) -> str:
    """One line under the plan table: predicted tokens/s, $/h, $ per 1M tokens, GPUs, bottleneck, solve time."""
    tps, cost = plan.get("predictedTokensPerSecond", 0.0), plan.get("costPerHour", 0.0)
    per_million = cost / (tps * 3600 / 1e6) if tps else 0.0
    return (f"predicted [bold]{fmt_tps(tps)} tokens/s[/] for [bold]${cost:,.2f}/h[/] (${per_million:.3f} per 1M tokens) "
            f"on {plan.get('gpus', 0)} GPUs; bottleneck: {plan.get('bottleneck', '?')}; "
            f"solved in {plan.get('solveSeconds', 0) * 1000:.0f} ms")


def pods_table(pods: list[dict[str, Any]], nodes: dict[str, dict[str, str]], title: str,
               new: set[str] | None = None) -> Any:
    """The job's pods counted per (role, pool, GPU, capacity): total, Running and — when `new` is given — how
    many of them are in `new` (the replacements after a reclaim)."""
    from rich.table import Table

    counts_by_row: dict[tuple[str, str, str, str], list[int]] = {}
    for pod in pods:
        labels = pod["metadata"].get("labels", {})
        node = nodes.get(pod["spec"].get("nodeName") or "", {})
        key = (labels.get("hexrl.dev/role", "?"), node.get("hexrl.dev/pool", "(unscheduled)"),
               node.get("nvidia.com/gpu.product", ""), "spot" if node.get("hexrl.dev/spot") == "true" else "on-demand")
        counts = counts_by_row.setdefault(key, [0, 0, 0])
        counts[0] += 1
        counts[1] += pod.get("status", {}).get("phase") == "Running"
        counts[2] += pod["metadata"]["name"] in (new or set())
    table = Table(title=title, title_justify="left")
    for col in ("role", "pool", "GPU", "capacity", "pods", "running", "new"):
        table.add_column(col, justify="right" if col in ("pods", "running", "new") else "left")
    for (role, pool, gpu, capacity), (total, running, fresh) in sorted(counts_by_row.items()):
        table.add_row(role, pool, gpu, "[yellow]spot" if capacity == "spot" else capacity, str(total), str(running),
                      str(fresh) if new is not None else "")
    return table


def explain_not_running(con: Any, pods: list[dict[str, Any]]) -> None:
    """Say which pods are not Running and what the scheduler or kubelet said about them."""
    stuck = [pod for pod in pods if pod.get("status", {}).get("phase") != "Running"]
    con.print(f"  [yellow]{len(stuck)} of {len(pods)} pods are not Running yet:")
    for pod in stuck[:8]:
        conditions = [cond for cond in pod.get("status", {}).get("conditions", []) if cond.get("status") != "True"]
        why = "; ".join(f"{cond.get('reason', cond['type'])}: {cond.get('message', '')}" for cond in conditions)
        con.print(f"    {pod['metadata']['name']} ({pod.get('status', {}).get('phase', '?')}): {why or 'no condition yet'}")
