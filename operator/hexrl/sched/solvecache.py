"""Reuse of MILP solutions across problems that differ only in how much capacity is left.

An operator plans many jobs against one cluster: a sweep of jobs from one template, the same job
re-planned while other jobs' pods come and go. Their MILPs are identical except for the capacity rows
(K_{q,σ}, the free GPUs per pool and item size) and the replica upper bounds Ū_c — the only data that
depend on what other jobs hold. This cache answers such a problem without a solver call when that is
provably exact.

Why it is exact (a relaxation argument). Write a problem as P(b): the same objective and rows, with the
right-hand sides b = (K, Ū). If b' ≤ b componentwise, every solution feasible for P(b') is feasible for
P(b), so F(b') ⊆ F(b). If x* is optimal for P(b) (within the solver's gap) and x* ∈ F(b'), then x* is
optimal for P(b') within the same gap: nothing in the smaller set beats the best of the larger one.
So a stored (b, x*) answers P(b') when b' ≤ b and x* fits b' (checked with `problem.evaluate`, the same
arithmetic the MILP encodes, plus x*_c ≤ Ū'_c). The only approximation is the objective's cost
tie-break δ = 1e-6·t̄/c̄, whose scale c̄ includes Ū: among plans of *equal* throughput the cheapest is
still preferred, at any δ small enough to act as a tie-break.

Problems with more capacity than any stored one are solved afresh (and stored). A miss solves the
relaxation first: the same problem with the componentwise largest bounds seen for it (b̂ ≥ b). If that
optimum fits b, it is optimal for b by the argument above, and, stored with b̂, it answers every later
problem of the family — concurrent jobs snapshot the cluster in no particular order, so without this
an answer found with slightly less free capacity would not cover a job that saw slightly more. If it
does not fit, the problem itself is solved. Entries are kept per
capacity-free key in a bounded LRU; the cache is thread-safe and holds no reference to clusters.

Concurrency. When several threads miss on the same capacity-free problem at once (a sweep of jobs
applied together), one solves it and the others wait for that answer and then look up again
(single flight), instead of solving the same MILP several times. And at most `max_solvers` solves run
at a time (default 1): the MILP's model building is Python under the GIL, so concurrent solves only
stretch each other (processor sharing makes every job wait for the slowest), while one at a time lets
the first jobs finish first and every cache hit proceed meanwhile.
Pure: no I/O; whoever wants reuse passes a cache to `plan()`/`replan()` (the operator does; the CLI
and tests do not, so their results never depend on call history).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from hexrl.sched.problem import Evaluation, PoolCapacity, Problem, Solution, evaluate

__all__ = ["CacheStats", "SolutionCache"]

_MAX_WAITS = 4
"""Times a thread waits for another's solve of the same problem before solving it itself."""
_WAIT_SECONDS = 120.0
"""Longest wait for another thread's solve (a solve has a time limit per MILP; this bounds the wait)."""

_Bounds = tuple[tuple[tuple[str, tuple[tuple[int, int], ...]], ...], tuple[int, ...]]


@dataclass
class CacheStats:
    """Counters of one cache (for metrics and the benchmark)."""

    hits: int = 0
    """Problems answered from a stored solution (no solver call)."""
    misses: int = 0
    """Problems solved (no stored solution covered them)."""


def _split(p: Problem) -> tuple[Problem, _Bounds]:
    """(the problem with capacities and replica bounds blanked, those right-hand sides)."""
    key = replace(
        p,
        pools=tuple(PoolCapacity(pc.name, ()) for pc in p.pools),
        rollout=tuple(replace(o, max_count=0) for o in p.rollout),
    )
    bounds = (tuple((pc.name, pc.capacity) for pc in p.pools), tuple(o.max_count for o in p.rollout))
    return key, bounds


def _join(a: _Bounds, b: _Bounds) -> _Bounds | None:
    """Componentwise max of two bounds of the same family (None when their shapes differ)."""
    (apools, amax), (bpools, bmax) = a, b
    if len(apools) != len(bpools) or len(amax) != len(bmax):
        return None
    pools = []
    for (an, acap), (bn, bcap) in zip(apools, bpools, strict=True):
        if an != bn or [s for s, _ in acap] != [s for s, _ in bcap]:
            return None
        pools.append((an, tuple((s, max(ka, kb)) for (s, ka), (_, kb) in zip(acap, bcap, strict=True))))
    return tuple(pools), tuple(max(x, y) for x, y in zip(amax, bmax, strict=True))


def _with_bounds(p: Problem, bounds: _Bounds) -> Problem:
    pools, maxes = bounds
    return replace(
        p,
        pools=tuple(PoolCapacity(name, cap) for name, cap in pools),
        rollout=tuple(replace(o, max_count=m) for o, m in zip(p.rollout, maxes, strict=True)),
    )


def _fits(p: Problem, sol: Solution) -> Evaluation | None:
    """The solution's evaluation under `p` when it is feasible there (counts within Ū, every row holds)."""
    if any(y > o.max_count for y, o in zip(sol.counts, p.rollout, strict=True)):
        return None
    ev = evaluate(p, sol.train, sol.counts)
    return ev if ev.feasible else None


def _covers(stored: _Bounds, new: _Bounds) -> bool:
    """new ≤ stored componentwise (same pools and sizes; every K and Ū no larger)."""
    (spools, smax), (npools, nmax) = stored, new
    if len(spools) != len(npools) or len(smax) != len(nmax):
        return False
    for (sn, scap), (nn, ncap) in zip(spools, npools, strict=True):
        if sn != nn or len(scap) != len(ncap):
            return False
        for (ss, sk), (ns, nk) in zip(scap, ncap, strict=True):
            if ss != ns or nk > sk:
                return False
    return all(n <= s for s, n in zip(smax, nmax, strict=True))


class SolutionCache:
    """Bounded, thread-safe store of (bounds, solution) per capacity-free problem."""

    def __init__(self, max_problems: int = 256, per_problem: int = 4, max_solvers: int = 1) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[Problem, threading.Event] = {}
        self._widest: dict[Problem, _Bounds] = {}
        self._gate = threading.Semaphore(max_solvers)
        self._entries: OrderedDict[Problem, list[tuple[_Bounds, Solution]]] = OrderedDict()
        self.max_problems = max_problems
        self.per_problem = per_problem
        self.stats = CacheStats()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def lookup(self, p: Problem) -> Solution | None:
        """A stored solution that is provably optimal for `p` (see the module docstring), or None."""
        key, bounds = _split(p)
        with self._lock:
            candidates = list(self._entries.get(key, ()))
            if candidates:
                self._entries.move_to_end(key)
        for stored, sol in candidates:
            if not _covers(stored, bounds):
                continue
            ev = _fits(p, sol)
            if ev is not None:
                with self._lock:
                    self.stats.hits += 1
                return replace(sol, evaluation=ev, seconds=0.0, solves=0,
                               notes=(*sol.notes, "reused the optimum of the same problem with more free capacity"))
        return None

    def store(self, p: Problem, sol: Solution) -> None:
        key, bounds = _split(p)
        with self._lock:
            entries = self._entries.setdefault(key, [])
            # Older entries stay even when the new bounds cover theirs: a solution found with less
            # capacity may still fit a future problem that the new one does not.
            entries.insert(0, (bounds, sol))
            del entries[self.per_problem:]
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_problems:
                self._entries.popitem(last=False)

    def solve(self, p: Problem, solver: Callable[[Problem], Solution | None]) -> Solution | None:
        """`lookup`, else `solver(p)` and store a found solution (infeasibility is not cached: with more
        capacity later the same problem may become feasible, and the diagnosis path needs the solver)."""
        key, _ = _split(p)
        for _ in range(_MAX_WAITS):
            hit = self.lookup(p)
            if hit is not None:
                return hit
            with self._lock:
                running = self._inflight.get(key)
                if running is None:
                    self._inflight[key] = threading.Event()
                    break
            running.wait(_WAIT_SECONDS)  # then look up again: its answer may cover this problem
        else:
            return self._solve(p, solver, None)
        return self._solve(p, solver, key)

    def _solve(self, p: Problem, solver: Callable[[Problem], Solution | None], key: Problem | None) -> Solution | None:
        k, bounds = _split(p)
        with self._lock:
            self.stats.misses += 1
            widest = _join(self._widest.get(k, bounds), bounds) or bounds
            self._widest[k] = widest
            if len(self._widest) > 4 * self.max_problems:
                self._widest.clear()
        try:
            with self._gate:
                if widest != bounds:
                    relaxed = _with_bounds(p, widest)
                    sol = solver(relaxed)
                    ev = _fits(p, sol) if sol is not None else None
                    if sol is not None and ev is not None:
                        self.store(relaxed, sol)
                        return replace(sol, evaluation=ev)
                sol = solver(p)
            if sol is not None:
                self.store(p, sol)
            return sol
        finally:
            if key is not None:
                with self._lock:
                    done = self._inflight.pop(key, None)
                if done is not None:
                    done.set()
