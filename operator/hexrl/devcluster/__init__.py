"""A real local Kubernetes control plane with simulated GPU nodes, for demos and tests.

`Builder` builds the pinned binaries from the Go module proxy (cached outside the repo); `DevCluster`
runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on 127.0.0.1 and creates
GPU Node objects from an inventory file. Used by `hexrl cluster …`, `make run` and the e2e tests.
"""

from __future__ import annotations

from hexrl.devcluster.build import Builder
from hexrl.devcluster.cluster import ClusterSettings, DevCluster
from hexrl.devcluster.errors import DevClusterError
from hexrl.devcluster.settings import BuildSettings, Versions

__all__ = ["BuildSettings", "Builder", "ClusterSettings", "DevCluster", "DevClusterError", "Versions"]
