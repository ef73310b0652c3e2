"""The planner's modules keep their shape: short functions, and no private name imported from another module.

A private name (leading underscore) is a module's own business; a name another module needs is public in
the module that defines it, so "go to definition" lands there and the name can be changed in one place.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SCHED = Path(__file__).resolve().parents[3] / "operator" / "hexrl" / "sched"
MAX_FUNCTION_LINES = 60

pytestmark = pytest.mark.unit


def _modules() -> list[Path]:
    return sorted(SCHED.glob("*.py"))


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_the_planner_package_is_where_the_tests_look():
    names = {p.name for p in _modules()}
    assert {"planner.py", "replanning.py", "searchspace.py", "strategy_search.py", "formulation.py"} <= names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_no_function_is_longer_than_the_limit(path: Path):
    tree = ast.parse(path.read_text())
    long = [f"{f.name} ({f.end_lineno - f.lineno + 1} lines)" for f in _functions(tree)
            if f.end_lineno is not None and f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.name}: split into named steps: {', '.join(long)}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_no_private_name_is_imported_from_another_module(path: Path):
    tree = ast.parse(path.read_text())
    private = [f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for alias in node.names if alias.name.startswith("_") and alias.name != "__future__"
               and node.module != "__future__"]
    assert not private, f"{path.name} imports private names: {', '.join(private)}; make them public where defined"
