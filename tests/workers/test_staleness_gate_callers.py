"""The coordinator and the simulator share one staleness gate: driven alike, they admit the same groups.

Both callers run through their own code paths: the coordinator's `dispatch` / `ingest` / `take_batch` /
`acknowledge` / `discard`, the simulator's `admit` / `give_back` on a real `Simulation`. The coordinator's
steps set the version both see; after every admission both must have started the same number of groups
and both must count the same N_r."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hexrl.sim.engine import Simulation
from hexrl.sim.model import RolloutNode, SimSetup, TrainerSpec
from hexrl.sim.workload import LengthModel
from hexrl_workers.coordinator.core import CoordinatorCore, CoordinatorSettings
from hexrl_workers.protocol import DiscardedSample, Trajectory, WorkItem
from hexrl_workers.tasks import ArithDigits

pytestmark = pytest.mark.workers

OPS = st.lists(st.tuples(st.sampled_from(["admit", "admit", "step", "step", "discard"]), st.integers(0, 1000)),
               min_size=5, max_size=60)


def _simulation(prompts_per_step: int, group_size: int, eta: int) -> Simulation:
    """A one-node job; the test only drives its coordinator side, never its event loop."""
    node = RolloutNode(name="n0", pool="p", gpu="H20", spot=False, gpus=1, replicas=1, tokens_per_second=1.0,
                       slots=64, slot_steps_per_second=100.0, price_per_gpu_hour=1.0, weight_pull_seconds=1.0)
    trainer = TrainerSpec(tokens_per_second=1000.0, gpus=1, nodes=("t0",), pool="p", spot=False,
                          price_per_hour=1.0, publish_seconds=1.0)
    setup = SimSetup(policy="gate-test", rollout=(node,), trainer=trainer, eta=eta, migrate=False,
                     groups_per_step=prompts_per_step, group_size=group_size, prompt_tokens=8,
                     lengths=LengthModel("fixed", 16.0, 16), group_overhead_steps=0.0,
                     reprefill_steps_per_token=0.0, reward_seconds_per_sample=0.0,
                     weight_update_seconds=0.04, wave_seconds=1.0,
                     predicted_tokens_per_second=1.0, planned_cost_per_hour=1.0)
    return Simulation(setup, trace=(), hours=1.0, seed=0)


def _finish(core: CoordinatorCore, item: WorkItem) -> None:
    for spec in item.samples:
        core.ingest(Trajectory(
            item_id=item.item_id, epoch=item.epoch, group_id=item.group_id, group_size=item.group_size,
            sample_index=spec.sample_index, prompt_id=item.prompt.prompt_id, prompt_tokens=[1, 2],
            tokens=[5, 5], logprobs=[-1.0, -1.0], versions=[core.version] * 2, reward=1.0,
        ))


def _train_one_step(core: CoordinatorCore, leased: list[WorkItem]) -> bool:
    """Every leased group finishes, then the trainer takes one batch if there is one; True if it stepped."""
    for item in leased:
        _finish(core, item)
    leased.clear()
    batch = core.take_batch(core.version)
    if batch is None:
        return False
    core.acknowledge(core.version + 1, batch.batch_id)
    return True


def _abandon(core: CoordinatorCore, item: WorkItem) -> None:
    core.discard(DiscardedSample(item_id=item.item_id, epoch=item.epoch, group_id=item.group_id,
                                 sample_index=0, prompt_id=item.prompt.prompt_id, reason="reward-error"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(eta=st.integers(0, 3), prompts_per_step=st.integers(1, 4), group_size=st.integers(1, 4), ops=OPS)
def test_the_coordinator_and_the_simulator_admit_the_same_groups(eta, prompts_per_step, group_size, ops):
    core = CoordinatorCore(CoordinatorSettings(prompts_per_step, group_size, eta), ArithDigits(0))
    sim = _simulation(prompts_per_step, group_size, eta)
    leased: list[WorkItem] = []
    for op, r in ops:
        if op == "admit":
            items, _reason = core.dispatch("w", max_items=1000, now=0.0)
            before = sim.admitted
            sim.admit()
            assert len(items) == (sim.admitted - before) // group_size
            leased += items
        elif op == "step" and _train_one_step(core, leased):
            sim.version = sim.rollout_version = core.version
        elif op == "discard" and leased:
            _abandon(core, leased.pop(r % len(leased)))
            sim.give_back(1)
        assert core.n_requested == sim.admitted
