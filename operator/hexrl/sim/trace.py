"""Spot preemption traces: when which node is reclaimed and when capacity returns.

A trace is a time-ordered list of `NodeEvent(time_s, pool, node, kind)` with kind `preempt` or `return`.
Two sources:

- **Poisson (default)**: every node of a spot pool with `preemptionsPerNodeHour = λ > 0` alternates
  between up periods `~ Exp(λ)` and outages `~ Exp(1 / mean_outage)`; independent nodes, one numpy
  Generator seeded by the run's seed, so a seed fixes the trace.
- **A file** (CSV or YAML) a user recorded or wrote by hand. CSV has a header with the columns
  `time,pool,node,event` (lines starting with `#` are comments); YAML is a list of mappings with the same keys (or a mapping with an `events:`
  list). `time` is seconds from the start, or a duration: `90s`, `15m`, `2.5h`, `1h20m`. `node` may be
  empty: a `preempt` then takes the pool's first node that is up, a `return` brings back the pool's
  first node that is down (resolved by the engine, deterministically).

Problems in a file raise `TraceError` naming the row and the field.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hexrl.sched.types import Cluster

PREEMPT = "preempt"
RETURN = "return"


class TraceError(ValueError):
    """A trace file is malformed; the message names the row and the field."""


@dataclass(frozen=True, order=True)
class NodeEvent:
    """One capacity change."""

    time_s: float
    """Seconds from the start of the run."""
    pool: str
    node: str
    """Node name (`<pool>-<i>` for inventories); empty = any node of the pool (see module doc)."""
    kind: str
    """preempt | return"""


def poisson_trace(cluster: Cluster, hours: float, seed: int, mean_outage_hours: float) -> tuple[NodeEvent, ...]:
    """Alternating Exp(λ) up times and Exp(1/mean_outage) outages for every node of every spot pool.

    Nodes are visited in name order and each gets its own child generator (`SeedSequence.spawn`), so
    adding a pool does not change the trace of the others.
    """
    horizon = hours * 3600.0
    rates = {p.name: p.preemptions_per_node_hour for p in cluster.pools if p.spot and p.preemptions_per_node_hour > 0}
    nodes = sorted((n for n in cluster.nodes if n.pool in rates), key=lambda n: n.name)
    children = np.random.SeedSequence([seed, 0x5107]).spawn(len(nodes))
    events: list[NodeEvent] = []
    for node, child in zip(nodes, children, strict=True):
        rng = np.random.default_rng(child)
        up_mean = 3600.0 / rates[node.pool]
        down_mean = 3600.0 * mean_outage_hours
        t = 0.0
        while True:
            t += float(rng.exponential(up_mean))
            if t >= horizon:
                break
            events.append(NodeEvent(t, node.pool, node.name, PREEMPT))
            t += float(rng.exponential(down_mean))
            if t >= horizon:
                break
            events.append(NodeEvent(t, node.pool, node.name, RETURN))
    return tuple(sorted(events))


_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


_PART = re.compile(r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(h|min|m|s)?")


def _shown(value: Any) -> str:
    """The value for a message, cut short (a huge integer's repr is refused by Python itself)."""
    try:
        text = repr(value)
    except ValueError:
        return "an integer with thousands of digits"
    return text if len(text) <= 80 else text[:77] + "..."


def parse_time(value: Any, where: str) -> float:
    """Seconds from a number or a string like `90`, `90s`, `15m`, `2.5h`, `1h20m`, `2h30m15s`."""
    bad = f"{where}: time must be seconds or a duration like 90s, 15m, 2.5h or 1h20m, got {_shown(value)}"
    if isinstance(value, bool) or value is None:
        raise TraceError(bad)
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond a float's range (10**400): no sensible time either
            raise TraceError(f"{where}: time must be a non-negative number of seconds, got an integer too "
                             "large for a float") from None
    else:
        text = str(value).replace(" ", "")
        parts = list(_PART.finditer(text))
        if not text or "".join(p.group(0) for p in parts) != text:
            raise TraceError(bad)
        if len(parts) > 1 and any(p.group(2) is None for p in parts):
            raise TraceError(bad)
        seconds = sum(float(p.group(1)) * _UNITS[p.group(2) or ""] for p in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise TraceError(f"{where}: time must be a non-negative number of seconds, got {_shown(value)}")
    return seconds


def _rows_from_text(text: str, suffix: str) -> list[Mapping[str, Any]]:
    if suffix in (".yaml", ".yml", ".json"):
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise TraceError(f"the trace is not valid YAML: {e}") from None
        if isinstance(doc, Mapping):
            doc = doc.get("events")
        if not isinstance(doc, list):
            raise TraceError("a YAML trace must be a list of {time, pool, node, event} (or have an `events:` list)")
        return doc
    # Lines starting with '#' are comments (a header note on where the trace came from).
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    reader = csv.DictReader(io.StringIO(body))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("time", "pool", "event") if c not in header]
    if missing:
        raise TraceError(f"the CSV trace needs a header with time,pool,node,event; missing: {', '.join(missing)}")
    return [{(k or "").strip(): v for k, v in row.items()} for row in reader]


def parse_trace(rows: Iterable[Any], cluster: Cluster) -> tuple[NodeEvent, ...]:
    """Validate trace rows against the cluster (pool and node names must exist)."""
    pools = {p.name: p for p in cluster.pools}
    nodes = {n.name: n for n in cluster.nodes}
    events: list[NodeEvent] = []
    for i, row in enumerate(rows):
        where = f"trace row {i + 1}"
        if not isinstance(row, Mapping):
            raise TraceError(f"{where} must be a mapping with time, pool, node, event")
        unknown = set(row) - {"time", "pool", "node", "event"}
        if unknown:
            raise TraceError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}; use time, pool, node, event")
        t = parse_time(row.get("time"), f"{where}.time")
        pool = str(row.get("pool") or "").strip()
        if pool not in pools:
            raise TraceError(f"{where}.pool {pool!r} is not a pool of the inventory; pools: {', '.join(pools)}")
        node = str(row.get("node") or "").strip()
        if node and (node not in nodes or nodes[node].pool != pool):
            raise TraceError(f"{where}.node {node!r} is not a node of pool {pool!r} (nodes are named {pool}-0, {pool}-1, …)")
        kind = str(row.get("event") or "").strip().lower()
        if kind not in (PREEMPT, RETURN):
            raise TraceError(f"{where}.event must be preempt or return, got {row.get('event')!r}")
        events.append(NodeEvent(t, pool, node, kind))
    # Stable order: by time, then file order (sorted() on the tuple would reorder same-time rows).
    return tuple(sorted(events, key=lambda e: e.time_s))


def parse_trace_text(text: str, suffix: str, cluster: Cluster) -> tuple[NodeEvent, ...]:
    """A trace from its text, read by the caller: YAML/JSON when `suffix` is .yaml, .yml or .json, else CSV."""
    return parse_trace(_rows_from_text(text, suffix.lower()), cluster)


def load_trace(path: Path, cluster: Cluster) -> tuple[NodeEvent, ...]:
    """Read a CSV or YAML trace file (see module doc)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise TraceError(f"cannot read the trace file {path}: {e.strerror or e}") from None
    return parse_trace_text(text, path.suffix, cluster)
