"""Render: (job, plan, snapshot) → child manifests, checked against YAML fixtures and structural rules.

Regenerate the fixtures after an intended change with HEXRL_REGEN_FIXTURES=1 and review the diff.
"""

from __future__ import annotations

import os

import pytest
import yaml
from k8s_helpers import FIXTURES, hetero_nodes, make_plan, rljob

from hexrl.api import workerconfig as wc
from hexrl.api.models import RLJobSpec
from hexrl.k8s import render
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import build_cluster, node_view

pytestmark = pytest.mark.unit
S = OperatorSettings()
JOB = render.JobRef("math", "research", "0000-uid", 3)
TOKENS = {"trainer": "t-tok", "rollout": "r-tok", "operator": "o-tok"}


def snapshot():
    return build_cluster([node_view(n, S) for n in hetero_nodes()], [], None, S)


def spec(**kw):
    return RLJobSpec.model_validate(rljob(**kw)["spec"])


def all_children(plan=None, sp=None):
    plan = plan or make_plan()
    sp = sp or spec()
    snap = snapshot()
    static = render.render_static(JOB, sp, plan, {"gpus": plan.gpus}, 4, {"trainerEpoch": 0}, TOKENS, S)
    trainer = render.render_trainer_pods(JOB, sp, plan, snap, 0, S)
    rollout = [render.render_rollout_pod(JOB, sp, s, 0, snap, S) for s in render.rollout_slots(plan)]
    return static + trainer + rollout


def _stable(docs):
    """The worker config text follows the RLJob API models (other areas add fields with defaults); it is
    checked by parsing in test_configmap_carries_worker_config_live_eta_and_plan, not byte for byte here."""
    out = []
    for d in docs:
        if d["kind"] == "ConfigMap":
            d = {**d, "data": {**d["data"], "config.yaml": "<WorkerConfig>"},
                 "metadata": {**d["metadata"], "annotations": {"hexrl.dev/spec-hash": "<hash>"}}}
        out.append(d)
    return out


def _check_fixture(name, docs):
    docs = _stable(docs)
    path = FIXTURES / name
    text = yaml.safe_dump_all(docs, sort_keys=True)
    if os.environ.get("HEXRL_REGEN_FIXTURES") or not path.exists():
        path.write_text(text)
    assert yaml.safe_load_all(path.read_text()) is not None
    assert list(yaml.safe_load_all(path.read_text())) == docs, f"rendering differs from {path}"


def test_children_match_fixture():
    _check_fixture("children-hetero.yaml", all_children())


def test_priority_classes_match_fixture():
    _check_fixture("priorityclasses.yaml", render.render_priority_classes(S))


def test_every_child_is_owned_and_labelled():
    for obj in all_children():
        meta = obj["metadata"]
        assert meta["ownerReferences"] == [render.owner_ref(JOB)], obj["kind"]
        for key in ("name", "instance", "component", "part-of", "managed-by"):
            assert f"app.kubernetes.io/{key}" in meta["labels"]
        assert meta["labels"]["hexrl.dev/job"] == "math"
        assert meta["labels"]["hexrl.dev/role"] in ("coordinator", "trainer", "rollout")
        assert meta["namespace"] == "research"
        assert len(meta["name"]) <= 253


def test_rollout_pods_follow_the_plan_pool_gpus_spot_and_priority():
    plan = make_plan(rollout=(("h20-spot", "H20", "h20-spot-1", 2, True), ("l40s-ondemand", "L40S", "l40s-ondemand-0", 1, False)))
    snap = snapshot()
    pods = [render.render_rollout_pod(JOB, spec(), s, 0, snap, S) for s in render.rollout_slots(plan)]
    spot, ondemand = pods
    c = spot["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    terms = spot["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0] == {"key": "hexrl.dev/pool", "operator": "In", "values": ["h20-spot"]}
    pref = spot["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert pref[0]["preference"]["matchExpressions"][0]["values"] == ["h20-spot-1"]
    assert spot["spec"]["priorityClassName"] == "hexrl-rollout-spot"
    assert {"key": "karpenter.sh/capacity-type", "operator": "Equal", "value": "spot", "effect": "NoSchedule"} in spot["spec"]["tolerations"]
    assert ondemand["spec"]["priorityClassName"] == "hexrl-rollout"
    assert "tolerations" not in ondemand["spec"]
    assert spot["metadata"]["labels"]["hexrl.dev/pool"] == "h20-spot"
    env = {e["name"]: e for e in c["env"]}
    assert env[wc.ENV_TOKEN]["valueFrom"]["secretKeyRef"] == {"name": "math-token", "key": "rollout"}
    assert env[wc.ENV_TOKEN_DIGESTS]["valueFrom"]["secretKeyRef"] == {"name": "math-token", "key": wc.SECRET_DIGESTS_KEY}
    assert env[wc.ENV_CONFIG]["value"] == wc.DEFAULT_CONFIG_PATH
    assert env[wc.ENV_POD_IP]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def test_priority_order_makes_spot_rollout_yield_first():
    values = {pc["metadata"]["name"]: pc["value"] for pc in render.render_priority_classes(S)}
    assert values["hexrl-rollout-spot"] < values["hexrl-rollout"] < values["hexrl-trainer"]


def test_trainer_gang_ranks_rendezvous_and_pdb():
    plan = make_plan(trainer_nodes=("h800-ondemand-0", "h800-ondemand-1"))
    pods = render.render_trainer_pods(JOB, spec(), plan, snapshot(), 0, S)
    assert len(pods) == 2
    for rank, pod in enumerate(pods):
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert (env["HEXRL_NODE_RANK"], env["HEXRL_NNODES"], env["LOCAL_WORLD_SIZE"]) == (str(rank), "2", "8")
        assert "RANK" not in env and "WORLD_SIZE" not in env  # the pod's launcher gives each process its own
        assert env["MASTER_ADDR"] == "trainer-0.math-trainer.research.svc"
        assert pod["spec"]["hostname"] == f"trainer-{rank}" and pod["spec"]["subdomain"] == "math-trainer"
        expr = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0]
        assert expr["values"] == [plan.trainer.nodes[rank]]
        assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
    pdb = render.render_trainer_pdb(JOB, plan)
    assert pdb["spec"]["minAvailable"] == 2
    tag = render.trainer_epoch_tag(plan, 0)
    headless, weights = render.render_trainer_services(JOB, tag)
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert weights["spec"]["selector"]["hexrl.dev/rank"] == "0"
    # both select exactly this gang's pods (the old gang may still be terminating under the same hostnames)
    for svc in (headless, weights):
        assert all(pods[0]["metadata"]["labels"][k] == v for k, v in svc["spec"]["selector"].items())
        assert svc["spec"]["selector"][render.EPOCH_LABEL] == tag
    # a new epoch (gang restart) gives new names: the old pods may still be terminating
    again = render.render_trainer_pods(JOB, spec(), plan, snapshot(), 1, S)
    assert {p["metadata"]["name"] for p in again}.isdisjoint({p["metadata"]["name"] for p in pods})


def test_configmap_carries_worker_config_live_eta_and_plan():
    plan = make_plan()
    cm = render.render_configmap(JOB, spec(), plan, {"gpus": plan.gpus}, 2, {"trainerEpoch": 1})
    cfg = wc.parse_worker_config(cm["data"][wc.CONFIG_FILE_KEY])
    assert cfg.effective_max_policy_lag() == 2
    assert cfg.coordinator_url == "http://math-coordinator.research.svc:8000"
    assert cfg.weights_url == "http://math-weights.research.svc:8001"
    from hexrl.k8s import plancodec

    assert plancodec.loads(cm["data"][render.PLAN_KEY]) == plan


def test_hash_is_stable_and_changes_with_content():
    a, b = all_children(), all_children()
    assert [o["metadata"]["annotations"][render.HASH_ANNOTATION] for o in a] == [
        o["metadata"]["annotations"][render.HASH_ANNOTATION] for o in b]
    other = all_children(sp=spec(images={"rollout": "example/rollout:2"}))
    changed = {o["metadata"]["name"] for o, p in zip(a, other, strict=True)
               if o["metadata"]["annotations"] != p["metadata"]["annotations"]}
    assert changed and all("rollout" in n or n.endswith("-config") for n in changed)


def test_pipeline_parallel_replica_gets_one_pod_per_stage():
    from dataclasses import replace

    plan = make_plan()
    r = replace(plan.replicas[0], pipeline_parallel=2, tensor_parallel=4, nodes=("h20-spot-0", "h20-spot-1"))
    slots = render.rollout_slots(replace(plan, replicas=(r,)))
    assert [(s.slot, s.node, s.gpus, s.stage) for s in slots] == [
        ("h20-spot-0-s0", "h20-spot-0", 4, 0), ("h20-spot-0-s1", "h20-spot-1", 4, 1)]


def test_suspend_scales_coordinator_to_zero_and_model_pvc_is_mounted():
    dep = render.render_coordinator(JOB, spec(suspend=True), S)[0]
    assert dep["spec"]["replicas"] == 0
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["model"]["persistentVolumeClaim"]["claimName"] == "models"


def test_operator_worker_image_replaces_only_the_built_in_default():
    mirror = OperatorSettings().with_values(worker_image="mirror.internal/hexrl/workers:0.1.0")
    plan = make_plan()
    snap = snapshot()
    default_spec = spec()
    own_spec = spec(images={"rollout": "team/rollout:dev"})

    def images(sp, settings):
        static = render.render_static(JOB, sp, plan, {"gpus": plan.gpus}, 4, {"trainerEpoch": 0}, TOKENS, settings)
        pods = render.render_trainer_pods(JOB, sp, plan, snap, 0, settings)
        pods += [render.render_rollout_pod(JOB, sp, s, 0, snap, settings) for s in render.rollout_slots(plan)]
        deployments = [d for d in static if d["kind"] == "Deployment"]
        roles = [(p["metadata"]["labels"]["hexrl.dev/role"], p["spec"]["containers"][0]["image"]) for p in pods]
        roles += [("coordinator", d["spec"]["template"]["spec"]["containers"][0]["image"]) for d in deployments]
        return dict(roles)

    assert set(images(default_spec, S).values()) == {default_spec.images.rollout}
    assert set(images(default_spec, mirror).values()) == {"mirror.internal/hexrl/workers:0.1.0"}
    own = images(own_spec, mirror)
    assert own["rollout"] == "team/rollout:dev"  # set in the RLJob: the job wins
    assert own["trainer"] == own["coordinator"] == "mirror.internal/hexrl/workers:0.1.0"


def _containers_by_role(sp, settings=S, plan=None):
    """role → the first container of that role's first rendered pod (coordinator from its Deployment)."""
    plan = plan or make_plan()
    snap = snapshot()
    static = render.render_static(JOB, sp, plan, {"gpus": plan.gpus}, 4, {"trainerEpoch": 0}, TOKENS, settings)
    pods = [d["spec"]["template"] for d in static if d["kind"] == "Deployment"]
    pods += render.render_trainer_pods(JOB, sp, plan, snap, 0, settings)
    pods += [render.render_rollout_pod(JOB, sp, s, 0, snap, settings) for s in render.rollout_slots(plan)]
    out = {}
    for p in pods:
        out.setdefault(p["metadata"]["labels"]["hexrl.dev/role"], (p["spec"], p["spec"]["containers"][0]))
    return out


def test_probes_target_the_status_port_each_role_serves_and_only_restartable_roles_get_liveness():
    status_port = {"coordinator": wc.COORDINATOR_PORT, "rollout": wc.RELAY_PORT, "trainer": wc.TRAINER_METRICS_PORT}
    for role, (pod, c) in _containers_by_role(spec()).items():
        ports = {p["containerPort"]: p["name"] for p in c["ports"]}
        ready = c["readinessProbe"]["httpGet"]
        assert ready == {"path": wc.READY_PATH, "port": status_port[role]}, role
        assert ports[status_port[role]] == f"p{status_port[role]}"  # the name the chart's PodMonitor scrapes
        if role == "trainer":
            assert "livenessProbe" not in c and pod["restartPolicy"] == "Never"  # a rank never restarts alone
        else:
            assert c["livenessProbe"]["httpGet"] == {"path": wc.HEALTH_PATH, "port": status_port[role]}
            assert c["startupProbe"]["httpGet"] == c["livenessProbe"]["httpGet"]
            assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 600
        assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
        assert pod["securityContext"]["fsGroup"] == 10001


def test_resources_come_from_the_spec_per_role_with_defaults_and_the_plan_adds_gpus():
    sp = spec(resources={"coordinator": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                         "rollout": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}})
    by_role = _containers_by_role(sp)
    # an unset limit is 4 × the request: every container has a CPU and a memory limit
    assert by_role["coordinator"][1]["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"},
                                                      "limits": {"cpu": "400m", "memory": "1024Mi"}}
    rollout = by_role["rollout"][1]["resources"]
    gpus = rollout["requests"]["nvidia.com/gpu"]
    assert rollout == {"requests": {"cpu": "250m", "memory": "1Gi", "nvidia.com/gpu": gpus},  # memory: the limit
                       "limits": {"cpu": "1000m", "memory": "1Gi", "nvidia.com/gpu": gpus}}
    trainer = by_role["trainer"][1]["resources"]
    assert trainer["requests"] | trainer["limits"] == trainer["limits"]  # GPUs in both
    assert (trainer["requests"]["cpu"], trainer["requests"]["memory"]) == ("1", "2Gi")  # the documented defaults
    assert (trainer["limits"]["cpu"], trainer["limits"]["memory"]) == ("4", "8Gi")


def test_worker_image_pull_policy_applies_to_the_operator_image_only():
    local = OperatorSettings().with_values(worker_image="hexrl.local/hexrl-workers:abc123", worker_image_pull_policy="Never")
    by_role = _containers_by_role(spec(images={"rollout": "team/rollout:dev", "pullPolicy": "Always"}), local)
    assert {r: (c["image"], c["imagePullPolicy"]) for r, (_, c) in by_role.items()} == {
        "coordinator": ("hexrl.local/hexrl-workers:abc123", "Never"),
        "trainer": ("hexrl.local/hexrl-workers:abc123", "Never"),
        "rollout": ("team/rollout:dev", "Always"),  # the RLJob's own image keeps the RLJob's policy
    }
    with pytest.raises(ValueError, match="imagePullPolicy"):
        OperatorSettings().with_values(worker_image_pull_policy="Sometimes")
    env = OperatorSettings.from_env({"HEXRL_OPERATOR_WORKER_IMAGE": "hexrl.local/w:1",
                                     "HEXRL_OPERATOR_WORKER_IMAGE_PULL_POLICY": "IfNotPresent"})
    assert (env.workloads.worker_image, env.workloads.worker_image_pull_policy) == ("hexrl.local/w:1", "IfNotPresent")


def test_coordinator_keeps_off_spot_nodes_unless_the_trainer_may_use_spot():
    """The coordinator holds the buffer: a reclaim of its node would drop it. Required off spot when the
    trainer must be on-demand (the default); only preferred when the trainer may run on spot too."""
    from hexrl.k8s.render_static import coordinator_affinity

    settings = OperatorSettings()
    spec = RLJobSpec.model_validate(rljob()["spec"])
    required = coordinator_affinity(spec, settings)["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    exprs = required["nodeSelectorTerms"][0]["matchExpressions"]
    assert {"key": "karpenter.sh/capacity-type", "operator": "NotIn", "values": ["spot"]} in exprs
    assert {(e["key"], e["values"][0]) for e in exprs} >= set(settings.discovery.spot_labels)
    allowed = rljob()["spec"] | {"placement": {"spot": {"trainer": "allowed"}}}
    affinity = coordinator_affinity(RLJobSpec.model_validate(allowed), settings)["nodeAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in affinity
    assert affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 100


@pytest.mark.parametrize("params,layers,hidden,kv", [(1.5e9, 28, 1536, 2), (7.6e9, 28, 3584, 4), (14.7e9, 48, 5120, 8)])
def test_planned_trainer_pods_carry_a_layout_the_trainer_accepts(params, layers, hidden, kv):
    """Planner → rendered trainer pods → the environment the trainer parses at start-up → accepted."""
    from hexrl.api.trainerlayout import TrainerLayout
    from hexrl.sched import Infeasible
    from hexrl.sched import plan as make_real_plan
    from hexrl.sched.settings import PlannerSettings

    sp = spec(model__shape={"parameters": params, "layers": layers, "hiddenSize": hidden, "kvHeads": kv,
                            "headDim": 128, "vocab": 151936}, budget={"maxCostPerHour": 500})
    snap = snapshot()
    p = make_real_plan(sp, snap.cluster, PlannerSettings(compute_baselines=False))
    assert not isinstance(p, Infeasible), p
    pods = render.render_trainer_pods(JOB, sp, p, snap, 0, S)
    assert len(pods) == len(p.trainer.nodes)
    for node_rank, pod in enumerate(pods):
        env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"] if "value" in e}
        layout, rank = TrainerLayout.from_env(env)
        assert rank == node_rank and layout.world_size == p.trainer.gpus
        layout.check(sp.model.shape)
        gpus = pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
        assert int(gpus) == layout.procs_per_node[node_rank]
