"""The status part alone (`statuswriter.StatusWriter`): what it writes to an RLJob's status and which Events
it posts, through `announce_plan`, `report` and `reject` — with the in-memory API fake, the real Events
poster, and pods put into the store by hand."""

from __future__ import annotations

import pytest
from k8s_helpers import FakeApi, hetero_nodes, make_plan, rljob

from hexrl.api import reasons
from hexrl.api.models import API_VERSION, KIND, RLJobSpec
from hexrl.k8s import render
from hexrl.k8s.announcer import Announcer
from hexrl.k8s.jobmemory import Applied, JobMemory, PassResult, Planned, Trigger
from hexrl.k8s.podview import PodView
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import build_cluster, node_view
from hexrl.k8s.statuswriter import StatusWriter
from hexrl.k8s.store import Store
from hexrl.sched.types import Infeasible

pytestmark = pytest.mark.unit
S = OperatorSettings()


class Desk:
    def __init__(self):
        self.api = FakeApi()
        self.store = Store()
        for n in hetero_nodes():
            self.store.put_node(node_view(n, S))
        self.writer = StatusWriter(self.api, self.store, S, PodView(self.store), Announcer(self.api, "test"))
        self.job = self.api.put_job(rljob("math"))
        meta = self.job["metadata"]
        self.ref = render.JobRef(meta["name"], meta["namespace"], meta["uid"], 1)
        self.spec = RLJobSpec.model_validate(self.job["spec"])
        self.mem = JobMemory(meta["uid"])
        self.snap = build_cluster(self.store.nodes_versioned()[1], [], ("default", "math"), S)

    def planned(self, trigger=Trigger.FIRST, previous=None, lost=0, plan=None):
        return Planned(self.snap, plan or make_plan(), previous, trigger, lost)

    def report(self, planned=None, applied=None):
        out = PassResult()
        self.job = self.api.get(API_VERSION, KIND, "math", "default") or self.job
        applied = applied or Applied(False, 0, Announcer.summary(make_plan()))
        self.writer.report(self.job, self.ref, self.spec, planned or self.planned(), applied, self.mem, out)
        return out

    def status(self):
        return self.api.objects[("RLJob", "default", "math")]["status"]

    def cond(self, ctype):
        return next(c for c in self.status()["conditions"] if c["type"] == ctype)

    def reasons_posted(self):
        return [e["reason"] for e in self.api.events]


def test_a_plan_without_ready_pods_is_reported_as_planning_once():
    d = Desk()
    out = d.report()
    assert out.status_written and d.status()["phase"] == "Planning" and d.status()["gpus"] == 11
    assert d.cond(reasons.PLANNED)["status"] == "True" and d.cond(reasons.READY)["status"] == "False"
    assert not d.report().status_written  # nothing changed: no second write


def test_a_first_plan_is_announced_a_kept_one_is_not():
    d = Desk()
    d.writer.announce_plan(d.job, d.planned(Trigger.FIRST))
    d.writer.announce_plan(d.job, d.planned(None, previous=make_plan()))
    assert d.reasons_posted() == [reasons.PLANNED]
    assert d.api.events[0]["message"].startswith("planned: trainer 8×H800 on h800-ondemand")


def test_a_replan_after_a_node_loss_says_how_many_nodes_were_lost():
    d = Desk()
    moved = make_plan(trainer_nodes=("h800-ondemand-1",))
    d.writer.announce_plan(d.job, d.planned(Trigger.CLUSTER, previous=make_plan(), lost=1, plan=moved))
    (event,) = d.api.events
    assert event["reason"] == reasons.REPLANNED and "re-planned after losing 1 node(s)" in event["message"]


def test_a_rejection_is_a_condition_and_one_event_per_message():
    d = Desk()
    d.writer.reject(d.job, d.mem, "Unschedulable", "no node has 8 free H800")
    d.job = d.api.get(API_VERSION, KIND, "math", "default")
    d.writer.reject(d.job, d.mem, "Unschedulable", "no node has 8 free H800")
    assert d.status()["phase"] == "Pending" and d.cond(reasons.PLANNED)["reason"] == "Unschedulable"
    assert d.reasons_posted() == [reasons.REJECTED]


def test_a_rejected_change_keeps_reporting_the_running_plan_with_planned_false():
    d = Desk()
    d.mem.rejected_change = Infeasible(reason="OverBudget", message="the new budget buys no trainer")
    d.report()
    planned = d.cond(reasons.PLANNED)
    assert planned["status"] == "False" and planned["reason"] == "OverBudget"
    assert planned["message"].endswith("(still running the previous plan)") and d.status()["gpus"] == 11
    assert d.reasons_posted() == [reasons.REJECTED]


def test_a_lost_trainer_keeps_degraded_until_the_new_gang_is_ready():
    d = Desk()
    d.report(applied=Applied(True, 0, Announcer.summary(make_plan())))
    assert d.cond(reasons.DEGRADED)["status"] == "True" and d.mem.trainer_recovering
    d.report()  # the next pass: still not ready, still degraded
    assert d.cond(reasons.DEGRADED)["status"] == "True"
