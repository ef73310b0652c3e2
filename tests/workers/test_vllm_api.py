"""The vLLM engine is written against the pinned vLLM: every class, method and argument it uses exists there.

vLLM runs only on GPUs, and installing it here would bring its own torch and CUDA stack (~5 GB) just to be
imported. What can drift — a method renamed, an argument dropped, a V0 path gone (the old engine reached
weights through `llm_engine.model_executor.driver_worker`, which V1 removed) — is visible in the source.
So the test downloads the exact pinned wheel (pyproject.toml's `vllm` extra; cached), reads its Python
source without importing it, and checks each entry of `vllm_engine.VLLM_API`: the module exists; the
class (following base classes through the package's imports) or `Class.method` exists; every listed name
is a parameter of the method or of the class's `__init__`, a dataclass/TypedDict field, an enum member, an
attribute the class assigns (`self.x = …`), or a member of a `Literal` alias. A second test keeps the
list honest: every `vllm` import and every `collective_rpc` method name in the engine is covered by it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from functools import cache
from pathlib import Path

import pytest

from hexrl_workers.rollout import vllm_engine, vllm_extension

pytestmark = pytest.mark.workers
REPO = Path(__file__).resolve().parents[2]
WHEELS = Path.home() / ".cache" / "hexrl" / "wheels"


def _pinned_version() -> str:
    m = re.search(r'^vllm = \["vllm==([^"]+)"\]', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    assert m, "pyproject.toml must pin the vllm extra exactly (vllm = [\"vllm==X.Y.Z\"])"
    return m[1]


@cache
def _wheel() -> zipfile.ZipFile:
    version = _pinned_version()
    WHEELS.mkdir(parents=True, exist_ok=True)
    found = sorted(WHEELS.glob(f"vllm-{version}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", f"vllm=={version}", "--no-deps",
                        "--only-binary=:all:", "--platform", "manylinux_2_28_x86_64", "-d", str(WHEELS)],
                       check=True, timeout=900)
        found = sorted(WHEELS.glob(f"vllm-{version}-*.whl"))
    assert found, f"no vllm {version} wheel downloaded"
    return zipfile.ZipFile(found[0])


@cache
def _module(name: str) -> ast.Module | None:
    zf = _wheel()
    for path in (name.replace(".", "/") + ".py", name.replace(".", "/") + "/__init__.py"):
        try:
            return ast.parse(zf.read(path).decode())
        except KeyError:
            continue
    return None


def _imports(tree: ast.Module, module: str) -> dict[str, str]:
    """Name → the module it is imported from (relative imports resolved)."""
    out = {}
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            src = node.module or ""
            if node.level:
                base = module.split(".")[: -node.level] if not module.endswith("__init__") else package.split(".")
                src = ".".join([*base, src]) if src else ".".join(base)
            for alias in node.names:
                out[alias.asname or alias.name] = src
    return out


def _find(module: str, name: str, depth: int = 0) -> tuple[str, ast.AST] | None:
    """The top-level class/function/assignment `name` of `module`, following re-exports."""
    tree = _module(module)
    if tree is None or depth > 5:
        return None
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return module, node
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return module, node
    src = _imports(tree, module).get(name)
    return _find(src, name, depth + 1) if src and src.startswith("vllm") else None


def _class_chain(module: str, cls: ast.ClassDef) -> list[tuple[str, ast.ClassDef]]:
    chain = [(module, cls)]
    for base in cls.bases:
        base_name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else None
        found = _find(module, base_name) if base_name else None
        if found and isinstance(found[1], ast.ClassDef):
            chain.extend(_class_chain(*found))  # type: ignore[arg-type]
    return chain


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    a = fn.args
    return {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]}


def _class_names(module: str, cls: ast.ClassDef) -> set[str]:
    names: set[str] = set()
    for _, c in _class_chain(module, cls):
        for node in c.body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.FunctionDef) and node.name == "__init__":
                names |= _params(node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(node.name)
        for node in ast.walk(c):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                    and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return names


def _method(module: str, cls: ast.ClassDef, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    for _, c in _class_chain(module, cls):
        for node in c.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                return node
    return None


def _problems(module: str, target: str, used: tuple[str, ...]) -> list[str]:
    cls_name, _, method = target.partition(".")
    found = _find(module, cls_name)
    if found is None:
        return [f"{module}.{cls_name} does not exist in vllm {_pinned_version()}"]
    where, node = found
    if isinstance(node, (ast.Assign, ast.AnnAssign)):  # a Literal alias: its string members
        members = {c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
        return [f"{module}.{cls_name} has no member {u!r}" for u in used if u not in members]
    assert isinstance(node, ast.ClassDef), f"{module}.{cls_name} is not a class"
    if method:
        fn = _method(where, node, method)
        if fn is None:
            return [f"{module}.{target} does not exist in vllm {_pinned_version()}"]
        have = _params(fn)
    else:
        have = _class_names(where, node)
    return [f"{module}.{target} has no parameter, field or attribute {u!r}" for u in used if u not in have]


@pytest.mark.parametrize("module,target,used", vllm_engine.VLLM_API, ids=lambda v: v if isinstance(v, str) else "")
def test_every_vllm_name_the_engine_uses_exists_in_the_pinned_release(module, target, used):
    assert _problems(module, target, used) == []


def test_the_checker_catches_what_current_vllm_removed():
    """The V0 path the old engine used, and a made-up argument, are reported."""
    assert _problems("vllm.v1.engine.async_llm", "AsyncLLM.generate", ("prompt", "no_such_argument"))
    assert _problems("vllm.engine.llm_engine", "LLMEngine", ("model_executor_driver_worker",))
    assert _problems("vllm.config.model", "LogprobsMode", ("untruncated_tempered_logprobs",))


def test_the_api_list_covers_every_vllm_name_the_engine_imports_and_calls():
    listed_modules = {m for m, _, _ in vllm_engine.VLLM_API}
    listed = {(m, t.split(".")[0]) for m, t, _ in vllm_engine.VLLM_API}
    for mod in (vllm_engine, vllm_extension):
        tree = ast.parse(Path(mod.__file__).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vllm"):
                assert node.module in listed_modules, node.module
                for alias in node.names:
                    assert (node.module, alias.name) in listed, (node.module, alias.name)
    rpc = set(re.findall(r'collective_rpc\("(\w+)"', Path(vllm_engine.__file__).read_text()))
    assert rpc and all(hasattr(vllm_extension.HexrlWorkerExtension, name) for name in rpc), rpc
    assert f"{vllm_extension.__name__}.{vllm_extension.HexrlWorkerExtension.__name__}" == vllm_engine.EXTENSION
