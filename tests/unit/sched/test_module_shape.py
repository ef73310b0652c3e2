"""The planner's and the simulator's modules keep their shape: short functions, no private name imported
from another module.

A private name (leading underscore) is a module's own business; a name another module needs is public in
the module that defines it, so "go to definition" lands there and the name can be changed in one place.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HEXRL = Path(__file__).resolve().parents[3] / "operator" / "hexrl"
PACKAGES = (HEXRL / "sched", HEXRL / "sim")
MAX_FUNCTION_LINES = 60

pytestmark = pytest.mark.unit


def _modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in package.glob("*.py"))


def _module_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_the_planner_package_is_where_the_tests_look():
    names = {_module_id(p) for p in _modules()}
    assert {"sched/planner.py", "sched/replanning.py", "sched/searchspace.py", "sched/strategy_search.py",
            "sched/formulation.py"} <= names


def test_the_simulator_package_is_where_the_tests_look():
    names = {_module_id(p) for p in _modules()}
    assert {"sim/engine.py", "sim/state.py", "sim/events.py", "sim/scheduling.py", "sim/preemption.py",
            "sim/metrics.py"} <= names


@pytest.mark.parametrize("path", _modules(), ids=_module_id)
def test_no_function_is_longer_than_the_limit(path: Path):
    tree = ast.parse(path.read_text())
    long = [f"{f.name} ({f.end_lineno - f.lineno + 1} lines)" for f in _functions(tree)
            if f.end_lineno is not None and f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.name}: split into named steps: {', '.join(long)}"


@pytest.mark.parametrize("path", _modules(), ids=_module_id)
def test_no_private_name_is_imported_from_another_module(path: Path):
    tree = ast.parse(path.read_text())
    private = [f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for alias in node.names if alias.name.startswith("_") and alias.name != "__future__"
               and node.module != "__future__"]
    assert not private, f"{path.name} imports private names: {', '.join(private)}; make them public where defined"
