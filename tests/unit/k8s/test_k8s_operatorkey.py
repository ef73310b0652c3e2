"""The operator's key on its own (`operatorkey.OperatorKey`): created once when missing, read once, and a
key too short to derive tokens from is refused with what to do."""

from __future__ import annotations

import base64

import pytest
from k8s_helpers import FakeApi

from hexrl.k8s.kubeapi import ApiError
from hexrl.k8s.operatorkey import OperatorKey
from hexrl.k8s.settings import OperatorSettings

pytestmark = pytest.mark.unit
S = OperatorSettings().with_values(key_namespace="ops")


def test_a_missing_key_is_created_once_and_then_only_read_from_memory():
    api = FakeApi()
    key = OperatorKey(api, S)
    tokens = key.job_tokens("uid-1")
    secret = api.objects[("Secret", "ops", "hexrl-operator-key")]
    assert len(base64.b64decode(secret["data"]["key"])) == 32
    requests = api.requests
    assert key.job_tokens("uid-1") == tokens and api.requests == requests  # read once per process
    assert OperatorKey(api, S).job_tokens("uid-1") == tokens  # another replica derives the same tokens


def test_a_key_too_short_is_refused_with_what_to_do():
    api = FakeApi()
    api.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hexrl-operator-key", "namespace": "ops"},
               "data": {"key": base64.b64encode(b"short").decode()}})
    with pytest.raises(ApiError, match="delete it and the operator creates a new one"):
        OperatorKey(api, S).key()
