"""The Python lock files: complete for pyproject.toml, pinned with hashes, and agreeing with each other.

`make install` installs requirements/dev.lock; the image builder installs workers.lock and operator.lock.
A dependency added to pyproject.toml without `make lock` would install nothing new (`pip install --no-deps
-e .`) and fail only at import time somewhere else; these tests say so at once.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")
# What each lock must satisfy: base dependencies plus these extras (vllm is GPU-only, in no lock).
LOCKS = {"dev.lock": ("workers", "sim", "dev"), "workers.lock": ("workers",), "operator.lock": ()}
ENV = {**default_environment(), "python_version": "3.11", "python_full_version": "3.11.2",
       "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"}
"""The environment the locks are resolved for (Makefile LOCK_TARGET: Linux x86_64, CPython 3.11)."""


def _pins(lock: str) -> dict[str, str]:
    """name → version of every requirement line (each must carry --hash lines)."""
    pins: dict[str, str] = {}
    lines = (ROOT / "requirements" / lock).read_text().splitlines()
    for i, line in enumerate(lines):
        m = PIN.match(line)
        if not m:
            continue
        assert i + 1 < len(lines) and lines[i + 1].strip().startswith("--hash=sha256:"), f"{lock}: {line} has no hash"
        pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def _requirements(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(ENV)]


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_pins_every_requirement_of_pyproject(lock: str) -> None:
    pins = _pins(lock)
    for req in _requirements(LOCKS[lock]):
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock} lacks {req} — run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {name}=={pins[name]}, outside pyproject.toml's {req} — run `make lock`"
        )


def test_locks_agree_on_every_version() -> None:
    dev = _pins("dev.lock")
    for lock in ("workers.lock", "operator.lock"):
        for name, version in _pins(lock).items():
            assert dev.get(name) == version, f"{lock} pins {name}=={version}, dev.lock {dev.get(name)}"


def test_dev_lock_pins_the_build_tools() -> None:
    """`make install` builds the project with --no-build-isolation: the backend must come from the lock."""
    pins = _pins("dev.lock")
    assert {"pip", "setuptools", "wheel"} <= pins.keys()


def test_lock_tool_is_pinned_with_hashes() -> None:
    text = (ROOT / "requirements" / "lock-tool.txt").read_text()
    assert re.search(r"^uv==\d+\.\d+\.\d+ \\$", text, re.M) and "--hash=sha256:" in text
