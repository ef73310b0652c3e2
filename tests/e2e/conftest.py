"""The real local control plane for e2e tests: one `DevCluster` per test session.

`devcluster` starts etcd, kube-apiserver (RBAC on), kube-controller-manager, kube-scheduler and kwok once
(name `hexrl-test`), installs the generated RLJob CRD and creates the nodes of
manifests/clusters/small.yaml; it is torn down at the end of the session. When another live test
session already owns `hexrl-test`, this one uses `hexrl-test-<pid>` (env HEXRL_TEST_CLUSTER renames it).
A cluster that cannot start fails the tests that need it (with the reason) — it is never skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hexrl.api.crd import CRD_NAME, crd_yaml
from hexrl.devcluster import DevCluster, DevClusterError

ROOT = Path(__file__).resolve().parents[2]
TEST_CLUSTER = "hexrl-test"
SMALL_INVENTORY = ROOT / "manifests" / "clusters" / "small.yaml"


@pytest.fixture(scope="session")
def devcluster() -> Iterator[DevCluster]:
    """A running cluster with the RLJob CRD and the small inventory's nodes (session-scoped)."""
    name = os.environ.get("HEXRL_TEST_CLUSTER", TEST_CLUSTER)
    owner = DevCluster(name=name).owner_pid()
    if owner is not None and owner != os.getpid():
        # Another test session (e.g. a second terminal) owns that cluster: never share or stop it.
        name = f"{name}-{os.getpid()}"
    cluster = DevCluster(name=name)
    try:
        cluster.up(inventory=SMALL_INVENTORY)
        cluster.kubectl("apply", "-f", "-", input=crd_yaml())
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    except DevClusterError as e:
        cluster.down(quiet=True)
        pytest.fail(f"the local control plane did not start: {e}", pytrace=False)
    try:
        yield cluster
    finally:
        if os.environ.get("HEXRL_KEEP_TEST_CLUSTER") != "1":
            cluster.down(quiet=True)


@pytest.fixture(scope="session")
def kubeconfig(devcluster: DevCluster) -> Path:
    """Admin kubeconfig of the session cluster (for the kubernetes client, kopf, kubectl)."""
    return devcluster.kubeconfig
