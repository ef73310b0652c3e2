"""Property tests of the coordinator state machine: the staleness bound, no loss, no duplicates."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hexrl_workers.coordinator.core import CoordinatorCore, CoordinatorSettings, RejectedError
from hexrl_workers.protocol import PartialResponse, Trajectory
from hexrl_workers.tasks import ArithDigits

pytestmark = pytest.mark.workers

ACTIONS = st.lists(
    st.tuples(
        # weighted like a busy system: many arrivals, occasional preemptions and releases
        st.sampled_from(["dispatch"] * 3 + ["finish"] * 5 + ["partial", "release"] + ["train"] * 3),
        st.integers(0, 1_000_000),
    ),
    min_size=30,
    max_size=300,
)


def _traj(core: CoordinatorCore, item, spec, worker_version: int) -> Trajectory:
    n_new = 2
    return Trajectory(
        item_id=item.item_id, epoch=item.epoch, group_id=item.group_id, group_size=item.group_size,
        sample_index=spec.sample_index, prompt_id=item.prompt.prompt_id, prompt_tokens=[1, 2],
        tokens=spec.prefix_tokens + [5] * n_new, logprobs=spec.prefix_logprobs + [-1.0] * n_new,
        versions=spec.prefix_versions + [worker_version] * n_new, reward=1.0,
    )


STATS = {"batches": 0, "dropped": 0}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    eta=st.sampled_from([0, 1, 4]),
    prompts_per_step=st.integers(1, 3),
    group_size=st.integers(1, 3),
    actions=ACTIONS,
    eta_changes=st.booleans(),
)
def test_no_trained_sample_violates_the_bound(eta, prompts_per_step, group_size, actions, eta_changes):
    """Random arrival orders, partial migrations, releases and version bumps: every trained sample's
    lag (trainer version − oldest token version) is ≤ η at the time it is trained, every trained prompt
    is trained once, and the gate holds at every dispatch."""
    core = CoordinatorCore(CoordinatorSettings(prompts_per_step, group_size, eta), ArithDigits(0))
    # what each worker "holds": the version it generated with, which lags the coordinator randomly
    inflight: list[tuple] = []  # (item, spec, worker_version)
    trained_prompts: list[int] = []
    for step, (kind, r) in enumerate(actions):
        if eta_changes and step % 37 == 36:
            core.s.max_policy_lag = [0, 1, 4][r % 3]
        if kind == "dispatch":
            before = core.n_requested
            items, _reason = core.dispatch(f"w{r % 3}", 1 + r % 2, now=0.0)
            if core.n_requested > before:
                # AReaL's gate held for the last (hence every) trajectory admitted: floor((N_r-1)/B) <= i + η
                assert (core.n_requested - 1) // core.s.batch_trajectories <= core.version + core.s.max_policy_lag
            lagging = r % (core.version + 1)  # a worker may still run an older version
            for it in items:
                for spec in it.samples:
                    inflight.append((it, spec, max(0, core.version - lagging)))
        elif kind == "finish" and inflight:
            it, spec, wv = inflight.pop(r % len(inflight))
            core.ingest(_traj(core, it, spec, wv))
        elif kind == "partial" and inflight:
            it, spec, wv = inflight.pop(r % len(inflight))
            core.ingest_partial(PartialResponse(
                item_id=it.item_id, epoch=it.epoch, group_id=it.group_id, sample_index=spec.sample_index,
                prompt_id=it.prompt.prompt_id, tokens=[*spec.prefix_tokens, 7], logprobs=[*spec.prefix_logprobs, -2.0],
                versions=[*spec.prefix_versions, wv],
            ))
        elif kind == "release" and inflight:
            it, _, _ = inflight[r % len(inflight)]
            inflight = [x for x in inflight if x[0].item_id != it.item_id]
            core.release(it.item_id)
        elif kind == "train":
            batch = core.take_batch(core.version)
            if batch is None:
                continue
            for t in batch.trajectories:
                assert batch.trainer_version - min(t.versions) <= core.s.max_policy_lag
            assert len(batch.trajectories) == core.s.batch_trajectories
            trained_prompts.extend(sorted({t.prompt_id for t in batch.trajectories}))
            core.acknowledge(core.version + 1, batch.batch_id)
    assert len(trained_prompts) == len(set(trained_prompts)), "a prompt was trained twice"
    STATS["batches"] += core.trained_steps
    STATS["dropped"] += core.dropped_stale
    assert sorted(trained_prompts) == sorted(core.trained_prompt_ids)
    # nothing is lost: every admitted prompt is trained, buffered, in flight, or re-queued
    alive = {g.prompt.prompt_id for g in core.groups.values()} | {p.prompt_id for p in core.requeued}
    assert set(range(core.cursor)) == set(trained_prompts) | alive


def test_property_run_exercised_training_and_drops():
    """Guard against a vacuous property test: the generated runs trained batches and hit the bound."""
    test_no_trained_sample_violates_the_bound()
    assert STATS["batches"] > 100 and STATS["dropped"] > 0, STATS


def test_duplicate_and_stale_epoch_results_are_rejected():
    core = CoordinatorCore(CoordinatorSettings(1, 2, 1), ArithDigits(0))
    (item,), _ = core.dispatch("w", 1, now=0.0)
    t0 = _traj(core, item, item.samples[0], 0)
    core.ingest(t0)
    with pytest.raises(RejectedError, match="not outstanding"):
        core.ingest(t0)
    snap = core.snapshot()
    core.restore(snap)
    with pytest.raises(RejectedError, match="epoch"):
        core.ingest(_traj(core, item, item.samples[1], 0))
    # the lost sample is re-dispatched from scratch in the new epoch and completes the group
    (again,), _ = core.dispatch("w2", 1, now=0.0)
    assert again.samples[0].sample_index == 1 and not again.samples[0].prefix_tokens
    core.ingest(_traj(core, again, again.samples[0], 0))
    assert core.take_batch(0) is not None


def test_gate_blocks_then_opens_with_a_new_version():
    core = CoordinatorCore(CoordinatorSettings(prompts_per_step=1, group_size=2, max_policy_lag=0), ArithDigits(0))
    items, _ = core.dispatch("w", 5, now=0.0)
    assert len(items) == 1  # η = 0: one step's worth of trajectories ahead, no more
    items2, reason = core.dispatch("w", 5, now=0.0)
    assert items2 == [] and reason == "staleness-gate"
    for spec in items[0].samples:
        core.ingest(_traj(core, items[0], spec, 0))
    b = core.take_batch(0)
    core.acknowledge(1, b.batch_id)
    items3, _ = core.dispatch("w", 5, now=0.0)
    assert len(items3) == 1


def test_stale_group_is_dropped_and_its_prompt_requeued():
    core = CoordinatorCore(CoordinatorSettings(prompts_per_step=1, group_size=1, max_policy_lag=1), ArithDigits(0))
    (old,), _ = core.dispatch("slow", 1, now=0.0)
    (a,), _ = core.dispatch("fast", 1, now=0.0)
    core.ingest(_traj(core, a, a.samples[0], 0))
    core.acknowledge(1, core.take_batch(0).batch_id)
    (b,), _ = core.dispatch("fast", 1, now=0.0)
    core.ingest(_traj(core, b, b.samples[0], 1))
    core.acknowledge(2, core.take_batch(1).batch_id)
    core.ingest(_traj(core, old, old.samples[0], 0))  # generated at version 0, now i = 2 > 0 + η
    assert core.take_batch(2) is None
    assert core.dropped_stale == 1
    assert [p.prompt_id for p in core.requeued] == [old.prompt.prompt_id]
    (again,), _ = core.dispatch("fast", 1, now=0.0)
    assert again.prompt.prompt_id == old.prompt.prompt_id


def test_sample_from_rolled_back_weights_is_requeued_at_once_not_held_until_its_lease_expires():
    """After the trainer resumes from a checkpoint the job's version goes back; a worker still holding the
    newer weights produces samples the coordinator must refuse — and hand straight to the next worker."""
    core = CoordinatorCore(CoordinatorSettings(prompts_per_step=1, group_size=2, max_policy_lag=1), ArithDigits(0))
    (item,), _ = core.dispatch("ahead", 1, now=0.0)
    with pytest.raises(RejectedError, match="queued again"):
        core.ingest(_traj(core, item, item.samples[0], worker_version=3))
    assert core.inflight == 1  # only the other sample is still leased to the worker
    (again,), _ = core.dispatch("other", 1, now=1.0)  # long before any lease expiry (600 s)
    assert again.group_id == item.group_id and [s.sample_index for s in again.samples] == [0]
    core.ingest(_traj(core, again, again.samples[0], 0))
    core.ingest(_traj(core, item, item.samples[1], 0))
    assert core.take_batch(0) is not None
