"""Builders shared by the worker-runtime tests: tiny specs, config files, subprocess environments."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from hexrl.api.models import RLJob, RLJobSpec
from hexrl.api.workerconfig import WorkerConfig, render_worker_config

REPO = Path(__file__).resolve().parents[2]
TINY_JOB = REPO / "manifests" / "examples" / "rljob-tiny.yaml"


def tiny_spec(**overrides: Any) -> RLJobSpec:
    """The example tiny job's spec, with dotted overrides: tiny_spec(**{"algorithm.groupSize": 2})."""
    raw = yaml.safe_load(TINY_JOB.read_text())
    for dotted, value in overrides.items():
        node = raw["spec"]
        *path, last = dotted.split(".")
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    return RLJob.model_validate(raw).spec


def write_config(tmp: Path, spec: RLJobSpec, coordinator_url: str, weights_url: str, **kw: Any) -> Path:
    cfg = WorkerConfig(job="t", spec=spec, coordinator_url=coordinator_url, weights_url=weights_url, **kw)
    path = tmp / "config.yaml"
    path.write_text(render_worker_config(cfg))
    return path


def subprocess_env(config: Path, token: str, **extra: str) -> dict[str, str]:
    """The environment of a `python -m hexrl_workers` process; status ports on any free port (several
    workers share this host), unless `extra` names them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEXRL_")}
    env.update({"HEXRL_CONFIG": str(config), "HEXRL_TOKEN": token, "HEXRL_JOB": "t", "OMP_NUM_THREADS": "1",
                "HEXRL_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1", "HEXRL_RELAY_PORT": "0",
                "HEXRL_TRAINER_METRICS_PORT": "0"})
    env.update(extra)
    return env


PYTHON = sys.executable




def parity_reward(completion: str, answer: str, prompt: str = "") -> float:
    """A reward that differs within most groups even for an untrained model (length parity), so GRPO
    advantages are non-zero and a few steps must move the weights (an all-equal group trains nothing)."""
    return float(len(completion) % 2)
