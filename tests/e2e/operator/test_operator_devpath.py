"""The developer path of the README on a fresh control plane: `hexrl cluster up`, then
`hexrl operator --kubeconfig $(hexrl cluster kubeconfig)` — nothing applied by hand — plans an RLJob.

Its own cluster (small inventory, nothing installed): the suite's shared cluster already has the CRD, the
namespace and the peering objects this test expects the operator to create.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from op_harness import HEXRL, ROOT, OperatorProcess, small_job, wait_for

from clusters import running_cluster
from hexrl.api import reasons
from hexrl.devcluster import DevCluster

pytestmark = pytest.mark.e2e
SMALL = ROOT / "manifests" / "clusters" / "small.yaml"


@pytest.fixture(scope="module")
def fresh() -> Iterator[DevCluster]:
    """A cluster nobody prepared: no CRDs, no PriorityClasses (what `hexrl operator` must set up itself)."""
    with running_cluster(f"hexrl-devpath-{os.getpid()}", SMALL) as cluster:
        yield cluster


def test_operator_with_an_admin_kubeconfig_prepares_a_fresh_cluster_and_plans_a_job(fresh: DevCluster, tmp_path: Path):
    # Told not to prepare, it says in one line what is missing and what to run.
    refused = subprocess.run([HEXRL, "operator", "--kubeconfig", str(fresh.kubeconfig), "--no-prepare",
                              "--metrics-port", "0", "--health-port", "0"], capture_output=True, text=True,
                             timeout=120, cwd=ROOT)
    assert refused.returncode == 1, refused.stderr
    assert "RLJob CRD" in refused.stderr and "--prepare" in refused.stderr, refused.stderr

    op = OperatorProcess(fresh.kubeconfig, tmp_path)  # the README's command: admin kubeconfig, peering `hexrl`
    op.env = {"HEXRL_OPERATOR_KEY_NAMESPACE": ""}
    op.start()
    try:
        log = op.log_path.read_text()
        assert "prepared the cluster: applied the RLJob CRD" in log, log[-2000:]
        assert "prepared the cluster: created PriorityClass hexrl-trainer" in log, log[-2000:]
        for what in ("crd/rljobs.hexrl.dev", "namespace/hexrl-system", "crd/clusterkopfpeerings.kopf.dev",
                     "clusterkopfpeering/hexrl", "secret/hexrl-operator-key", "priorityclass/hexrl-trainer",
                     "priorityclass/hexrl-rollout", "priorityclass/hexrl-rollout-spot"):
            args = ["get", *what.split("/")] + (["-n", "hexrl-system"] if what.startswith("secret") else [])
            assert fresh.kubectl(*args, check=False).returncode == 0, f"{what} was not created"
        job = small_job("devpath", placement__gpuTypes=["H100", "L4"], budget__maxCostPerHour=20)
        job["metadata"]["namespace"] = "default"
        fresh.kubectl("apply", "-f", "-", input=json.dumps(job))
        status = wait_for(lambda: (json.loads(fresh.kubectl("get", "rlj", "devpath", "-o", "json").stdout)
                                   .get("status") or {}), 60, what="the RLJob's status")
        planned = next(c for c in status["conditions"] if c["type"] == reasons.PLANNED)
        assert planned["status"] == "True", planned
        assert status["plan"]["gpus"] > 0
        # A second start finds everything in place: nothing to prepare, no error.
        op.kill()
        op.start()
        assert "prepared the cluster" not in op.log_path.read_text()
    finally:
        op.kill()
