"""A planned multi-process trainer runs in a real pod: the pod's launcher starts one process per GPU, the
ranks join over gloo inside the container, and the DP1×TP2 gang trains the job.

The job is the tiny one with its declared size raised to 1.5B parameters (the cost model's input; the
workers still build the tiny model from its layer shapes): then the planner puts the trainer on both GPUs
of the on-demand node with tensor parallelism — 4 query heads, 2 key/value heads and an MLP of 128 split
over 2 — and the rollout on a spot node. The operator renders the layout into the trainer pod, the
launcher reads it, and each rank checks it at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from real_harness import RealCluster, wait_for
from test_b_tiny_job import TINY, HostOperator, Job

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NS = "gang"
JOB = "tp-gang"


def tp_job() -> dict[str, Any]:
    job = yaml.safe_load(TINY.read_text())
    job["metadata"] = {"name": JOB, "namespace": NS}
    spec = job["spec"]
    spec["model"]["shape"]["parameters"] = 1.5e9
    spec["algorithm"]["totalSteps"] = 400
    spec["placement"] = {"spot": {"rollout": "allowed", "trainer": "forbidden", "onDemandRolloutFloor": 0.0}}
    spec["checkpoint"] = {"path": "/checkpoints", "everySteps": 5, "keep": 1}
    # the launcher and two ranks: three Python processes with torch in one pod
    spec["resources"]["trainer"] = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    spec.setdefault("images", {})["pullPolicy"] = "Never"
    return dict(job)


@pytest.fixture(scope="module")
def gang(realcluster: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Job]:
    op = HostOperator(realcluster, tmp_path_factory.mktemp("operator") / "operator.log")
    try:
        op.start()
        realcluster.kubectl("create", "namespace", NS)
        job = Job(realcluster, NS, JOB)
        realcluster.apply(tp_job())
        yield job
    finally:
        realcluster.kubectl("delete", "rlj", "-n", NS, JOB, "--ignore-not-found", "--wait=true", "--timeout=60s",
                            check=False)
        realcluster.kubectl("delete", "namespace", NS, "--wait=true", "--timeout=120s", check=False)
        op.stop()
        print("operator log (tail):\n" + op.tail())


def test_the_planned_tp2_trainer_runs_two_ranks_in_its_pod_and_trains(gang: Job) -> None:
    plan = wait_for(lambda: gang.status().get("plan"), 120, "the plan in the RLJob status")
    trainer = plan["trainer"]
    assert (trainer["dataParallel"], trainer["tensorParallel"], trainer["gpusPerNode"]) == (1, 2, [2]), trainer
    wait_for(lambda: gang.progress().get("trainedSteps", 0) >= 8, 600, "8 steps trained by the TP2 gang")
    pod = gang.ready_pods("trainer")[0]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert (env["LOCAL_WORLD_SIZE"], env["HEXRL_TENSOR_PARALLEL"], env["HEXRL_NNODES"]) == ("2", "2", "1")
    logs = gang.rc.kubectl("logs", "-n", NS, pod["metadata"]["name"])
    assert "launching 2 trainer process(es) of DP1×TP2×PP1" in logs, logs[-3000:]
    ranks = set(re.findall(r"rank (\d): DP1×TP2×PP1 .* mesh \(1, 1, 2\)", logs))
    assert ranks == {"0", "1"}, logs[-3000:]
    # weights published by rank 0 from the TP-sharded model reach the rollout workers
    wait_for(lambda: gang.progress().get("policyVersion", 0) >= 8, 120, "policy version 8")
    for rollout in gang.ready_pods("rollout"):
        assert gang.metrics(rollout, 8002).get("hexrl_rollout_weight_updates_total", 0) >= 1
