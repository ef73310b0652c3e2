"""The operator's key (a Secret it creates once) and the per-job bearer tokens derived from it.

Each job's service tokens are HMAC-SHA256(key, job UID + "/" + role) (`hexrl.api.jobtokens`), so the
operator never reads a job's Secret back, and a restarted operator (or another replica) derives the same
tokens instead of storing them.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading

from hexrl.api import jobtokens
from hexrl.k8s.kubeapi import ApiError, KubeApi
from hexrl.k8s.settings import OperatorSettings

log = logging.getLogger(__name__)


class OperatorKey:
    """Reads the key Secret once (creating it when missing) and derives job tokens from it; thread-safe."""

    def __init__(self, api: KubeApi, settings: OperatorSettings) -> None:
        self.api = api
        self.settings = settings
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def key(self) -> bytes:
        """The key, read once; created when missing. Raises ApiError when the Secret can be neither read nor
        created (the caller says what to fix)."""
        with self._lock:
            if self._key is None:
                self._key = self._read_or_create()
            return self._key

    def job_tokens(self, uid: str) -> dict[str, str]:
        """The bearer token of each role calling one job's services."""
        return jobtokens.derive_tokens(self.key(), uid)

    def _read_or_create(self) -> bytes:
        ns, name = self.settings.operator_namespace(), self.settings.identity.key_secret
        secret = self.api.get("v1", "Secret", name, ns)
        if secret is None:
            self._create(ns, name)
            secret = self.api.get("v1", "Secret", name, ns)
        raw = base64.b64decode(((secret or {}).get("data") or {}).get("key", ""))
        if len(raw) < 16:
            raise ApiError(422, "InvalidKey", f"Secret {ns}/{name} has no data.key of at least 16 bytes; delete it "
                                              "and the operator creates a new one")
        return raw

    def _create(self, ns: str, name: str) -> None:
        body = {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"app.kubernetes.io/name": "hexrl", "app.kubernetes.io/component": "operator",
                                    "app.kubernetes.io/managed-by": "hexrl-operator"}},
            "data": {"key": base64.b64encode(secrets.token_bytes(32)).decode()},
        }
        try:
            self.api.create(body)
            log.info("created the operator key Secret %s/%s", ns, name)
        except ApiError as exc:
            if exc.reason != "AlreadyExists":  # another replica won the race: read theirs
                raise
