"""`prepare` with credentials that may read but not create: the RLJob CRD is required, the GPUCalibration
CRD is not (the operator keeps calibration in memory and says so)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from k8s_helpers import FakeApi

from hexrl.api.crd import calibration_crd, crd
from hexrl.k8s.bootstrap import PrepareError, install_documents, prepare
from hexrl.k8s.kubeapi import ApiError
from hexrl.k8s.settings import OperatorSettings


class ReadOnlyApi(FakeApi):
    """May read everything, create or apply nothing (a ServiceAccount's view of cluster-scoped objects)."""

    def apply(self, obj: dict[str, Any], force: bool = True) -> dict[str, Any]:
        raise ApiError(403, "Forbidden", f"cannot apply {obj['kind']} {obj['metadata']['name']}")

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        raise ApiError(403, "Forbidden", f"cannot create {obj['kind']} {obj['metadata']['name']}")


def installed(api: FakeApi, *docs: dict[str, Any]) -> None:
    for doc in docs:
        FakeApi.apply(api, doc)


def everything_but_crds(settings: OperatorSettings) -> list[dict[str, Any]]:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": settings.operator_namespace()}}
    return [d for d in install_documents(settings) if d["kind"] != "CustomResourceDefinition"] + [namespace]


def test_a_missing_calibration_crd_is_a_warning_not_a_refusal(caplog: pytest.LogCaptureFixture) -> None:
    settings = OperatorSettings()
    api = ReadOnlyApi()
    installed(api, crd(), *everything_but_crds(settings))
    with caplog.at_level(logging.WARNING, logger="hexrl.k8s.bootstrap"):
        assert prepare(api, settings) == []
    name = calibration_crd()["metadata"]["name"]
    assert any(name in r.getMessage() and "lost on restart" in r.getMessage() for r in caplog.records)


def test_a_missing_rljob_crd_is_refused_with_the_admins_command() -> None:
    settings = OperatorSettings()
    api = ReadOnlyApi()
    installed(api, calibration_crd(), *everything_but_crds(settings))
    with pytest.raises(PrepareError, match=r"RLJob CRD .*403 Forbidden.*as a cluster admin run: hexrl crds print"):
        prepare(api, settings)
