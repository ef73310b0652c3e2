"""The reward process: `python -m hexrl_workers.reward.server SPEC_JSON`, started by `RewardRunner`.

It loads the job's reward (`build.build_reward`) once, answers `{"ready": true}` or `{"error": sentence}`,
then reads one JSON request per line (`[completion, answer, prompt]`) and writes one JSON reply per line
(`{"reward": x}`, NaN and infinities included, or `{"error": "Type: message"}`). The protocol uses private
duplicates of stdin/stdout; the user's function sees /dev/null as stdin and the parent's stderr as stdout, so
its prints land in the pod's log instead of corrupting the replies. It runs in its main thread (math_verify's
own timeouts use SIGALRM) and dies with its parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
from typing import IO, Any

from hexrl.api.rewardspec import RewardSpec
from hexrl_workers.reward.build import build_reward

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # elsewhere than Linux: the parent closes our stdin, which ends the loop
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _private_streams() -> tuple[IO[bytes], IO[bytes]]:
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return proto_in, proto_out


def _reply(out: IO[bytes], message: dict[str, Any]) -> None:
    out.write(json.dumps(message).encode() + b"\n")
    out.flush()


def _score(reward: Any, request: list[str]) -> dict[str, Any]:
    try:
        value = reward(*request)
    except Exception as exc:  # a user's reward may raise anything: the sample is dropped, the process lives on
        return {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    try:
        return {"reward": float(value)}
    except (TypeError, ValueError):
        return {"error": f"the reward function returned {value!r:.200}, not a number"}


def main(argv: list[str]) -> int:
    _die_with_parent()
    proto_in, proto_out = _private_streams()
    try:
        reward = build_reward(RewardSpec.model_validate_json(argv[0]))
    except ValueError as exc:
        _reply(proto_out, {"error": str(exc)})
        return 2
    _reply(proto_out, {"ready": True})
    for line in proto_in:
        _reply(proto_out, _score(reward, json.loads(line)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
