"""The main example, manifests/examples/rljob.yaml (Qwen2.5-1.5B from the PVC `models`, GSM8K-format data from the
ConfigMap `gsm8k-sample`, the chat template, math-verify), starts its workers on real nodes.

What the test changes, and why: no Qwen weights can be downloaded here, so the PVC holds a tiny Qwen2-style model
(`hexrl tiny-model`'s) under the example's path — the declared shape stays 1.5B, which is what the planner plans
for; the GPU types are the local nodes' (L4) with the trainer allowed on spot (three 2-GPU nodes); pods request a
few hundred millicores (2-core machine); the local worker image. Everything else is the example as shipped: the
operator mounts the ConfigMap at /data in the coordinator, which loads `train.jsonl` through the column mapping;
rollout workers load the model from the PVC, wrap each prompt in the tokenizer's chat template, generate and
score; trajectories reach the coordinator.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from real_harness import ROOT, RealCluster, wait_for
from test_b_tiny_job import Job, pvc, run_with_host_operator

from hexrl_workers.tinymodel import write_tiny_model

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NS = "qwen"
EXAMPLE = ROOT / "manifests" / "examples" / "rljob.yaml"
DATA = ROOT / "manifests" / "examples" / "data" / "gsm8k-configmap.yaml"
SMALL = {"requests": {"cpu": "150m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}


def example_job() -> dict[str, Any]:
    job = yaml.safe_load(EXAMPLE.read_text())
    job["metadata"]["namespace"] = NS
    spec = job["spec"]
    spec["placement"]["gpuTypes"] = ["L4"]
    spec["placement"]["spot"]["trainer"] = "allowed"
    spec["resources"] = {"coordinator": SMALL, "trainer": SMALL, "rollout": SMALL}
    spec.setdefault("images", {})["pullPolicy"] = "Never"
    return job


def named_pvc(name: str) -> dict[str, Any]:
    claim = pvc(NS)
    claim["metadata"]["name"] = name
    return claim


def stage_model(rc: RealCluster, claim: str, path: str, tmp: Path) -> None:
    """Write the tiny model into the host directory behind the bound PVC `claim` (the dev cluster's volumes are
    host paths of this machine), at `path` inside the volume, readable by the workers' user."""
    rc.apply(named_pvc(claim))
    volume = wait_for(lambda: rc.json("get", "pvc", "-n", NS, claim)["spec"].get("volumeName"), 60,
                      f"PVC {claim} bound")
    host_dir = Path(rc.json("get", "pv", volume)["spec"]["hostPath"]["path"]) / path
    built = write_tiny_model(tmp / "model")
    shutil.copytree(built, host_dir, dirs_exist_ok=True)
    host_dir.chmod(0o755)


@pytest.fixture(scope="module")
def job(realcluster: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Job]:
    tmp = tmp_path_factory.mktemp("example")
    spec = example_job()
    configmap = yaml.safe_load(DATA.read_text())
    configmap["metadata"]["namespace"] = NS

    objects = [configmap, named_pvc("ckpt")]
    runner = run_with_host_operator(realcluster, tmp, NS, spec["metadata"]["name"], objects)
    handle = next(runner)
    try:
        src = spec["spec"]["model"]["source"]
        stage_model(realcluster, src["pvc"], src["path"], tmp)
        realcluster.apply(spec)
        yield handle
    finally:
        runner.close()


def test_the_examples_workers_start_and_generate(job: Job) -> None:
    plan = wait_for(lambda: job.status().get("plan"), 180,
                    f"a plan for the example (status: {str(job.status())[:1500]})")
    assert plan["trainer"]["gpu"] == "L4", plan
    wait_for(lambda: job.ready_pods("coordinator"), 300, "the coordinator Ready (its dataset loaded)")
    progress = job.coordinator("/v1/progress")
    assert not progress.get("dataError"), progress
    wait_for(lambda: job.ready_pods("rollout"), 600,
             f"a rollout worker Ready (model from the PVC): {[p['status'].get('containerStatuses') for p in job.pods('rollout')]}")
    wait_for(lambda: job.ready_pods("trainer"), 600, "the trainer Ready (model from the PVC)")

    def generated() -> float:
        coordinator = job.pods("coordinator")[0]
        return sum(v for k, v in job.metrics(coordinator, 8000).items() if k.startswith("hexrl_trajectories_total"))

    wait_for(generated, 600, "trajectories from the rollout workers at the coordinator")
    metrics = job.metrics(job.pods("coordinator")[0], 8000)
    assert not any(k.startswith("hexrl_groups_discarded_total") and v > 0 for k, v in metrics.items()), metrics
