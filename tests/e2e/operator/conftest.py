"""Fixtures of the operator e2e suite; they live in op_harness.py (importable by the tests too)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from op_harness import kube, opcluster, operator, sa_kubeconfig

__all__ = ["kube", "opcluster", "operator", "sa_kubeconfig"]
