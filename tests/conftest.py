"""Shared pytest set-up: markers by folder, the repository root, and the test-data builders on sys.path.

Tests under tests/unit, tests/e2e, tests/workers and tests/chart get the matching marker automatically
(`pytest -m unit` runs the fast ones); a test may still add `slow` itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
