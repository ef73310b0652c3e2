"""The dataset's volume: a PVC (read-only) or a ConfigMap mounted at /data in the coordinator pod alone."""

from __future__ import annotations

import pytest
from k8s_helpers import make_plan, rljob

from hexrl.api.dataspec import DATA_MOUNT_DIR
from hexrl.api.models import RLJobSpec
from hexrl.k8s import render
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import build_cluster

pytestmark = pytest.mark.unit
S = OperatorSettings()
JOB = render.JobRef("math", "research", "0000-uid", 3)


def _spec(dataset: dict) -> RLJobSpec:
    return RLJobSpec.model_validate(rljob(dataset=dataset)["spec"])


def _coordinator_pod(sp: RLJobSpec) -> dict:
    return render.render_coordinator(JOB, sp, S)[0]["spec"]["template"]["spec"]


def _volume_and_mount(pod: dict) -> tuple[dict | None, dict | None]:
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    return vols.get("dataset"), mounts.get("dataset")


def test_a_dataset_pvc_is_mounted_read_only_at_the_data_dir_of_the_coordinator():
    vol, mount = _volume_and_mount(_coordinator_pod(_spec({"pvc": "math-data", "path": "gsm8k/train.jsonl"})))
    assert vol == {"name": "dataset", "persistentVolumeClaim": {"claimName": "math-data", "readOnly": True}}
    assert mount == {"name": "dataset", "mountPath": DATA_MOUNT_DIR, "readOnly": True}


def test_a_dataset_config_map_is_mounted_at_the_data_dir_of_the_coordinator():
    vol, mount = _volume_and_mount(_coordinator_pod(_spec({"configMap": "gsm8k-sample", "path": "train.jsonl"})))
    assert vol == {"name": "dataset", "configMap": {"name": "gsm8k-sample", "optional": True}}
    assert mount is not None and mount["mountPath"] == DATA_MOUNT_DIR and mount["readOnly"]


def test_no_dataset_volume_without_pvc_or_config_map():
    assert _volume_and_mount(_coordinator_pod(_spec({"path": "/srv/data/train.jsonl"}))) == (None, None)


def test_trainer_and_rollout_pods_never_mount_the_dataset():
    sp = _spec({"pvc": "math-data", "path": "train.parquet"})
    plan = make_plan()
    snap = build_cluster([], [], None, S)
    pods = render.render_trainer_pods(JOB, sp, plan, snap, 0, S)
    pods += [render.render_rollout_pod(JOB, sp, s, 0, snap, S) for s in render.rollout_slots(plan)]
    assert pods
    for pod in pods:
        assert _volume_and_mount(pod["spec"]) == (None, None), pod["metadata"]["name"]
