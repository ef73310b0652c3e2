"""The local control plane as the body of a test fixture: started, prepared, torn down, or failed with the reason.

Three fixtures start a cluster (the session's `devcluster` in tests/conftest.py, the operator harness's
`opcluster`, the chart test's `cluster`); they differ only in the name, the inventory and what they install
after the control plane is up. `running_cluster` is the part they share: a cluster that cannot start, or whose
preparation fails, fails the tests that need it with the reason (never a skip), and is torn down unless kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hexrl.devcluster import DevCluster, DevClusterError

KEEP_ENV = "HEXRL_KEEP_TEST_CLUSTER"
"""Set to 1 to leave the test clusters running after the session (for re-runs and for looking around)."""


def keep_requested() -> bool:
    """Whether the user asked to keep the test clusters (HEXRL_KEEP_TEST_CLUSTER=1)."""
    return os.environ.get(KEEP_ENV) == "1"


@contextmanager
def running_cluster(name: str, inventory: Path, prepare: Callable[[DevCluster], None] | None = None, *,
                    keep: bool = False) -> Iterator[DevCluster]:
    """A started cluster `name` with `inventory`'s nodes, after `prepare(cluster)`; down on exit unless `keep`."""
    cluster = DevCluster(name=name)
    try:
        cluster.up(inventory=inventory)
        if prepare is not None:
            prepare(cluster)
    except DevClusterError as e:
        cluster.down(quiet=True)
        pytest.fail(f"the local control plane did not start: {e}", pytrace=False)
    try:
        yield cluster
    finally:
        if not keep:
            cluster.down(quiet=True)
