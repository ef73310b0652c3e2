"""The reconcile pass against an in-memory API fake and a scripted planner (e2e tests repeat these on a
real control plane with the real planner)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from k8s_helpers import FakeApi, hetero_nodes, make_plan, rljob

from hexrl.api import reasons
from hexrl.k8s.reconcile import Reconciler
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import node_view, pod_view
from hexrl.k8s.store import Store
from hexrl.sched.types import Infeasible

pytestmark = pytest.mark.unit
S = OperatorSettings()


class Planner:
    """Scripted planner: returns `result` and records calls."""

    def __init__(self, result):
        self.result = result
        self.calls: list[str] = []

    def plan(self, spec, cluster):
        self.calls.append("plan")
        return self.result

    def replan(self, spec, cluster, current, *, trainer_may_move=True):
        self.calls.append("replan")
        return self.result


class World:
    def __init__(self, plan=None):
        self.api = FakeApi()
        self.store = Store()
        self.nodes = hetero_nodes()
        for n in self.nodes:
            self.store.put_node(node_view(n, S))
        self.planner = Planner(plan or make_plan())
        self.rec = self.reconciler()
        self.job = self.api.put_job(rljob("math"))

    def reconciler(self):
        return Reconciler(self.api, self.store, S, planner=self.planner.plan, replanner=self.planner.replan)

    def sync(self, run=True):
        """The watch: copy pods into the store (after the scheduler/kwok ran them)."""
        if run:
            self.api.run_pods(self.nodes)
        live = {p["metadata"]["uid"] for p in self.api.pods()}
        for p in self.store.gpu_pods() + self.store.job_pods("default", "math"):
            if p["uid"] not in live:
                self.store.drop_pod(p["uid"])
        for p in self.api.pods():
            self.store.put_pod(pod_view(p))

    def pass_(self):
        self.api.writes.clear()
        return self.rec.reconcile("default", "math")

    def status(self):
        return self.api.objects[("RLJob", "default", "math")]["status"]

    def cond(self, ctype):
        return next(c for c in self.status()["conditions"] if c["type"] == ctype)

    def pods(self, role):
        return sorted(p["metadata"]["name"] for p in self.api.pods() if p["metadata"]["labels"]["hexrl.dev/role"] == role)

    def events(self, reason):
        return [e for e in self.api.events if e["reason"] == reason]


def test_first_pass_creates_all_children_and_reports_the_plan():
    w = World()
    r = w.pass_()
    kinds = sorted(k for k, ns, _ in w.api.objects if k != "RLJob" and ns == "default")
    assert kinds == sorted(["ServiceAccount", "NetworkPolicy", "Secret", "ConfigMap", "Deployment", "Service",
                            "Service", "Service",
                            "PodDisruptionBudget", "Pod", "Pod", "Pod", "Pod"])
    assert r.planned and r.status_written
    assert len(w.pods("trainer")) == 1 and len(w.pods("rollout")) == 3
    st = w.status()
    assert st["phase"] == "Planning" and st["gpus"] == 11 and st["observedGeneration"] == 1
    assert w.cond(reasons.PLANNED)["status"] == "True" and w.cond(reasons.READY)["status"] == "False"
    assert st["plan"]["trainer"]["pool"] == "h800-ondemand"
    assert len(w.events(reasons.PLANNED)) == 1


def test_repeated_passes_create_no_duplicates_and_converge_to_no_writes():
    w = World()
    w.pass_()
    w.pass_()  # the watch has not delivered the new pods yet
    assert len(w.api.pods()) == 4
    w.sync()
    w.pass_()  # pods ready → status only
    assert w.api.writes == [("RLJob/status", "default", "math")]
    assert w.status()["phase"] == "Running" and w.cond(reasons.READY)["status"] == "True"
    r = w.pass_()
    assert w.api.writes == [] and not r.status_written
    assert w.planner.calls == ["plan"]  # unchanged spec and cluster: the planner is not asked again


def test_restarted_operator_resumes_from_the_configmap_without_writes():
    w = World()
    w.pass_()
    w.sync()
    w.pass_()
    w.rec = w.reconciler()  # a fresh process: empty memory
    w.pass_()
    assert w.api.writes == []
    assert w.planner.calls[-1] == "replan"  # from the stored plan, not from scratch


def test_lost_spot_node_replaces_its_rollout_pods_and_leaves_the_trainer():
    w = World()
    w.pass_()
    w.sync()
    w.pass_()
    trainer_before = w.pods("trainer")
    on_lost = [p["metadata"]["name"] for p in w.api.pods() if p["spec"].get("nodeName") == "h20-spot-0"]
    assert len(on_lost) == 2
    # spot node reclaimed: tainted, then the planner moves its replicas to h20-spot-2
    w.nodes[2]["spec"]["taints"] = [{"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}]
    w.store.put_node(node_view(w.nodes[2], S))
    moved = make_plan(rollout=(("h20-spot", "H20", "h20-spot-2", 1, True),) * 2 + (("h20-spot", "H20", "h20-spot-1", 1, True),))
    w.planner.result = moved
    w.nodes.pop(2)
    r = w.pass_()
    assert r.deleted == 2 and r.created == 3  # 2 rollout pods + the ConfigMap with the new plan
    assert w.pods("trainer") == trainer_before
    w.sync()
    assert not [p for p in w.api.pods() if p["spec"].get("nodeName") == "h20-spot-0"]
    assert len(w.pods("rollout")) == 3
    ev = w.events(reasons.REPLANNED)
    assert ev and "after losing 1 node" in ev[-1]["message"]
    assert w.cond(reasons.DEGRADED)["reason"] == reasons.ROLLOUT_PREEMPTED


def test_failed_rollout_pod_is_replaced_with_a_new_incarnation():
    w = World()
    w.pass_()
    w.sync()
    victim = next(p for p in w.api.pods() if p["metadata"]["labels"]["hexrl.dev/role"] == "rollout")
    victim["status"] = {"phase": "Failed"}
    w.sync(run=False)
    w.pass_()
    names = w.pods("rollout")
    assert victim["metadata"]["name"] not in names
    assert victim["metadata"]["name"][:-1] + "1" in names and len(names) == 3


def test_trainer_loss_restarts_the_whole_gang_and_sets_degraded():
    w = World(make_plan(trainer_nodes=("h800-ondemand-0", "h800-ondemand-1")))
    w.pass_()
    w.sync()
    w.pass_()
    old = w.pods("trainer")
    rank1 = next(p for p in w.api.pods() if p["metadata"]["name"] == old[1])
    rank1["status"]["conditions"].append({"type": "DisruptionTarget", "status": "True"})
    w.sync(run=False)
    w.pass_()
    new = w.pods("trainer")
    assert len(new) == 2 and set(new).isdisjoint(old)
    assert w.cond(reasons.DEGRADED)["reason"] == reasons.TRAINER_LOST and w.status()["phase"] == "Degraded"
    assert len(w.events(reasons.TRAINER_LOST)) == 1


def test_infeasible_job_is_rejected_once_with_no_children():
    w = World(Infeasible(reasons.MODEL_DOES_NOT_FIT, "70B needs 2 H100 per replica; the largest node has 1"))
    w.pass_()
    w.pass_()
    assert [k for k, ns, _ in w.api.objects if ns == "default"] == ["RLJob"]
    c = w.cond(reasons.PLANNED)
    assert (c["status"], c["reason"]) == ("False", reasons.MODEL_DOES_NOT_FIT)
    assert "largest node" in c["message"]
    assert len(w.events(reasons.REJECTED)) == 1
    assert w.status()["phase"] == "Pending"


def test_invalid_spec_becomes_a_condition_not_an_exception():
    w = World()
    job = rljob("math")
    job["spec"]["generation"]["meanNewTokens"] = 99999
    job["metadata"]["uid"] = w.job["metadata"]["uid"]
    w.api.objects[("RLJob", "default", "math")]["spec"] = job["spec"]
    w.pass_()
    c = w.cond(reasons.PLANNED)
    assert (c["status"], c["reason"]) == ("False", reasons.INVALID_SPEC) and "meanNewTokens" in c["message"]


def test_condition_transition_time_changes_only_on_flip():
    w = World()
    w.pass_()
    t0 = w.cond(reasons.PLANNED)["lastTransitionTime"]
    w.api.objects[("RLJob", "default", "math")]["status"]["conditions"][0]["lastTransitionTime"] = "2000-01-01T00:00:00Z"
    w.sync()
    w.pass_()  # Ready flips, Planned does not
    assert w.cond(reasons.PLANNED)["lastTransitionTime"] == "2000-01-01T00:00:00Z"
    assert w.cond(reasons.READY)["lastTransitionTime"] >= t0


def test_spec_change_replans_and_updates_live_eta_without_touching_pods():
    w = World()
    w.pass_()
    w.sync()
    w.pass_()
    pods = {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in w.api.pods()}
    job = rljob("math", staleness__maxPolicyLag=1)
    w.api.put_job(job)
    w.pass_()
    assert w.planner.calls[-1] == "replan"
    cm = w.api.objects[("ConfigMap", "default", "math-config")]
    assert "maxPolicyLag: 1\n" in cm["data"]["config.yaml"]
    assert {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in w.api.pods()} == pods
    assert w.status()["observedGeneration"] == 2


def test_scaling_grows_onto_spot_within_budget():
    from hexrl.k8s.scaling import ScaleState

    w = World()
    w.pass_()
    w.sync()
    assert w.rec.scale("default", "math", "grow", ScaleState())
    w.pass_()
    assert len(w.pods("rollout")) == 4
    assert w.events(reasons.SCALED_ROLLOUT)
    mem = w.rec.memory(w.job["metadata"]["uid"])
    assert mem.scale.extra == 1
    assert w.rec.scale("default", "math", "shrink", replace(mem.scale))
    w.pass_()
    assert len(w.pods("rollout")) == 3


def test_trainer_node_lost_moves_the_gang_and_reports_it():
    w = World(make_plan(trainer_nodes=("h800-ondemand-0",)))
    w.pass_()
    w.sync()
    w.pass_()
    old = w.pods("trainer")
    w.store.drop_node("h800-ondemand-0")
    w.nodes = [n for n in w.nodes if n["metadata"]["name"] != "h800-ondemand-0"]
    w.planner.result = make_plan(trainer_nodes=("h800-ondemand-1",))
    w.pass_()
    new = w.pods("trainer")
    assert len(new) == 1 and new != old
    assert w.api.objects[("Pod", "default", new[0])]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["h800-ondemand-1"]
    assert w.cond(reasons.DEGRADED)["reason"] == reasons.TRAINER_LOST
    assert w.events(reasons.TRAINER_LOST) and w.events(reasons.REPLANNED)


def test_job_tokens_are_derived_from_the_operator_key_not_read_back():
    """RBAC: the operator never reads a job's Secret; a restarted operator derives the same tokens. One
    token per calling role, all different, and their digests beside them for the services to check."""
    import base64

    from hexrl.api import jobtokens

    w = World()
    w.pass_()
    key = w.api.objects[("Secret", "hexrl-system", "hexrl-operator-key")]
    assert len(base64.b64decode(key["data"]["key"])) == 32
    data = w.api.objects[("Secret", "default", "math-token")]["data"]
    stored = {k: base64.b64decode(v).decode() for k, v in data.items()}
    assert set(stored) == {"trainer", "rollout", "operator", "digests"}
    tokens = {r: stored[r] for r in jobtokens.TOKEN_ROLES}
    uid = w.job["metadata"]["uid"]
    assert tokens == w.rec.job_tokens(uid) and all(len(t) >= 40 for t in tokens.values())
    assert len(set(tokens.values())) == 3  # a rollout worker's token is not the trainer's
    assert jobtokens.parse_digests(stored["digests"]) == {r: jobtokens.token_digest(t) for r, t in tokens.items()}
    assert w.rec.job_tokens("another-uid")["trainer"] != tokens["trainer"]
    reads: list[tuple[str, str | None]] = []
    get = w.api.get
    w.api.get = lambda v, kind, name, ns=None: (reads.append((kind, ns)), get(v, kind, name, ns))[1]
    w.rec = w.reconciler()  # a fresh process
    w.pass_()
    assert ("Secret", "default") not in reads  # only the key, in the operator's namespace
    assert reads.count(("Secret", "hexrl-system")) == 1
    assert w.rec.job_tokens(uid) == tokens
    assert w.rec.memory(uid).tokens["operator"] == tokens["operator"]  # what the progress poll presents
    # a different key (another installation) gives different tokens
    w.api.objects[("Secret", "hexrl-system", "hexrl-operator-key")]["data"]["key"] = base64.b64encode(b"k" * 32).decode()
    assert w.reconciler().job_tokens(uid)["operator"] != tokens["operator"]


def _set_pod_status(w: World, role: str, status: dict, index: int = 0) -> str:
    """Give the `index`-th pod of `role` a status (what the kubelet/scheduler would report) and sync the watch."""
    name = w.pods(role)[index] if role != "coordinator" else "math-coordinator-7d9f"
    w.api.objects[("Pod", "default", name)]["status"] = status
    w.sync(run=False)
    return name


def test_a_pod_that_cannot_start_is_named_in_ready_with_one_event_per_cause():
    from builders import running, unschedulable, waiting

    w = World()
    w.pass_()
    w.sync()
    w.pass_()
    assert w.cond(reasons.READY)["status"] == "True"
    pod = _set_pod_status(w, "rollout", unschedulable('persistentvolumeclaim "models" not found'), 1)
    w.pass_()
    ready = w.cond(reasons.READY)
    assert (ready["status"], ready["reason"]) == ("False", reasons.POD_UNSCHEDULABLE)
    assert ready["message"].startswith(f'pod {pod}: Unschedulable: persistentvolumeclaim "models" not found')
    (event,) = w.events(reasons.POD_UNSCHEDULABLE)
    assert event["type"] == "Warning" and event["message"] == ready["message"].split(" (")[0]
    w.pass_()
    w.pass_()
    assert len(w.events(reasons.POD_UNSCHEDULABLE)) == 1, "no Event while the cause persists"
    _set_pod_status(w, "rollout", waiting("CrashLoopBackOff", restarts=2, last_exit=1, last_message="boom"), 1)
    w.pass_()
    assert w.cond(reasons.READY)["reason"] == reasons.CRASH_LOOP
    assert "exited with code 1: boom" in w.cond(reasons.READY)["message"]
    assert len(w.events(reasons.CRASH_LOOP)) == 1
    _set_pod_status(w, "rollout", running(ready=True), 1)
    w.pass_()
    assert w.cond(reasons.READY)["status"] == "True"
    _set_pod_status(w, "rollout", unschedulable('persistentvolumeclaim "models" not found'), 1)
    w.pass_()
    assert len(w.events(reasons.POD_UNSCHEDULABLE)) == 2, "the cause came back: a new Event"


def test_a_pod_running_unready_asks_for_a_later_look_and_then_names_the_probe():
    from builders import running

    w = World()
    w.pass_()
    w.sync()
    just_now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    _set_pod_status(w, "trainer", running(ready=False, since=just_now))
    r = w.pass_()
    assert r.recheck_seconds is not None and 0 < r.recheck_seconds <= S.watching.not_ready_grace_seconds + 1
    assert w.cond(reasons.READY)["reason"] == reasons.CHILDREN_PENDING
    long_ago = (datetime.now(UTC) - timedelta(seconds=S.watching.not_ready_grace_seconds + 5)).isoformat()
    pod = _set_pod_status(w, "trainer", running(ready=False, since=long_ago))
    r = w.pass_()
    assert r.recheck_seconds is None
    ready = w.cond(reasons.READY)
    assert ready["reason"] == reasons.POD_NOT_READY and ready["message"].startswith(f"pod {pod}: NotReady:")
    assert "GET :8003/readyz" in ready["message"]


def test_the_coordinators_dataset_error_and_mean_reward_reach_the_status():
    w = World()
    w.pass_()
    w.sync()
    job = w.api.objects[("RLJob", "default", "math")]
    w.rec.set_progress(job["metadata"]["uid"], {"policyVersion": 0, "observedStaleness": 0.0,
                                                "dataError": "dataset unavailable: unknown dataset.name 'gsm8k'"})
    _set_pod_status(w, "coordinator", {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]})
    w.pass_()
    ready = w.cond(reasons.READY)
    assert (ready["status"], ready["reason"]) == ("False", reasons.DATASET_UNAVAILABLE)
    assert "unknown dataset.name 'gsm8k'" in ready["message"]
    assert len(w.events(reasons.DATASET_UNAVAILABLE)) == 1
    w.rec.set_progress(job["metadata"]["uid"], {"policyVersion": 12, "observedStaleness": 1.0,
                                                "meanReward": 0.8765432, "datasetExhausted": True})
    _set_pod_status(w, "coordinator", {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
    w.pass_()
    assert w.cond(reasons.READY)["status"] == "True"
    assert w.status()["progress"]["meanReward"] == 0.877
    assert w.status()["progress"]["datasetExhausted"] is True


def test_a_failed_trainer_rank_is_named_with_its_exit_in_the_trainer_lost_event():
    w = World()
    w.pass_()
    w.sync()
    failed = {"phase": "Failed", "containerStatuses": [{"name": "trainer", "state": {"terminated": {
        "exitCode": 2, "reason": "Error", "message": "hexrl_workers trainer: model.source.path does not exist\n"}}}]}
    pod = _set_pod_status(w, "trainer", failed)
    w.pass_()
    (event,) = w.events(reasons.TRAINER_LOST)
    assert event["message"] == (f"a trainer rank was lost (pod {pod} failed: Error: container trainer exited with code "
                                "2: hexrl_workers trainer: model.source.path does not exist); restarting the trainer "
                                "group from the last checkpoint")


def test_progress_scaling_uses_the_spec_the_last_pass_validated_and_stops_while_it_is_invalid():
    """The progress timer reads η from the job's memory (validated once per pass), not from its own copy of
    the spec; while the spec is invalid it neither scales nor asks for a pass."""
    import asyncio

    from hexrl.k8s.handlers import Operator, _scale_from_progress

    w = World()
    op = Operator(S, w.api, store=w.store, reconciler=w.rec)
    w.pass_()
    w.sync()
    uid = w.job["metadata"]["uid"]
    starving = {"trainerIdleFraction": 0.9, "observedStaleness": 0.0}
    first = asyncio.run(_scale_from_progress(op, "default", "math", uid, starving))
    second = asyncio.run(_scale_from_progress(op, "default", "math", uid, starving))
    assert (first, second) == (False, True)  # two starved polls, then one replica more
    assert w.rec.memory(uid).stored.scale.extra == 1 and w.events(reasons.SCALED_ROLLOUT)
    bad = rljob("math")
    bad["spec"]["staleness"] = {"maxPolicyLag": "soon"}
    w.job = w.api.put_job(bad)
    w.pass_()
    assert w.rec.memory(uid).spec is None
    assert asyncio.run(_scale_from_progress(op, "default", "math", uid, starving)) is None
