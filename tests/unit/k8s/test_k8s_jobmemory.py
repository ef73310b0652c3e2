"""What the reconciler remembers per job: the state stored in the ConfigMap (`StoredState`) survives a
round trip unchanged, and the live pod view (`PodView`) counts created pods until the watch shows them and
drops deleted ones at once."""

from __future__ import annotations

import json

import pytest

from hexrl.k8s import render, scaling
from hexrl.k8s.jobmemory import JobMemories, JobMemory, StoredState
from hexrl.k8s.podview import PodView
from hexrl.k8s.store import Store

pytestmark = pytest.mark.unit


def test_stored_state_writes_only_what_it_holds_and_reads_back_what_it_wrote():
    assert StoredState().wire() == {}
    state = StoredState(spec_key="abc", trainer_epoch=2, scale=scaling.ScaleState(extra=1, last_change=5.0,
                                                                                   last_direction="grow"))
    wire = json.loads(json.dumps(state.wire()))
    assert wire == {"specKey": "abc", "trainerEpoch": 2,
                    "scale": {"extra": 1, "lastChange": 5.0, "lastDirection": "grow"}}
    assert StoredState.from_wire(wire) == state


def test_stored_state_keeps_keys_it_does_not_know_and_refuses_a_malformed_epoch():
    assert StoredState.from_wire({"specKey": "k", "fromANewerVersion": [1]}).wire() == {
        "specKey": "k", "fromANewerVersion": [1]}
    with pytest.raises(ValueError, match="stored state is malformed"):
        StoredState.from_wire({"trainerEpoch": "two"})


def test_scale_state_prefers_the_live_one_then_the_stored_one():
    mem = JobMemory("u")
    assert mem.scale_state() == scaling.ScaleState()
    mem.stored.scale = scaling.ScaleState(extra=2)
    assert mem.scale_state().extra == 2
    mem.scale = scaling.ScaleState(extra=3, starved_polls=1)
    assert mem.scale_state().extra == 3


def test_memories_give_each_job_one_memory_and_list_the_others_plans():
    memories = JobMemories()
    a, b = memories.get("a"), memories.get("b")
    assert memories.get("a") is a
    b.plan = object()  # type: ignore[assignment]
    assert memories.plans_except(a) == [b.plan] and memories.plans_except(b) == []
    memories.forget("a")
    assert memories.get("a") is not a


def _pod(name: str) -> dict:
    return {"metadata": {"name": name, "namespace": "default",
                         "labels": {"hexrl.dev/job": "math", "hexrl.dev/role": "rollout", "hexrl.dev/slot": "s0"},
                         "annotations": {render.HASH_ANNOTATION: "h"}}}


def _seen(name: str) -> dict:
    return {"name": name, "namespace": "default", "uid": name, "node": "n", "gpus": 1, "job": "math",
            "role": "rollout", "slot": "s0", "phase": "Running", "terminal": False, "disrupted": False,
            "deleting": False, "ready": True, "ip": "", "problem": None}


def test_the_pod_view_counts_a_created_pod_until_the_watch_shows_it_and_forgets_a_deleted_one():
    store, mem = Store(), JobMemory("u")
    view, ref = PodView(store), render.JobRef("math", "default", "u", 1)
    view.created(mem, _pod("math-rollout-s0-0"))
    (pending,) = view.pods(ref, mem)
    assert pending["name"] == "math-rollout-s0-0" and pending["expected"] and not pending["ready"]
    store.put_pod(_seen("math-rollout-s0-0"))
    (seen,) = view.pods(ref, mem)
    assert seen["ready"] and "math-rollout-s0-0" not in mem.expected
    view.deleted(mem, seen)
    assert view.pods(ref, mem) == []  # the store still lists it; the view does not
