"""How large a request body and the coordinator's trajectory buffer may grow, sized from the job spec.

A trajectory submission carries one group's samples at most (`per_push` = group size: the rollout
worker's client sends one request per group, `hexrl_workers.coordinator_client.split_by_group`); each sample at most `max_prompt_tokens` prompt tokens and maxNewTokens response tokens, and
one response token is three JSON numbers (id, log-prob, version) of at most `BYTES_PER_TOKEN_ENTRY`
bytes. The coordinator refuses a larger body with 413 before reading it (Content-Length) or as soon as
the bytes read pass the limit (chunked). Everything else the coordinator and the weight service accept is
small (`SMALL_BODY`), except a checkpoint's restore, which carries the buffer (`restore`).

The buffer is bounded in trajectories (from the staleness gate: what η lets be in flight, twice over) and
in bytes (`BufferLimits.max_bytes`: half the coordinator's memory limit from the spec, counted with
`sample_bytes`, an upper bound of what a sample costs in memory); a push that would pass either is refused with 429 and Retry-After unless it completes a group
(completed groups are what the trainer drains: refusing them could wedge the job). The client keeps the
push and retries, so nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hexrl.api.models import RLJobSpec
from hexrl.api.quantity import parse_quantity

BYTES_PER_TOKEN_ENTRY = 48
"""JSON bytes of one response token at most, in the compact JSON the workers send: an id (≤ 7 digits: a
vocabulary has at most 2^20 entries), a float's shortest repr (≤ 24 characters), a version (≤ 10
digits) and three separators."""
BYTES_PER_PROMPT_TOKEN = 8
"""JSON bytes of one prompt token id at most (≤ 7 digits and a comma)."""
SAMPLE_OVERHEAD = 1024
"""JSON bytes of a sample's fixed fields (ids, reward, worker id) at most."""
SMALL_BODY = 64 * 1024
"""Limit of every body that is not a trajectory submission or a restore (work and batch requests,
version updates, η changes, relay announcements: all under 1 KiB in practice)."""
PROMPT_SLACK = 8
"""A prompt may be this many times the spec's mean prompt length (`generation.promptTokens`)..."""
MIN_PROMPT_BOUND = 8192
"""...and at least this many tokens, so short-prompt jobs with an occasional long prompt still pass."""
BYTES_PER_TOKEN_IN_MEMORY = 80
"""What one response token costs the coordinator once parsed (a Python int, float and version in three
lists: 28 + 24 + 8 bytes of objects plus 3 list slots), an upper bound used for the buffer's bytes."""
DEFAULT_BUFFER_BYTES = 1 << 30
"""The buffer's byte budget when no spec says otherwise (tests, benchmarks)."""
BUFFER_MEMORY_SHARE = 0.5
"""Share of the coordinator's memory limit (spec.resources.coordinator) the buffer may take; the rest is
the process itself (~60 MiB) and the push being parsed (several times its body)."""


@dataclass(frozen=True)
class BodyLimits:
    """Largest request body each coordinator route accepts, bytes (413 beyond)."""

    trajectories: int
    """POST /v1/trajectories: `per_push` samples of the largest size the spec allows."""
    per_push: int
    """Samples one push may carry: one group's."""
    restore: int
    """POST /v1/restore: a checkpoint's snapshot (the bounded buffer plus the bookkeeping)."""
    default: int = SMALL_BODY
    """Every other route."""


@dataclass(frozen=True)
class BufferLimits:
    """How much the coordinator keeps buffered (finished samples waiting for the trainer)."""

    max_bytes: int = DEFAULT_BUFFER_BYTES
    """Sum of `sample_bytes` over buffered samples at most."""
    gate_factor: int = 2
    """Buffered samples at most: this many times what the staleness gate lets be requested ahead of the
    trainer, (η + 1) batches plus a group (see `max_trajectories`)."""

    def max_trajectories(self, batch: int, group_size: int, eta: int) -> int:
        """The entry bound for the η in force (it can change at run time)."""
        return self.gate_factor * ((eta + 1) * batch + group_size)


def max_prompt_tokens(mean_prompt_tokens: int) -> int:
    return max(MIN_PROMPT_BOUND, PROMPT_SLACK * mean_prompt_tokens)


def prompt_token_limit(spec: RLJobSpec) -> int:
    """The longest prompt a rollout worker generates from: spec.generation.maxPromptTokens (the coordinator's body
    limits grow to fit it, see `sample_wire_bytes`), else the bound those limits allow for (`max_prompt_tokens`),
    so no prompt the worker accepts makes a sample the coordinator would refuse."""
    gen = spec.generation
    return gen.max_prompt_tokens or max_prompt_tokens(gen.prompt_tokens)


def sample_wire_bytes(max_new_tokens: int, mean_prompt_tokens: int, prompt_limit: int | None = None) -> int:
    """JSON bytes of the largest sample allowed (`prompt_limit`: spec.generation.maxPromptTokens, which raises the
    prompt bound when it is above it)."""
    prompt_tokens = max(max_prompt_tokens(mean_prompt_tokens), prompt_limit or 0)
    return (prompt_tokens * BYTES_PER_PROMPT_TOKEN
            + max_new_tokens * BYTES_PER_TOKEN_ENTRY + SAMPLE_OVERHEAD)


def body_limits(group_size: int, max_new_tokens: int, mean_prompt_tokens: int,
                buffer: BufferLimits | None = None, prompt_limit: int | None = None) -> BodyLimits:
    """The per-route body limits of one job's coordinator (spec.algorithm.groupSize,
    spec.generation.maxNewTokens and promptTokens)."""
    buffer = buffer or BufferLimits()
    per_push = group_size
    trajectories = per_push * sample_wire_bytes(max_new_tokens, mean_prompt_tokens, prompt_limit) + SMALL_BODY
    # A snapshot holds the buffer (bounded by max_bytes in memory, which is more than its JSON) and the
    # ids of every trained prompt (a few bytes each); 64 MiB covers millions of those.
    restore = buffer.max_bytes + (64 << 20)
    return BodyLimits(trajectories=trajectories, per_push=per_push, restore=restore)


def spec_buffer_limits(spec: RLJobSpec) -> BufferLimits:
    """The buffer's bounds for a job: `BUFFER_MEMORY_SHARE` of the coordinator container's memory limit (as
    rendered: an unset limit is 4 times the request)."""
    memory = spec.resources.coordinator.container_resources()["limits"]["memory"]
    return BufferLimits(max_bytes=int(parse_quantity(memory) * Decimal(BUFFER_MEMORY_SHARE)))


def spec_body_limits(spec: RLJobSpec) -> BodyLimits:
    """The body limits of a job's coordinator (what `build_coordinator` serves with)."""
    g = spec.generation
    return body_limits(spec.algorithm.group_size, g.max_new_tokens, g.prompt_tokens, spec_buffer_limits(spec),
                       g.max_prompt_tokens)


def sample_bytes(prompt_tokens: int, tokens: int) -> int:
    """What one buffered sample costs the coordinator at most, bytes (see BYTES_PER_TOKEN_IN_MEMORY)."""
    return 36 * prompt_tokens + BYTES_PER_TOKEN_IN_MEMORY * tokens + SAMPLE_OVERHEAD
