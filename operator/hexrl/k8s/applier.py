"""The apply part of a reconcile pass: rendered children → server-side apply, pod creates and deletes.

`Applier` brings one job's children to its plan through the API. Its interface is `apply` (a `Planned`
in, an `Applied` out); it sees the job's pods through the shared `PodView` and tells the user about a lost
trainer through the shared `Announce`. In the order a pass runs it:

1. decides the trainer gang (all ranks of one epoch or none: any rank lost restarts the whole gang under
   a new epoch, from the last checkpoint) — before the ConfigMap, which stores the epoch, is written;
2. applies the static children whose desired hash differs from what is there, all before any pod: first
   the pods' ServiceAccount and the NetworkPolicy, then Secret, ConfigMap with `plan.json`, coordinator,
   Services, PDB;
3. decides the trainer gang's and rollout slots' pods, then deletes in one round and creates in one
   round (trainer ranks first): each round is a round trip through the API fan-out.

Independent calls of one pass are fanned out on a pool that serves the jobs seen first first
(`prioritypool`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hexrl.api import reasons
from hexrl.api.models import RLJobSpec
from hexrl.k8s import metrics, render
from hexrl.k8s.announcer import Announce
from hexrl.k8s.jobmemory import (
    Applied,
    JobMemory,
    PassResult,
    Planned,
    Pod,
    epoch_of,
    incarnation,
    spec_key,
    thread_requests,
)
from hexrl.k8s.kubeapi import ApiError, KubeApi
from hexrl.k8s.podview import PodView
from hexrl.k8s.prioritypool import PriorityPool
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import Snapshot
from hexrl.k8s.store import Store
from hexrl.sched.types import Plan

log = logging.getLogger(__name__)


@dataclass
class PodChanges:
    """What brings one part of a job (the trainer gang, rollout, one rollout slot) to its plan."""

    create: list[Pod] = field(default_factory=list)
    """Rendered pods to create."""
    delete: list[Pod] = field(default_factory=list)
    """Pods (as the store shows them) to delete."""
    replaced: int = 0
    """Pods deleted because unhealthy (rollout)."""
    lost: str = ""
    """Why the trainer gang is lost and restarts under a new epoch ("" = it is not)."""


class Applier:
    """Static children, the trainer gang and rollout slots of one job at a time (see the module docstring)."""

    def __init__(
        self, api: KubeApi, store: Store, settings: OperatorSettings, pods: PodView, announce: Announce,
        pool: PriorityPool,
    ) -> None:
        self.api = api
        self.store = store
        self.settings = settings
        self.pods = pods
        self.announce = announce
        self._pool = pool

    def apply(
        self, rljob: dict[str, Any], ref: render.JobRef, spec: RLJobSpec, p: Planned, mem: JobMemory, out: PassResult
    ) -> Applied:
        """Bring every child to the plan; counts what it created and deleted in `out`."""
        # trainer gang: decide the epoch before the ConfigMap (which stores it) is written
        trainer = self._trainer_changes(ref, spec, p.plan, p.snap, mem)
        if trainer.lost:
            self.announce.event(rljob, "Warning", reasons.TRAINER_LOST, f"a trainer rank was lost ({trainer.lost}); "
                                "restarting the trainer group from the last checkpoint")
            metrics.PREEMPTIONS.labels("trainer").inc()
        summary = self._apply_static(ref, spec, p.plan, mem, out)
        if spec.suspend:
            trainer.delete += [q for q in self.store.job_pods(ref.namespace, ref.name) if q["role"] == "trainer"]
            trainer.create = []
        rollout = self._rollout_changes(ref, spec, p.plan, p.snap, mem)
        # one round of deletions (they free the GPUs the new pods may need), then one of creations: trainer
        # ranks first, then rollout — a round trip per round, which a loaded API server makes expensive
        out.deleted += sum(self._fan_out(lambda q: self._delete_pod(ref, mem, q),
                                         trainer.delete + rollout.delete, mem))
        out.created += sum(self._fan_out(lambda pod: self._create_pod(mem, pod), trainer.create + rollout.create, mem))
        if rollout.replaced:
            metrics.PREEMPTIONS.labels("rollout").inc(rollout.replaced)
        return Applied(trainer_lost=bool(trainer.lost), replaced=rollout.replaced, summary=summary)

    def _apply_static(
        self, ref: render.JobRef, spec: RLJobSpec, plan: Plan, mem: JobMemory, out: PassResult
    ) -> dict[str, Any]:
        """Store the spec key and state with the plan, apply the non-pod children; returns the plan summary."""
        eta = spec.staleness.max_policy_lag
        mem.stored.spec_key = spec_key(spec)
        summary = self.announce.summary(plan)
        static = render.render_static(ref, spec, plan, summary, eta, mem.stored.wire(), mem.tokens, self.settings)
        # two rounds: the pods' ServiceAccount and NetworkPolicy exist before anything that makes pods
        first = [o for o in static if o["kind"] in render.FIRST_KINDS]
        out.created += self._apply_all(first, mem)
        out.created += self._apply_all([o for o in static if o["kind"] not in render.FIRST_KINDS], mem)
        return summary

    # ------------------------------------------------------------------------------------ objects

    def _apply_all(self, objs: list[dict[str, Any]], mem: JobMemory) -> int:
        """Apply objects whose desired hash differs from what is there, concurrently (they are independent;
        all are written before any pod is created); returns how many were written."""

        def one(obj: dict[str, Any]) -> int:
            key = (obj["kind"], obj["metadata"]["name"])
            want = obj["metadata"]["annotations"][render.HASH_ANNOTATION]
            if mem.child_hashes.get(key) == want:
                return 0
            # A Secret is never read back (no RBAC for it): its apply is idempotent, and the token derived.
            if key not in mem.child_hashes and not mem.fresh and obj["kind"] != "Secret":
                existing = self.api.get(obj["apiVersion"], obj["kind"], obj["metadata"]["name"],
                                        obj["metadata"].get("namespace"))
                have = ((existing or {}).get("metadata", {}).get("annotations") or {}).get(render.HASH_ANNOTATION)
                if existing is not None and have == want:
                    mem.child_hashes[key] = want
                    return 0
            self.api.apply(obj)
            mem.child_hashes[key] = want
            metrics.CHILDREN_CREATED.labels(obj["kind"]).inc()
            return 1

        return sum(self._fan_out(one, objs, mem))

    def _create_pod(self, mem: JobMemory, pod: dict[str, Any]) -> int:
        try:
            self.api.create(pod)
        except ApiError as exc:
            if exc.reason != "AlreadyExists":
                raise
            return 0
        self.pods.created(mem, pod)
        metrics.CHILDREN_CREATED.labels("Pod").inc()
        return 1

    def _delete_pod(self, ref: render.JobRef, mem: JobMemory, p: Pod) -> int:
        node_gone = bool(p.get("node")) and p["node"] not in self.store.node_names()
        # a pod on a vanished node is never confirmed dead by a kubelet: remove it at once
        grace = 0 if node_gone else None
        ok = self.api.delete("v1", "Pod", p["name"], ref.namespace, grace_seconds=grace, uid=p.get("uid") or None)
        self.pods.deleted(mem, p)
        if ok:
            metrics.CHILDREN_DELETED.labels("Pod").inc()
        return int(ok)

    def _fan_out(self, fn: Callable[[Any], int], items: list[Any], mem: JobMemory) -> list[int]:
        """Run independent API calls of one pass concurrently (pods of a big plan are created in parallel),
        queued behind the calls of jobs this process saw earlier (see `prioritypool`)."""
        if len(items) <= 1:
            return [fn(i) for i in items]

        def counted(item: Any) -> tuple[int, int]:
            before = thread_requests(self.api)
            return fn(item), thread_requests(self.api) - before

        done = self._pool.map(counted, items, priority=mem.seen_at)
        credit = getattr(self.api, "credit", None)
        if credit is not None:
            credit(sum(n for _, n in done))  # the pass's requests, made on helper threads
        return [r for r, _ in done]

    # ------------------------------------------------------------------------------------ pods

    def _pod_bad(self, p: Pod, snap: Snapshot) -> str:
        """Why a pod must be replaced ("" = healthy or still starting)."""
        if p["terminal"]:
            return "failed" if p["phase"] == "Failed" else "completed"
        if p["disrupted"]:
            return "disrupted"
        if p["node"]:
            if p["node"] in snap.going_away:
                return f"node {p['node']} {snap.going_away[p['node']]}"
            if p["node"] not in self.store.node_names():
                return f"node {p['node']} is gone"
        return ""

    def _trainer_changes(
        self, ref: render.JobRef, spec: RLJobSpec, plan: Plan, snap: Snapshot, mem: JobMemory
    ) -> PodChanges:
        """The trainer gang's pods to create and delete, and why the gang is lost ("" if it is not): all ranks
        of an incarnation or none."""
        epoch = mem.stored.epoch
        pods = [p for p in self.pods.pods(ref, mem) if p["role"] == "trainer"]
        tag = render.trainer_epoch_tag(plan, epoch)
        current = [p for p in pods if (p.get("epoch") or epoch_of(p["name"], ref)) == tag]
        # any rank of any incarnation dying counts (a re-plan may already have moved the trainer off a lost node)
        lost = next((_lost_sentence(p, why) for p in pods if (why := self._pod_bad(p, snap))), "")
        desired = render.render_trainer_pods(ref, spec, plan, snap, epoch, self.settings)
        if current and not lost:
            # a rank vanished after the gang was created (e.g. its node was deleted): the gang is broken
            have = {p["name"] for p in current}
            lost = next((f"pod {d['metadata']['name']} is gone" for d in desired if d["metadata"]["name"] not in have),
                        "")
        if lost:
            epoch += 1
            mem.stored.trainer_epoch = epoch
            desired = render.render_trainer_pods(ref, spec, plan, snap, epoch, self.settings)
        keep = {d["metadata"]["name"] for d in desired}
        delete = [p for p in pods if p["name"] not in keep]
        have = {p["name"] for p in pods}
        create = [d for d in desired if d["metadata"]["name"] not in have]
        return PodChanges(create, delete, lost=lost)

    def _rollout_changes(
        self, ref: render.JobRef, spec: RLJobSpec, plan: Plan, snap: Snapshot, mem: JobMemory
    ) -> PodChanges:
        """What brings rollout to one healthy pod per planned slot."""
        pods = [p for p in self.pods.pods(ref, mem) if p["role"] == "rollout"]
        by_slot: dict[str, list[Pod]] = {}
        for p in pods:
            by_slot.setdefault(p["slot"], []).append(p)
        changes = PodChanges()
        slots = [] if spec.suspend else render.rollout_slots(plan)
        wanted = {s.slot for s in slots}
        for slot in slots:
            one = self._rollout_slot(ref, spec, slot, by_slot.get(slot.slot, []), snap)
            changes.create += one.create
            changes.delete += one.delete
            changes.replaced += one.replaced
        for s, ps in by_slot.items():
            if s not in wanted:
                changes.delete.extend(ps)
        return changes

    def _rollout_slot(
        self, ref: render.JobRef, spec: RLJobSpec, slot: render.RolloutSlot, pods: list[Pod], snap: Snapshot
    ) -> PodChanges:
        """One slot: keep the oldest healthy pod whose manifest is current, delete the rest, create a next
        incarnation when none is kept."""
        have = sorted(pods, key=lambda p: incarnation(p["name"]))
        keep = None
        replaced = 0
        to_delete: list[Pod] = []
        for p in have:
            why = self._pod_bad(p, snap)
            inc = incarnation(p["name"])
            want_hash = render.render_rollout_pod(ref, spec, slot, inc, snap, self.settings)["metadata"][
                "annotations"][render.HASH_ANNOTATION]
            matches = (p.get("hash") or want_hash) == want_hash
            if why or not matches or keep is not None:
                if why and why not in ("completed",):
                    replaced += 1
                    log.info("job %s/%s: replacing rollout pod %s: %s", ref.namespace, ref.name, p["name"], why)
                to_delete.append(p)
            else:
                keep = p
        if keep is not None:
            return PodChanges([], to_delete, replaced=replaced)
        inc = max((incarnation(p["name"]) for p in have), default=-1) + 1
        return PodChanges([render.render_rollout_pod(ref, spec, slot, inc, snap, self.settings)], to_delete,
                          replaced=replaced)



def _lost_sentence(pod: Pod, why: str) -> str:
    """`pod X failed: Error: container trainer exited with code 2: …` — what the TrainerLost Event says."""
    problem = pod.get("problem")
    return f"pod {pod['name']} {why}" + (f": {problem['cause']}: {problem['detail']}" if problem else "")
