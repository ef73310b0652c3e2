"""The generation-engine interface the rollout worker drives.

An engine continues token sequences and reports, for every token it samples, the log-probability under
the distribution the trainer will recompute: the **tempered, untruncated** distribution
`log_softmax(logits / T)` (T = generation.temperature; T = 0 means greedy decoding and log-probs of
`log_softmax(logits)`). With topP = 1 (the default) this is exactly the sampling distribution; with
topP < 1 tokens are drawn from the nucleus-renormalised distribution while the reported log-prob stays
the tempered one — the convention of AReaL/verl, since the trainer cannot reproduce a truncation that
depends on the behaviour policy's own logits.

A request may set its own temperature (evaluation: greedy = 0); log-probs are then of its own tempered
distribution. A request carries the prompt and optionally a prefix already generated elsewhere (a migrated partial);
the engine continues after the prefix's last token, and the result contains the prefix followed by the
new tokens, so prefix equality holds by construction and is checked by the tests.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class GenRequest:
    prompt_tokens: list[int]
    max_new_tokens: int
    """Total response length cap, prefix included."""
    prefix_tokens: list[int] = field(default_factory=list)
    prefix_logprobs: list[float] = field(default_factory=list)
    prefix_versions: list[int] = field(default_factory=list)
    temperature: float | None = None
    """This request's sampling temperature (0 = greedy; None = the engine's `SamplingParams.temperature`):
    held-out evaluation asks for greedy and sampled responses in the same batch as training work."""


@dataclass
class GenResult:
    tokens: list[int]
    logprobs: list[float]
    versions: list[int]
    finished: bool
    """True when EOS was generated."""
    interrupted: bool = False
    """True when generation stopped because the worker is stopping (a partial response)."""


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    eos_id: int = 2
    pad_id: int = 0


class Engine(Protocol):
    version: int
    """Policy version of the weights currently loaded."""

    def generate(self, requests: list[GenRequest], stop: threading.Event | None = None) -> list[GenResult]:
        """Continue every request; return early (interrupted) as soon as `stop` is set."""
        ...

    def load_weights(self, tensors: dict[str, Any], version: int) -> None:
        """Replace the weights in place (no restart) and adopt `version`."""
        ...
