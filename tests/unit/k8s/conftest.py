"""pytest fixtures of the operator's unit tests (helpers live in k8s_helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from k8s_helpers import FakeApi


@pytest.fixture
def fake_api() -> FakeApi:
    return FakeApi()
