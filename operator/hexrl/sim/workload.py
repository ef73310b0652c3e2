"""The workload: response lengths of a job, drawn group by group from the cost model's distribution.

The simulator draws lengths from exactly the distribution the planner's cost model reasons about
(`hexrl.sched.costmodel`, module docstring "Response lengths"), so that the two agree by construction:

- `lognormal` (default): `ln L ~ Normal(μ, σ²)` with `σ = CostModelSettings.response_length_sigma` and
  `μ = ln L̄ − σ²/2` (so the untruncated mean is `L̄ = meanNewTokens`), then clipped to
  `[1, maxNewTokens]` because generation stops at the limit;
- `fixed`: every response is `L̄`;
- `uniform`: `L ~ U[a, b]` with `b = min(maxNewTokens, 2L̄)`, `a = 2L̄ − b`.

The planner uses the expected longest response of a group; the simulator draws it, group by group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hexrl.sched.costmodel import CostModelSettings, Workload


@dataclass(frozen=True)
class LengthModel:
    """Response lengths of one job (tokens)."""

    kind: str
    """lognormal | fixed | uniform"""
    mean: float
    """meanNewTokens."""
    cap: int
    """maxNewTokens."""
    mu: float = 0.0
    sigma: float = 0.0
    low: float = 0.0
    high: float = 0.0

    @classmethod
    def from_workload(cls, w: Workload, cost: CostModelSettings) -> LengthModel:
        mean, cap = float(w.mean_new_tokens), int(w.max_new_tokens)
        if w.distribution == "fixed" or mean >= cap:
            return cls("fixed", mean, cap)
        if w.distribution == "uniform":
            high = float(min(cap, 2 * mean))
            return cls("uniform", mean, cap, low=2.0 * mean - high, high=high)
        sigma = cost.response_length_sigma
        return cls("lognormal", mean, cap, mu=math.log(mean) - sigma * sigma / 2, sigma=sigma)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n response lengths (float64 array of whole tokens in [1, cap])."""
        if self.kind == "fixed":
            return np.full(n, float(round(self.mean)))
        if self.kind == "uniform":
            return np.clip(np.rint(rng.uniform(self.low, self.high, size=n)), 1.0, float(self.cap))
        # float32 normals halve the cost of the dominant draw; lengths are whole tokens anyway.
        z = rng.standard_normal(n, dtype=np.float32)
        z *= self.sigma
        z += self.mu
        np.exp(z, out=z)
        return np.clip(np.rint(z), 1.0, float(self.cap)).astype(np.float64)
