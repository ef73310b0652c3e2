"""Fixtures of the real-node suite; they live in real_harness.py (importable by the tests too)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from real_harness import realcluster

__all__ = ["realcluster"]
