"""The staleness gate of asynchronous RL (AReaL, arXiv 2505.24298): may one more GRPO group start?

One rule, used by the coordinator (`hexrl_workers.coordinator.core`, one group per dispatch) and by the
simulator (`hexrl.sim.engine`, many groups per event), so the two can never disagree. Pure: no I/O,
no state; the callers keep the counts.

The quantities:

- **G**, the group size: responses generated per prompt; a group is admitted, scored and trained whole.
- **B**, trajectories per training step: promptsPerStep × G.
- **N_r**, trajectories admitted into generation so far, counted in trajectories (a group adds G when
  it is admitted); a group given up (dropped as too stale, abandoned by a worker, lost with a trainer
  step) subtracts its G again, because its prompt will be counted anew if it is generated again.
  Trained groups stay counted: N_r numbers the trajectories of the data stream in the order the steps
  consume them.
- **i**, the policy version that will generate the group: the number of optimizer steps taken.
- **η**, the staleness bound (spec.staleness.maxPolicyLag): how many versions a trajectory's policy may
  trail the policy that trains on it.

Trajectories fill the steps in admission order, so the trajectory numbered n (0-based) is expected to be
trained in step floor(n / B). A new group's last trajectory is numbered N_r + G − 1, and it is admitted
only if

    floor((N_r + G − 1) / B) ≤ i + η

that is, the step its last (hence every) trajectory lands in is at most η steps after the version that
generates it: the lag between generating and training policy is at most η. Step k cannot be trained
before version k exists, so without the gate a fast rollout would run ever further ahead and the lag
would grow without bound; with it, at most (i + η + 1)·B trajectories are ever admitted by version i.

The rule is an expectation, not a guarantee: groups finish out of order and stragglers can finish late,
so the consumers also check each group's actual lag when a batch is built.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StalenessGate:
    """AReaL's admission rule for one job's shape (G, B) and bound η."""

    group_size: int
    """G: responses per prompt, trajectories; each admitted group adds G to N_r."""
    batch_trajectories: int
    """B: trajectories per training step (promptsPerStep × G)."""
    max_policy_lag: int
    """η: versions a trajectory's generating policy may trail the training one (0 = synchronous RL)."""

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ValueError(f"the staleness gate's group size must be at least 1 (got {self.group_size}); "
                             "set spec.algorithm.groupSize to a positive number")
        if self.batch_trajectories < 1:
            raise ValueError(f"the staleness gate's batch must hold at least 1 trajectory (got "
                             f"{self.batch_trajectories}); set spec.algorithm.promptsPerStep to a positive number")
        if self.max_policy_lag < 0:
            raise ValueError(f"the staleness bound η must not be negative (got {self.max_policy_lag}); "
                             "set spec.staleness.maxPolicyLag to 0 or more")

    def admits(self, admitted: int, version: int) -> bool:
        """Whether one more group may start, with N_r = `admitted` trajectories and policy `version` (i)."""
        return (admitted + self.group_size - 1) // self.batch_trajectories <= version + self.max_policy_lag

    def room(self, admitted: int, version: int) -> int:
        """How many groups may start now, one after another (each adds G to N_r), at policy `version`.

        The largest n with floor((N_r + n·G − 1) / B) ≤ i + η, i.e. N_r + n·G ≤ (i + η + 1)·B; 0 when the
        gate is shut. Equal to counting `admits` calls until the first refusal."""
        ceiling = (version + self.max_policy_lag + 1) * self.batch_trajectories
        return max(0, (ceiling - admitted) // self.group_size)
