"""Placement: map the MILP's counts to concrete nodes.

The node graph G has one vertex per usable node (free GPUs as an attribute) and an edge between every
two nodes weighted by the bandwidth between them: the pool's node-to-node bandwidth inside a pool
(same zone), the cluster's inter-pool bandwidth otherwise. With networkx:

- Trainer: its ranks are dp·pp items of TP GPUs that must each sit in one node. We pick the
  best-connected domain with room: grow a set from the node with the most free GPUs, always adding the
  neighbour with the highest-bandwidth edge into the set (ties: more free GPUs, then name), until the
  items fit; among all seeds the set with the fewest nodes, then the highest minimum internal
  bandwidth, wins. Within one pool and zone all edges are equal, so this is "fewest whole nodes".
- Rollout: replicas are packed largest first (sizes divide each other, so largest-first never fails
  when the MILP's per-size capacity counts hold). On spot pools each replica goes to the least-loaded
  zone, then the node with the fewest replicas of this job and room for it, so a reclaim takes out as
  few replicas as possible. On on-demand pools replicas fill nodes (fewest nodes touched).
- Re-planning keeps every replica that still fits on the node it ran on before it places new ones.
- A PP replica spans `pp` whole nodes, one stage per node.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import networkx as nx

from hexrl.sched.types import Cluster, NodeInfo, RolloutReplica

__all__ = ["PlacementError", "ReplicaRequest", "node_graph", "place_rollout", "place_trainer"]


class PlacementError(RuntimeError):
    """The counts do not fit the nodes (a bug: the MILP's capacity constraints should prevent this)."""


@dataclass(frozen=True)
class ReplicaRequest:
    """`count` replicas of one configuration on one pool."""

    pool: str
    gpu: str
    tensor_parallel: int
    pipeline_parallel: int
    spot: bool
    count: int
    tokens_per_second: float


def _usable(cluster: Cluster, pools: set[str] | None = None) -> list[NodeInfo]:
    return [n for n in cluster.nodes if n.gpus_free > 0 and (pools is None or n.pool in pools)]


def node_graph(cluster: Cluster, pool_bandwidth: dict[str, float], pools: set[str] | None = None) -> nx.Graph:
    """Nodes with free GPUs; edge weight = GB/s between the two nodes."""
    g = nx.Graph()
    nodes = _usable(cluster, pools)
    for n in nodes:
        g.add_node(n.name, free=n.gpus_free, pool=n.pool, zone=n.zone, spot=n.spot)
    for i, a in enumerate(nodes):
        for b in nodes[i + 1 :]:
            same = a.pool == b.pool and a.zone == b.zone
            if a.clique and a.clique == b.clique:
                bw = pool_bandwidth.get(a.pool, cluster.inter_pool_gbps) * 4
            elif same:
                bw = pool_bandwidth.get(a.pool, cluster.inter_pool_gbps)
            else:
                bw = cluster.inter_pool_gbps
            g.add_edge(a.name, b.name, gbps=bw)
    return g


def _fit(items: list[int], free: dict[str, int], order: Sequence[str]) -> dict[str, int] | None:
    """Largest-first placement of item sizes into `order` nodes; GPUs used per node, or None."""
    left = dict(free)
    used: dict[str, int] = defaultdict(int)
    for size in sorted(items, reverse=True):
        node = next((n for n in order if left[n] >= size), None)
        if node is None:
            return None
        left[node] -= size
        used[node] += size
    return dict(used)


def _aligned(free: int, size: int) -> int:
    return size * (free // size)


def place_trainer(
    cluster: Cluster,
    pool: str,
    items: int,
    item_size: int,
    pool_bandwidth: dict[str, float],
    keep: Sequence[str] = (),
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Nodes and GPUs per node for `items` groups of `item_size` GPUs in `pool` (see the module docstring).

    Nodes of one zone and NVLink clique are equally well connected, so inside such a domain the fewest
    nodes are the ones with the most free GPUs; the domain needing the fewest nodes wins. Only when no
    single domain can hold the trainer does the networkx growth over bandwidth edges run.
    """
    need = [item_size] * items
    total = items * item_size
    usable = _usable(cluster, {pool})
    free = {n.name: n.gpus_free for n in usable}
    if keep and all(k in free for k in keep):
        used = _fit(need, free, list(keep))
        if used is not None:
            return tuple(n for n in keep if n in used), tuple(used[n] for n in keep if n in used)
    domains: dict[tuple[str, str], list[str]] = defaultdict(list)
    for node in usable:
        domains[(node.zone, node.clique)].append(node.name)
    best: list[str] | None = None
    for members in domains.values():
        order = sorted(members, key=lambda n: (-_aligned(free[n], item_size), n))
        acc, chosen = 0, list[str]()
        for n in order:
            if acc >= total:
                break
            if _aligned(free[n], item_size):
                chosen.append(n)
                acc += _aligned(free[n], item_size)
        if acc >= total and (best is None or len(chosen) < len(best)):
            best = chosen
    if best is None:
        best = _grow(cluster, pool, free, item_size, total, pool_bandwidth)
    used = _fit(need, {n: free[n] for n in best}, best)
    if used is None:
        raise PlacementError(f"the trainer's {items}×{item_size} GPUs do not fit pool {pool}")
    members = [n for n in best if n in used]
    return tuple(members), tuple(used[n] for n in members)


def _grow(
    cluster: Cluster, pool: str, free: dict[str, int], size: int, total: int, pool_bandwidth: dict[str, float]
) -> list[str]:
    """Across domains: grow from the roomiest node, adding the node with the best bandwidth into the set."""
    g = node_graph(cluster, pool_bandwidth, {pool})
    if not g.nodes:
        raise PlacementError(f"pool {pool} has no free GPUs for the trainer")
    seed = min(g.nodes, key=lambda n: (-_aligned(free[n], size), n))
    chosen, acc = [seed], _aligned(free[seed], size)
    worst_link = {n: g.edges[n, seed]["gbps"] for n in g.nodes if n != seed}
    while acc < total and worst_link:
        # max() keeps the first of equals, so sorting makes ties go to the lowest node name
        nxt = max(sorted(worst_link), key=lambda n: (worst_link[n], _aligned(free[n], size)))
        del worst_link[nxt]
        chosen.append(nxt)
        acc += _aligned(free[nxt], size)
        for n in worst_link:
            worst_link[n] = min(worst_link[n], g.edges[n, nxt]["gbps"])
    if acc < total:
        raise PlacementError(f"the trainer's {total} GPUs do not fit pool {pool}")
    return chosen


def _place_new(
    req: ReplicaRequest,
    cluster: Cluster,
    free: dict[str, int],
    info: dict[str, NodeInfo],
    per_node: Counter[str],
    remaining: dict[ReplicaRequest, int],
    emit: Callable[[ReplicaRequest, tuple[str, ...]], None],
) -> None:
    """Place the still-missing replicas of one request (see the module docstring for the policy)."""
    pool_nodes = [n.name for n in cluster.nodes if n.pool == req.pool and n.name in free]
    while remaining[req] > 0:
        if req.pipeline_parallel > 1:
            whole = [n for n in pool_nodes if free[n] >= req.tensor_parallel]
            if len(whole) < req.pipeline_parallel:
                raise PlacementError(f"no {req.pipeline_parallel} free nodes in pool {req.pool}")
            nodes = tuple(sorted(whole, key=lambda n: (per_node[n], n))[: req.pipeline_parallel])
            for n in nodes:
                free[n] -= req.tensor_parallel
            emit(req, nodes)
            continue
        fits = [n for n in pool_nodes if free[n] >= req.tensor_parallel]
        if not fits:
            raise PlacementError(f"no node of pool {req.pool} has {req.tensor_parallel} free GPUs")
        if req.spot:
            zone_load: Counter[str] = Counter()
            for n, k in per_node.items():
                zone_load[info[n].zone] += k
            node = min(fits, key=lambda n: (zone_load[info[n].zone], per_node[n], -free[n], n))
        else:
            node = min(fits, key=lambda n: (free[n], n))  # fill nodes: fewest touched
        free[node] -= req.tensor_parallel
        emit(req, (node,))


def place_rollout(
    cluster: Cluster,
    requests: Sequence[ReplicaRequest],
    taken: dict[str, int],
    previous: Sequence[RolloutReplica] = (),
) -> tuple[RolloutReplica, ...]:
    """Concrete replicas for the requests, avoiding GPUs in `taken` (node → GPUs used by the trainer)."""
    free = {n.name: n.gpus_free - taken.get(n.name, 0) for n in cluster.nodes if n.gpus_free > 0}
    info = {n.name: n for n in cluster.nodes}
    per_node: Counter[str] = Counter()
    out: list[RolloutReplica] = []
    remaining = {r: r.count for r in requests}

    def emit(req: ReplicaRequest, nodes: tuple[str, ...]) -> None:
        out.append(
            RolloutReplica(
                pool=req.pool,
                gpu=req.gpu,
                tensor_parallel=req.tensor_parallel,
                pipeline_parallel=req.pipeline_parallel,
                nodes=nodes,
                spot=req.spot,
                tokens_per_second=req.tokens_per_second,
            )
        )
        remaining[req] -= 1
        for n in nodes:
            per_node[n] += 1

    # Largest items first (PP replicas, then by TP): with sizes that divide each other this never
    # fails when the MILP's per-size capacities hold. Within one size, replicas that still fit where
    # they ran before stay there; the rest are placed anew.
    sizes = sorted({(r.pipeline_parallel > 1, r.tensor_parallel) for r in requests}, reverse=True)
    for multi, size in sizes:
        group = [r for r in requests if (r.pipeline_parallel > 1, r.tensor_parallel) == (multi, size)]
        for old in previous:
            if (old.pipeline_parallel > 1, old.tensor_parallel) != (multi, size):
                continue
            req = next(
                (r for r in group if remaining[r] > 0 and (r.pool, r.pipeline_parallel) == (old.pool, old.pipeline_parallel)),
                None,
            )
            if req is not None and all(free.get(n, 0) >= size for n in old.nodes):
                for n in old.nodes:
                    free[n] -= size
                emit(req, old.nodes)
        for req in group:
            _place_new(req, cluster, free, info, per_node, remaining, emit)
    return tuple(out)
