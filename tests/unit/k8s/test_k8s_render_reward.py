"""The reward ConfigMap (spec.reward.configMap) is mounted read-only into rollout pods only."""

from __future__ import annotations

import pytest
from k8s_helpers import hetero_nodes, make_plan, rljob

from hexrl.api.models import RLJobSpec
from hexrl.api.rewardspec import REWARD_MOUNT_DIR
from hexrl.k8s import render
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import build_cluster, node_view

pytestmark = pytest.mark.unit
S = OperatorSettings()
JOB = render.JobRef("math", "research", "0000-uid", 3)
TOKENS = {"trainer": "t-tok", "rollout": "r-tok", "operator": "o-tok"}


def _pods_by_role(sp: RLJobSpec) -> dict[str, dict]:
    plan = make_plan()
    snap = build_cluster([node_view(n, S) for n in hetero_nodes()], [], None, S)
    static = render.render_static(JOB, sp, plan, {"gpus": plan.gpus}, 4, {"trainerEpoch": 0}, TOKENS, S)
    pods = [d["spec"]["template"] for d in static if d["kind"] == "Deployment"]
    pods += render.render_trainer_pods(JOB, sp, plan, snap, 0, S)
    pods += [render.render_rollout_pod(JOB, sp, s, 0, snap, S) for s in render.rollout_slots(plan)]
    return {p["metadata"]["labels"]["hexrl.dev/role"]: p["spec"] for p in pods}


def _reward_mounts(pod: dict) -> tuple[list[dict], list[dict]]:
    vols = [v for v in pod["volumes"] if v["name"] == "reward"]
    mounts = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "reward"]
    return vols, mounts


def test_the_reward_configmap_is_mounted_read_only_in_rollout_pods_only():
    sp = RLJobSpec.model_validate(rljob(reward={"function": "score", "file": f"{REWARD_MOUNT_DIR}/score.py",
                                                "configMap": "my-reward"})["spec"])
    pods = _pods_by_role(sp)
    assert set(pods) == {"coordinator", "trainer", "rollout"}
    vols, mounts = _reward_mounts(pods["rollout"])
    assert vols == [{"name": "reward", "configMap": {"name": "my-reward"}}]
    assert mounts == [{"name": "reward", "mountPath": REWARD_MOUNT_DIR, "readOnly": True}]
    for role in ("coordinator", "trainer"):
        assert _reward_mounts(pods[role]) == ([], []), role


def test_no_reward_volume_without_a_configmap():
    pods = _pods_by_role(RLJobSpec.model_validate(rljob(reward={"function": "math-verify"})["spec"]))
    assert all(_reward_mounts(p) == ([], []) for p in pods.values())
