"""From `spec.reward` to one callable: each function loaded (built-in, `module:function`, or a function in a
Python file), terms combined into their weighted sum. Loading problems are ValueErrors whose message is a
sentence naming the field and what to do (the pod prints it and exits 2)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import zlib
from pathlib import Path

from hexrl.api.rewardspec import RewardFunctionSpec, RewardSpec
from hexrl_workers.reward.builtins import SIMPLE_BUILTINS, RewardFn, format_reward, regex_match
from hexrl_workers.reward.code import code_reward
from hexrl_workers.reward.sandbox import SandboxLimits, self_check


def build_reward(spec: RewardSpec) -> RewardFn:
    """The job's reward: the one function, or the weighted sum of the terms."""
    if spec.terms is None:
        return load_function(spec, "reward")
    terms = [(t.weight, load_function(t, f"reward.terms[{k}]")) for k, t in enumerate(spec.terms)]

    def weighted(completion: str, answer: str, prompt: str = "") -> float:
        return sum(w * float(fn(completion, answer, prompt)) for w, fn in terms)

    return weighted


def load_function(fn: RewardFunctionSpec, where: str) -> RewardFn:
    """The callable `fn` names (`where`: its place in the spec, for messages)."""
    if fn.file is not None:
        return load_file_function(fn.file, fn.function or "", where)
    name = fn.function or ""
    if name in SIMPLE_BUILTINS:
        if name == "math-verify":
            import math_verify  # noqa: F401  (sympy: imported now, not inside the first sample's timeout)
        return SIMPLE_BUILTINS[name]
    if name == "regex-match":
        return regex_match(fn.pattern or "")
    if name == "format":
        return format_reward(fn.pattern)
    if name == "code":
        reward = code_reward(fn.code)
        self_check(SandboxLimits())
        return reward
    return import_callable(name, where)


def import_callable(name: str, where: str = "reward") -> RewardFn:
    """`module:function` imported from the image."""
    if ":" not in name:
        raise ValueError(f"unknown {where}.function {name!r}; use a built-in or 'module:function'")
    mod_name, fn_name = name.split(":", 1)
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{where}.function {name!r} cannot be loaded ({exc}); install the module in the worker "
                         f"image, or put the function in a file and set {where}.file") from exc
    if not callable(fn):
        raise ValueError(f"{where}.function {name!r} is not callable; name a function")
    return fn


def load_file_function(path: str, name: str, where: str = "reward") -> RewardFn:
    """Function `name` defined in the Python file `path` (e.g. from a mounted ConfigMap)."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{where}.file {path} does not exist in the rollout worker; mount it (reward.configMap "
                         "mounts a ConfigMap in rollout pods) or fix the path")
    module_name = f"hexrl_user_reward_{zlib.crc32(path.encode()):08x}"
    module_spec = importlib.util.spec_from_file_location(module_name, file)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"{where}.file {path} cannot be loaded as a Python module; give a .py file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise ValueError(f"{where}.file {path} has a syntax error at line {exc.lineno}: {exc.msg}; fix the file") \
            from exc
    except Exception as exc:  # the user's module code may raise anything while loading
        raise ValueError(f"{where}.file {path} failed while loading ({type(exc).__name__}: {exc}); fix the file") \
            from exc
    fn = getattr(module, name, None)
    if fn is None or not callable(fn):
        raise ValueError(f"{where}.file {path} defines no function {name!r}; define it there or set "
                         f"{where}.function to the function's name")
    return fn
