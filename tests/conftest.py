"""Shared pytest set-up: markers by folder, the repository root, and the session's local control plane.

Tests under tests/unit, tests/e2e, tests/workers and tests/chart get the matching marker automatically
(`pytest -m unit` runs the fast ones); a test may still add `slow` itself. The test-data builders live in
tests/builders.py (`from builders import rljob, node, inventory`).

`devcluster` is the real local control plane for any test that asks for it, started once per session
(name `hexrl-test`): etcd, kube-apiserver (RBAC on), kube-controller-manager, kube-scheduler and kwok, with
the generated RLJob and GPUCalibration CRDs installed (as the chart installs them) and the nodes of manifests/clusters/small.yaml. It is torn down at the
end of the session (unless HEXRL_KEEP_TEST_CLUSTER=1). When another live test session already owns
`hexrl-test`, this one uses `hexrl-test-<pid>` (env HEXRL_TEST_CLUSTER renames it). A cluster that cannot
start fails the tests that need it, with the reason — it is never skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusters import keep_requested, running_cluster
from hexrl.api.crd import CRD_NAME, calibration_crd_yaml, crd_yaml
from hexrl.api.gpucalibration import CRD_NAME as CALIBRATION_CRD_NAME
from hexrl.devcluster import DevCluster

ROOT = Path(__file__).resolve().parent.parent
FOLDER_MARKERS = {"unit": "unit", "e2e": "e2e", "workers": "workers", "chart": "chart"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = Path(__file__).parent
    for item in items:
        try:
            folder = Path(str(item.fspath)).relative_to(tests).parts[0]
        except ValueError:
            continue
        marker = FOLDER_MARKERS.get(folder)
        if marker and item.get_closest_marker(marker) is None:
            item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (manifests/, crds/, … are relative to it)."""
    return ROOT


TEST_CLUSTER = "hexrl-test"
SMALL_INVENTORY = ROOT / "manifests" / "clusters" / "small.yaml"


@pytest.fixture(scope="session")
def devcluster() -> Iterator[DevCluster]:
    """A running cluster with the hexrl CRDs and the small inventory's nodes (session-scoped)."""
    name = os.environ.get("HEXRL_TEST_CLUSTER", TEST_CLUSTER)
    owner = DevCluster(name=name).owner_pid()
    if owner is not None and owner != os.getpid():
        # Another test session (e.g. a second terminal) owns that cluster: never share or stop it.
        name = f"{name}-{os.getpid()}"
    with running_cluster(name, SMALL_INVENTORY, install_crds, keep=keep_requested()) as cluster:
        yield cluster


def install_crds(cluster: DevCluster) -> None:
    """The generated RLJob and GPUCalibration CRDs, applied and Established: what the chart installs before
    the operator starts, whose own credentials may not create CRDs."""
    cluster.kubectl("apply", "-f", "-", input=crd_yaml() + "---\n" + calibration_crd_yaml())
    cluster.wait_established(CRD_NAME, CALIBRATION_CRD_NAME)


@pytest.fixture(scope="session")
def kubeconfig(devcluster: DevCluster) -> Path:
    """Admin kubeconfig of the session cluster (for the kubernetes client, kopf, kubectl)."""
    return devcluster.kubeconfig
