"""The operator as platform teams run it: a pod installed by the Helm chart from the locally built operator
image, on a real node, reaching the API server through the `kubernetes` Service with its own
ServiceAccount — and the tiny job trains under it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from real_harness import ROOT, RealCluster, wait_for
from test_b_tiny_job import Job, create_restricted_namespace, pvc, tiny_job

from hexrl.devcluster.tools import ensure_tool

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NS = "tiny-helm"
RELEASE = "hx"
OPERATOR_NS = "hexrl-system"


def helm(rc: RealCluster, *args: str) -> str:
    proc = subprocess.run([str(ensure_tool("helm")), f"--kubeconfig={rc.kubeconfig}", *args],
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, f"helm {' '.join(args)}: {proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def chart_operator(realcluster: RealCluster) -> Iterator[dict]:
    images = realcluster.cluster.images()
    repository, tag = images["operator"].rsplit(":", 1)
    # The host operator of the previous module created the job priority classes itself (the developer path);
    # the chart owns them when installed, as on a fresh cluster.
    # The same goes for its namespace, which holds the key Secret the host operator made for itself.
    for pc in realcluster.json("get", "priorityclasses")["items"]:
        if pc["metadata"]["name"].startswith("hexrl-"):
            realcluster.kubectl("delete", "priorityclass", pc["metadata"]["name"])
    realcluster.kubectl("delete", "namespace", OPERATOR_NS, "--ignore-not-found", "--wait=true", "--timeout=120s")
    helm(realcluster, "install", RELEASE, str(ROOT / "charts" / "hexrl"), "--namespace", OPERATOR_NS,
         "--create-namespace", "--wait", "--timeout", "180s",
         "--set", f"image.repository={repository}", "--set", f"image.tag={tag}", "--set", "image.pullPolicy=Never",
         "--set", f"workerImage={images['workers']}", "--set", "workerImagePullPolicy=Never",
         "--set-string", "operator.nodeSelector.hexrl\\.dev/real=true")  # fmt: skip
    pods = realcluster.pods(OPERATOR_NS, "app.kubernetes.io/name=hexrl")
    try:
        yield pods[0]
    finally:
        realcluster.kubectl("delete", "rlj", "--all", "-n", NS, "--wait=true", "--timeout=90s", check=False)
        realcluster.kubectl("delete", "namespace", NS, "--wait=true", "--timeout=120s", check=False)
        print(realcluster.kubectl("logs", "-n", OPERATOR_NS, pods[0]["metadata"]["name"], "--tail=40", check=False))
        helm(realcluster, "uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait", "--timeout", "120s")


def test_chart_installed_operator_runs_the_job(realcluster: RealCluster, chart_operator: dict) -> None:
    node = chart_operator["spec"]["nodeName"]
    assert node.startswith("cpu-"), f"the operator pod runs on a real node, not {node}"
    assert chart_operator["spec"]["containers"][0]["image"] == realcluster.cluster.images()["operator"]
    create_restricted_namespace(realcluster, NS)
    realcluster.apply([pvc(NS), tiny_job(NS, total_steps=400)])
    job = Job(realcluster, NS, "tiny-arith")
    wait_for(lambda: job.status().get("plan"), 120, "the chart's operator to plan the job")
    wait_for(lambda: job.progress().get("trainedSteps", 0) >= 30, 400, "30 trained steps under the chart's operator")
    progress = wait_for(lambda: (p := job.progress()).get("meanReward") is not None and p, 60, "a mean reward")
    initial = job.coordinator("/v1/progress")["initialReward"]
    reward = wait_for(lambda: (r := job.progress().get("meanReward", 0)) >= initial + 0.2 and r, 300,
                      f"the reward to rise above {initial:.2f} + 0.2")
    print(f"chart-installed operator: reward {initial:.2f} → {reward:.2f} at step {job.progress()['trainedSteps']}")
    assert progress["trainedSteps"] >= 30
