"""Per-role bearer tokens of a job's services: who is calling (trainer, rollout or operator).

Each job has one token per calling role, derived from a key (the operator's, or a random one in
`hexrl run`): `HMAC-SHA256(key, job id + "/" + role)`, URL-safe base64. Deterministic, so a restarted
operator derives the same tokens instead of reading them back.

The job's Secret `<job>-token` carries one key per role (`trainer`, `rollout`, `operator`) and a key
`digests`: the SHA-256 of each role's token (`encode_digests`). A pod gets `HEXRL_TOKEN` from its own
role's key only (the coordinator pod calls no one and gets none) and every pod gets `HEXRL_TOKEN_DIGESTS`
from `digests`: the services (coordinator, weight origin, relays) check a presented token against the
digests. Digests rather than the tokens themselves: a verifier learns which role a token belongs to but
cannot present any other role's token, so a compromised coordinator or relay pod does not turn into the
trainer (SHA-256 of a 256-bit random token cannot be inverted).

This module is pure (no I/O).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

TOKEN_ROLES = ("trainer", "rollout", "operator")
"""The roles that call a job's services; each has its own token (and Secret key of the same name)."""


class TokenError(ValueError):
    """A token or digest list is missing or malformed; the message says what to set."""


def derive_tokens(key: bytes, job_id: str) -> dict[str, str]:
    """The token of every role of one job: HMAC-SHA256(key, job_id + "/" + role), URL-safe base64."""
    return {role: _b64(hmac.new(key, f"{job_id}/{role}".encode(), hashlib.sha256).digest()) for role in TOKEN_ROLES}


def token_digest(token: str) -> str:
    """What a verifier stores for a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def encode_digests(tokens: Mapping[str, str]) -> str:
    """`trainer=<hex>,rollout=<hex>,operator=<hex>`: the value of `HEXRL_TOKEN_DIGESTS`."""
    return ",".join(f"{role}={token_digest(tokens[role])}" for role in TOKEN_ROLES if role in tokens)


def parse_digests(text: str, source: str = "HEXRL_TOKEN_DIGESTS") -> dict[str, str]:
    """role → digest from `encode_digests`' format; TokenError naming the bad entry otherwise."""
    out: dict[str, str] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        role, sep, digest = entry.partition("=")
        if not sep or role not in TOKEN_ROLES or len(digest) != 64 or not _is_hex(digest):
            raise TokenError(f"{source}: {entry[:40]!r} is not role=<sha256 hex> with a role of {list(TOKEN_ROLES)}")
        out[role] = digest
    if not out:
        raise TokenError(f"{source} is empty: the services could not tell any caller's role; set it from the "
                         "job's Secret, key `digests`")
    return out


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
