"""A planned multi-node, multi-process trainer runs on real nodes: two trainer pods on two nodes, each
pod's launcher starts one process per GPU, the four ranks rendezvous across the pods through the trainer's
headless Service, and the DP2×TP2 gang — FSDP2 across the pods, tensor parallelism inside each — trains
the job, publishes weights that reach the rollout, and checkpoints its shards to a volume both pods mount.

The job is the tiny one with its declared size raised to 3B parameters (the cost model's input; the
workers still build the tiny model from its layer shapes), the trainer allowed on spot and a $2/h budget:
then the planner puts the trainer on the two spot nodes, DP2×TP2 with FSDP (4 query heads, 2 key/value
heads and an MLP of 128 split over 2), and the rollout on the on-demand node. The operator renders the
layout into the pods, the launcher reads it, and each rank checks it at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from real_harness import RealCluster, wait_for
from test_b_tiny_job import TINY, Job, pvc, run_with_host_operator

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NS = "gang"
JOB = "gang"


def tp_job() -> dict[str, Any]:
    job = yaml.safe_load(TINY.read_text())
    job["metadata"] = {"name": JOB, "namespace": NS}
    spec = job["spec"]
    spec["model"]["shape"]["parameters"] = 3.0e9
    spec["algorithm"]["totalSteps"] = 400
    spec["budget"] = {"maxCostPerHour": 2}
    spec["placement"] = {"spot": {"rollout": "allowed", "trainer": "allowed", "onDemandRolloutFloor": 0.0}}
    # one claim both trainer pods mount (the dev cluster's volumes are host paths of this machine)
    spec["checkpoint"] = {"pvc": "gang-ckpt", "path": "/checkpoints", "everySteps": 4, "keep": 1}
    # the launcher and two ranks: three Python processes with torch in one pod
    spec["resources"]["trainer"] = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    spec.setdefault("images", {})["pullPolicy"] = "Never"
    return dict(job)


@pytest.fixture(scope="module")
def gang(realcluster: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Job]:
    claim = pvc(NS)
    claim["metadata"]["name"] = "gang-ckpt"
    claim["spec"]["accessModes"] = ["ReadWriteMany"]
    yield from run_with_host_operator(realcluster, tmp_path_factory.mktemp("operator"), NS, JOB, [claim, tp_job()])


def test_a_two_pod_dp2_tp2_trainer_rendezvous_trains_and_checkpoints(gang: Job) -> None:
    plan = wait_for(lambda: gang.status().get("plan"), 120, "the plan in the RLJob status")
    trainer = plan["trainer"]
    assert (trainer["dataParallel"], trainer["tensorParallel"], trainer["fsdp"], trainer["gpus"]) == (
        2, 2, True, 4), trainer
    assert len(set(trainer["nodes"])) == 2  # two pods of two processes each
    wait_for(lambda: gang.progress().get("trainedSteps", 0) >= 9, 900, "9 steps trained by the DP2×TP2 gang")
    pods = sorted(gang.ready_pods("trainer"), key=lambda p: p["metadata"]["name"])
    assert len(pods) == 2 and len({p["spec"]["nodeName"] for p in pods}) == 2
    ranks: set[str] = set()
    for node_rank, pod in enumerate(pods):
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert (env["HEXRL_NNODES"], env["HEXRL_NODE_RANK"], env["LOCAL_WORLD_SIZE"]) == ("2", str(node_rank), "2")
        logs = gang.rc.kubectl("logs", "-n", NS, pod["metadata"]["name"])
        assert "launching 2 trainer process(es) of DP2×TP2×PP1 FSDP on 2 pod(s)" in logs, logs[-3000:]
        found = set(re.findall(r"rank (\d): DP2×TP2×PP1 FSDP .* mesh \(1, 2, 2\)", logs))
        assert len(found) == 2, logs[-3000:]
        ranks |= found
    assert ranks == {"0", "1", "2", "3"}  # pod 0 holds ranks 0-1, pod 1 ranks 2-3
    # weights gathered from the sharded model by rank 0 reach the rollout workers
    wait_for(lambda: gang.progress().get("policyVersion", 0) >= 9, 120, "policy version 9")
    for rollout in gang.ready_pods("rollout"):
        assert gang.metrics(rollout, 8002).get("hexrl_rollout_weight_updates_total", 0) >= 1
    # a sharded checkpoint both pods wrote into: DCP's index and one shard file per rank
    listing = gang.rc.kubectl("exec", "-n", NS, pods[0]["metadata"]["name"], "--", "sh", "-c",
                              "ls -A /checkpoints/step-*/")
    files = set(listing.split())
    assert {".metadata", "__0_0.distcp", "__1_0.distcp", "__2_0.distcp", "__3_0.distcp", "meta.json"} <= files, listing
