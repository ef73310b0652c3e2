"""Per-role tokens in the rendered job: each pod gets only its own role's token, every pod the digests."""

from __future__ import annotations

import base64

import pytest
from test_k8s_render import JOB, TOKENS, _containers_by_role, spec

from hexrl.api import jobtokens
from hexrl.api import workerconfig as wc
from hexrl.k8s import render

pytestmark = pytest.mark.unit


def test_each_pod_gets_only_its_own_roles_token_and_every_pod_the_digests():
    own_key = {}
    for role, (_pod, c) in _containers_by_role(spec()).items():
        env = {e["name"]: e for e in c["env"]}
        assert env[wc.ENV_TOKEN_DIGESTS]["valueFrom"]["secretKeyRef"] == {
            "name": "math-token", "key": wc.SECRET_DIGESTS_KEY}, role
        token = env.get(wc.ENV_TOKEN)
        own_key[role] = token["valueFrom"]["secretKeyRef"]["key"] if token else None
        secret_keys = [e["valueFrom"]["secretKeyRef"]["key"] for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})]
        assert len(secret_keys) == len(set(secret_keys)) <= 2, role  # never a second role's token
    assert own_key == {"coordinator": None, "trainer": "trainer", "rollout": "rollout"}


def test_secret_carries_one_token_per_role_and_their_digests_not_the_tokens_twice():
    secret = render.render_secret(JOB, TOKENS)
    assert secret["type"] == "Opaque"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert {k: data[k] for k in jobtokens.TOKEN_ROLES} == TOKENS
    digests = jobtokens.parse_digests(data[wc.SECRET_DIGESTS_KEY])
    assert digests == {r: jobtokens.token_digest(t) for r, t in TOKENS.items()}
    assert not any(t in data[wc.SECRET_DIGESTS_KEY] for t in TOKENS.values())


@pytest.mark.parametrize("text", ["", "trainer", "admin=" + "0" * 64, "trainer=xyz", "rollout=" + "g" * 64])
def test_malformed_digest_lists_are_refused_with_a_sentence(text):
    with pytest.raises(jobtokens.TokenError, match="HEXRL_TOKEN_DIGESTS"):
        jobtokens.parse_digests(text)
