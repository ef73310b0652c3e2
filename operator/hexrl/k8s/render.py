"""Render: (job reference, spec, plan, snapshot) → the job's child objects as plain manifests. Pure, one
function per kind.

The functions live in `render_static` (ServiceAccount, NetworkPolicy, Secret, ConfigMap, coordinator,
Services, PDB, PriorityClasses), `render_pods` (trainer gang, rollout replicas) and `render_parts` (the
`JobRef`, names, labels, hash, pod building blocks); this module re-exports them, so callers use
`render.<name>`. Parameters follow the operator's naming: `ref` is the `JobRef`, `spec` the `RLJobSpec`
(the raw RLJob object from the API is `rljob` elsewhere).

Children of an RLJob `J` in namespace `N` (all owned by the RLJob, so deleting it lets the garbage
collector remove them and nothing else):

| object                          | name                          | why                                       |
|---------------------------------|-------------------------------|-------------------------------------------|
| ServiceAccount                  | `J-workers`                   | every job pod's identity, no token mounted|
| NetworkPolicy                   | `J`                           | ingress from the job's own pods (+ below) |
| Secret                          | `J-token`                     | per-role bearer tokens + their digests     |
| ConfigMap                       | `J-config`                    | worker config + live η + the plan          |
| Deployment + Service            | `J-coordinator`               | trajectory buffer, staleness gate          |
| headless Service                | `J-trainer`                   | torch.distributed rendezvous (DNS per rank)|
| Service                         | `J-weights`                   | pull-based weight sync from trainer rank 0 |
| Pods (one per trainer node)     | `J-trainer-<epoch>-<rank>`    | the gang: all ranks or none                |
| PodDisruptionBudget             | `J-trainer`                   | no voluntary eviction of a trainer rank    |
| Pods (one per rollout replica)  | `J-rollout-<slot>-<n>`        | slot = pool + ordinal, n = incarnation     |

Trainer ranks are pods rather than a StatefulSet because each rank is pinned to the node the planner
chose (the planner places the training group in the best-connected domain), and because a gang
restart must replace all ranks at once; the `epoch` in the name makes a restarted gang new objects.
Rollout replicas are pods with a required affinity to their pool and a preferred affinity to the node
the plan chose: a replica survives a re-plan that only moves its preferred node, and the operator — not
a ReplicaSet — decides which replica to replace when a spot node disappears.

Every job pod runs as the job's ServiceAccount with no token mounted and passes the Pod Security Standard
`restricted`: non-root user 10001, RuntimeDefault seccomp, no privilege escalation, no capabilities, a
read-only root filesystem with emptyDirs where the workers write (`render_parts.SCRATCH_DIRS`), CPU and
memory limits. The NetworkPolicy admits the job's own pods, the metrics scrapers on the status ports and
the operator on the coordinator's port.

Every manifest carries the annotation `hexrl.dev/spec-hash` (hash of the rendered manifest), so the
applier can skip objects whose desired state did not change: re-applying an unchanged plan writes nothing.
"""

from __future__ import annotations

from hexrl.k8s.render_parts import (
    EPOCH_LABEL,
    HASH_ANNOTATION,
    HOSTNAME_LABEL,
    PLAN_KEY,
    PRIORITY_VALUES,
    RANK_LABEL,
    RENDEZVOUS_PORT,
    STATE_KEY,
    JobRef,
    coordinator_url,
    labels,
    master_addr,
    meta,
    names,
    owner_ref,
    priority_class_name,
    selector,
    slug,
    spec_hash,
    weights_url,
    with_hash,
)
from hexrl.k8s.render_pods import (
    RolloutSlot,
    render_rollout_pod,
    render_trainer_pods,
    rollout_pod_name,
    rollout_slots,
    trainer_epoch_tag,
)
from hexrl.k8s.render_static import (
    FIRST_KINDS,
    render_configmap,
    render_coordinator,
    render_network_policy,
    render_priority_classes,
    render_secret,
    render_service_account,
    render_static,
    render_trainer_pdb,
    render_trainer_services,
)

__all__ = [
    "EPOCH_LABEL", "FIRST_KINDS", "HASH_ANNOTATION", "HOSTNAME_LABEL", "PLAN_KEY", "PRIORITY_VALUES", "RANK_LABEL",
    "RENDEZVOUS_PORT", "STATE_KEY", "JobRef", "RolloutSlot", "coordinator_url", "labels", "master_addr", "meta",
    "names", "owner_ref", "priority_class_name", "render_configmap", "render_coordinator", "render_network_policy",
    "render_priority_classes", "render_rollout_pod", "render_secret", "render_service_account", "render_static",
    "render_trainer_pdb",
    "render_trainer_pods", "render_trainer_services", "rollout_pod_name", "rollout_slots", "selector", "slug",
    "spec_hash", "trainer_epoch_tag", "weights_url", "with_hash",
]
