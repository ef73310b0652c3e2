"""Builders shared by the worker-runtime tests: tiny specs, config files, subprocess environments."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from hexrl.api.jobtokens import derive_tokens
from hexrl.api.models import RLJob, RLJobSpec
from hexrl.api.workerconfig import WorkerConfig, render_worker_config
from hexrl_workers.httpcommon import Credentials

REPO = Path(__file__).resolve().parents[2]
TINY_JOB = REPO / "manifests" / "examples" / "rljob-tiny.yaml"
TOKENS = derive_tokens(b"tests-workers-key", "t")
"""The test job's per-role tokens (trainer, rollout, operator), derived as the operator does."""
CREDENTIALS = Credentials.of_tokens(TOKENS)
"""What the test job's services check tokens against (the digests of TOKENS)."""


def auth(role: str) -> dict[str, str]:
    """The Authorization header of `role`'s token."""
    return {"Authorization": f"Bearer {TOKENS[role]}"}


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


def subprocess_env(config: Path, role: str = "trainer", **extra: str) -> dict[str, str]:
    """The environment of a `python -m hexrl_workers <role>` process as the operator renders it: its own
    role's token (none for the coordinator) and every role's digest; status ports on any free port (several
    workers share this host), unless `extra` names them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEXRL_")}
    if role in ("trainer", "rollout"):
        env["HEXRL_TOKEN"] = TOKENS[role]
    env.update({"HEXRL_CONFIG": str(config), "HEXRL_TOKEN_DIGESTS": CREDENTIALS.encode(), "HEXRL_JOB": "t",
                "OMP_NUM_THREADS": "1",
                "HEXRL_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1", "HEXRL_RELAY_PORT": "0",
                "HEXRL_TRAINER_METRICS_PORT": "0"})
    env.update(extra)
    return env


PYTHON = sys.executable




def parity_reward(completion: str, answer: str, prompt: str = "") -> float:
    """A reward that differs within most groups even for an untrained model (length parity), so GRPO
    advantages are non-zero and a few steps must move the weights (an all-equal group trains nothing)."""
    return float(len(completion) % 2)
