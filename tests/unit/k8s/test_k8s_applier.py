"""The apply part alone (`applier.Applier`): a `Planned` in, children through the API, an `Applied` out —
with the in-memory API fake, a store fed by hand, and a recording stand-in for the Events interface."""

from __future__ import annotations

import json

import pytest
from k8s_helpers import FakeApi, hetero_nodes, make_plan, rljob

from hexrl.api import reasons
from hexrl.api.models import RLJobSpec
from hexrl.k8s import render
from hexrl.k8s.announcer import Announcer
from hexrl.k8s.applier import Applier
from hexrl.k8s.jobmemory import JobMemory, PassResult, Planned, Trigger
from hexrl.k8s.podview import PodView
from hexrl.k8s.prioritypool import PriorityPool
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import build_cluster, node_view, pod_view
from hexrl.k8s.store import Store

pytestmark = pytest.mark.unit
S = OperatorSettings()


class RecordedEvents:
    """The `Announce` interface, recording Events instead of posting them (summaries as the real one)."""

    def __init__(self):
        self.events: list[tuple[str, str, str]] = []

    def event(self, job, etype, reason, message):
        self.events.append((etype, reason, message))

    def event_once(self, job, mem, etype, reason, message):
        self.event(job, etype, reason, message)

    summary = staticmethod(Announcer.summary)
    sentence = staticmethod(Announcer.sentence)


class Bench:
    def __init__(self, **spec):
        self.api = FakeApi()
        self.store = Store()
        self.nodes = hetero_nodes()
        for n in self.nodes:
            self.store.put_node(node_view(n, S))
        self.announce = RecordedEvents()
        self.pool = PriorityPool(4, name="test-apply")
        self.applier = Applier(self.api, self.store, S, PodView(self.store), self.announce, self.pool)
        self.job = self.api.put_job(rljob("math"))
        meta = self.job["metadata"]
        self.ref = render.JobRef(meta["name"], meta["namespace"], meta["uid"], 1)
        self.spec = RLJobSpec.model_validate({**self.job["spec"], **spec})
        self.mem = JobMemory(meta["uid"], fresh=True)

    def apply(self, plan=None):
        plan = plan or make_plan()
        snap = build_cluster(self.store.nodes_versioned()[1], self.store.gpu_pods(), (self.ref.namespace, "math"), S)
        out = PassResult()
        applied = self.applier.apply(self.job, self.ref, self.spec, Planned(snap, plan, None, Trigger.FIRST, 0),
                                     self.mem, out)
        return applied, out

    def watch(self):
        """What the scheduler and the watch do: run the pods, show them in the store."""
        self.api.run_pods(self.nodes)
        for p in self.api.pods():
            self.store.put_pod(pod_view(p))

    def fail(self, role):
        pod = next(p for p in self.api.pods() if p["metadata"]["labels"]["hexrl.dev/role"] == role)
        pod["status"] = {"phase": "Failed"}
        self.store.put_pod(pod_view(pod))
        return pod["metadata"]["name"]

    def names(self, role):
        return sorted(p["metadata"]["name"] for p in self.api.pods() if p["metadata"]["labels"]["hexrl.dev/role"] == role)


@pytest.fixture
def bench():
    b = Bench()
    yield b
    b.pool.shutdown()


def test_a_first_apply_creates_the_static_children_and_one_pod_per_rank_and_slot(bench):
    applied, out = bench.apply()
    assert len(bench.names("trainer")) == 1 and len(bench.names("rollout")) == 3
    assert ("ConfigMap", "default", "math-config") in bench.api.objects
    assert applied == type(applied)(trainer_lost=False, replaced=0, summary=Announcer.summary(make_plan()))
    assert out.created == len(bench.api.objects) - 1 and bench.announce.events == []  # all but the RLJob


def test_a_repeated_apply_before_the_watch_shows_the_pods_creates_nothing(bench):
    bench.apply()
    _, out = bench.apply()
    assert out.created == 0 and out.deleted == 0 and len(bench.api.pods()) == 4


def test_a_failed_trainer_rank_restarts_the_gang_under_the_next_epoch_and_says_so(bench):
    bench.apply()
    bench.watch()
    old = bench.fail("trainer")
    applied, out = bench.apply()
    assert applied.trainer_lost and bench.mem.stored.trainer_epoch == 1
    assert old not in bench.names("trainer") and len(bench.names("trainer")) == 1 and out.deleted >= 1
    ((etype, reason, message),) = bench.announce.events
    assert (etype, reason) == ("Warning", reasons.TRAINER_LOST) and old in message


def test_a_failed_rollout_pod_is_replaced_by_its_slots_next_incarnation(bench):
    bench.apply()
    bench.watch()
    old = bench.fail("rollout")
    applied, _ = bench.apply()
    assert applied.replaced == 1 and not applied.trainer_lost
    assert old not in bench.names("rollout") and len(bench.names("rollout")) == 3
    assert any(n.startswith(old.rsplit("-", 1)[0]) and n.endswith("-1") for n in bench.names("rollout"))


def test_suspending_deletes_the_trainer_and_rollout_pods_but_keeps_the_rest():
    b = Bench()
    b.apply()
    b.watch()
    b.spec = b.spec.model_copy(update={"suspend": True})
    _, out = b.apply()
    assert b.names("trainer") == [] and b.names("rollout") == [] and out.deleted == 4
    assert ("ConfigMap", "default", "math-config") in b.api.objects
    b.pool.shutdown()


def test_the_stored_state_goes_into_the_configmap(bench):
    bench.apply()
    data = bench.api.objects[("ConfigMap", "default", "math-config")]["data"]
    assert json.loads(data[render.STATE_KEY]) == {"specKey": bench.mem.stored.spec_key}
