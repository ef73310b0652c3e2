"""No function in the project's code is longer than 60 lines (tests excepted): a longer one is split into
named steps, so each part can be read, changed and tested alone.

Counted as `ast` counts them: from the `def` line to the function's last line, docstring and comments
included. The planner's and simulator's packages have their own, stricter shape test
(tests/unit/sched/test_module_shape.py: no private names imported across modules either).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = ("operator/hexrl", "workers/hexrl_workers", "scripts", "bench")
MAX_FUNCTION_LINES = 60

pytestmark = pytest.mark.unit


def source_files() -> list[Path]:
    return sorted(p for root in SOURCE_ROOTS for p in (ROOT / root).rglob("*.py"))


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})" for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


def test_every_source_root_holds_code() -> None:
    """A renamed or moved root would make the test below vacuous."""
    for root in SOURCE_ROOTS:
        assert list((ROOT / root).rglob("*.py")), f"{root} has no Python files: update SOURCE_ROOTS"


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_function_is_longer_than_the_limit(path: Path) -> None:
    long = long_functions(path)
    assert not long, f"{path.relative_to(ROOT)}: split into named steps: {', '.join(long)}"
