"""The RLJob CRD against the real API server: it installs, accepts the example, rejects bad jobs by field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from builders import rljob
from hexrl.api.crd import CRD_NAME
from hexrl.api.models import RLJob
from hexrl.devcluster import DevCluster, DevClusterError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "manifests" / "examples" / "rljob.yaml"
INVALID = sorted((ROOT / "manifests" / "examples" / "invalid").glob("*.yaml"))


def _expected_field(path: Path) -> str:
    m = re.search(r"^# expect: (\S+)$", path.read_text(), re.MULTILINE)
    assert m, f"{path.name} has no '# expect:' comment"
    return m[1]


def _contains(stored: object, sent: object) -> bool:
    """`stored` holds everything in `sent` (it may hold more: server-side defaults)."""
    if isinstance(sent, dict):
        return isinstance(stored, dict) and all(k in stored and _contains(stored[k], v) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(stored, list) and len(stored) == len(sent) and all(map(_contains, stored, sent))
    if isinstance(sent, int | float) and not isinstance(sent, bool):
        return isinstance(stored, int | float) and float(stored) == float(sent)
    return stored == sent


def _as_json(c: DevCluster, path: Path) -> dict:
    """The manifest as kubectl reads it (YAML 1.2 numbers such as 1.54e9; PyYAML would read a string)."""
    return dict(json.loads(c.kubectl("create", "--dry-run=client", "-o", "json", "-f", str(path)).stdout))


def test_crd_is_established_with_short_name(devcluster: DevCluster) -> None:
    crd = json.loads(devcluster.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conds.get("Established") == "True" and conds.get("NamesAccepted") == "True"
    # No "NonStructuralSchema" condition: the schema is structural.
    assert "NonStructuralSchema" not in conds
    resources = devcluster.kubectl("api-resources", "--api-group=hexrl.dev").stdout
    assert re.search(r"^rljobs\s+rlj\s+hexrl.dev/v1alpha1\s+true\s+RLJob", resources, re.MULTILINE), resources


def test_example_job_is_accepted_and_reads_back_with_defaults(devcluster: DevCluster) -> None:
    out = devcluster.kubectl("apply", "-f", str(EXAMPLE))
    assert "rljob.hexrl.dev/qwen-math-grpo" in out.stdout
    try:
        stored = json.loads(devcluster.kubectl("get", "rlj", "qwen-math-grpo", "-o", "json").stdout)
        sent = _as_json(devcluster, EXAMPLE)
        assert _contains(stored["spec"], sent["spec"]), "everything sent must read back unchanged"
        assert stored["spec"]["budget"] == {"maxCostPerHour": 180}
        # Sections left out of the file are filled in by the API server from the schema's defaults.
        assert stored["spec"]["images"]["pullPolicy"] == "IfNotPresent"
        assert stored["spec"]["algorithm"]["decoupled"] is True
        assert stored["spec"]["resources"]["trainer"] == {"requests": {}}  # the defaults apply when rendered
        # What the server stores is a valid RLJob for the operator.
        job = RLJob.model_validate(stored)
        assert job.spec.staleness.max_policy_lag == 4
    finally:
        devcluster.kubectl("delete", "-f", str(EXAMPLE), "--wait=true")


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_job_is_rejected_by_the_api_server_naming_the_field(devcluster: DevCluster, path: Path) -> None:
    field = _expected_field(path)
    # What a user does: kubectl apply (kubectl ≥ 1.27 leaves validation to the server).
    proc = devcluster.kubectl("apply", "-f", str(path), check=False)
    assert proc.returncode != 0, f"{path.name} was accepted: {proc.stdout}"
    assert "is invalid" in proc.stderr or "Error from server" in proc.stderr, proc.stderr
    assert field in proc.stderr, f"{path.name}: the message does not name {field}: {proc.stderr}"
    # The same object straight to the REST API, no client in between: the API server itself rejects it.
    doc = _as_json(devcluster, path)
    with pytest.raises(DevClusterError) as info:
        devcluster.api("POST", "/apis/hexrl.dev/v1alpha1/namespaces/default/rljobs?fieldValidation=Strict", doc)
    assert re.search(r"HTTP (400|422)", str(info.value)) and field in str(info.value), str(info.value)
    name = doc["metadata"]["name"]
    assert devcluster.kubectl("get", "rlj", name, check=False).returncode != 0, "nothing may be stored"


def test_server_side_validation_without_kubectl_help(devcluster: DevCluster) -> None:
    """The raw REST API (no client-side checks) rejects a budget with neither bound, naming spec.budget."""
    body = rljob(name="raw-no-budget", budget={})
    body["metadata"]["namespace"] = "default"
    with pytest.raises(DevClusterError) as info:
        devcluster.api("POST", "/apis/hexrl.dev/v1alpha1/namespaces/default/rljobs", body)
    assert "HTTP 422" in str(info.value) and "spec.budget" in str(info.value)


def test_status_subresource_printer_columns_and_kopf_state(devcluster: DevCluster) -> None:
    devcluster.kubectl("apply", "-f", "-", input=json.dumps(rljob(name="status-job")))
    try:
        status = {
            "phase": "Running", "gpus": 24, "tokensPerSecond": 41234.5, "costPerHour": 96.0, "staleness": 1.5,
            "progress": {"policyVersion": 7, "meanReward": 0.625},
            "kopf": {"progress": {"reconcile": {"started": "2026-01-01T00:00:00Z", "retries": 1}}},
            "conditions": [{"type": "Planned", "status": "True", "reason": "PlanFound", "message": "ok",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        }  # fmt: skip
        devcluster.kubectl(
            "patch", "rlj", "status-job", "--subresource=status", "--type=merge", "-p", json.dumps({"status": status})
        )
        # A spec write through the main resource cannot change status (the subresource owns it).
        devcluster.kubectl("patch", "rlj", "status-job", "--type=merge", "-p", '{"status": {"phase": "Failed"}}')
        stored = json.loads(devcluster.kubectl("get", "rlj", "status-job", "-o", "json").stdout)["status"]
        assert stored["phase"] == "Running"
        assert stored["kopf"]["progress"]["reconcile"]["retries"] == 1, "kopf's state must be preserved"
        table = devcluster.kubectl("get", "rlj", "status-job").stdout.splitlines()
        assert table[0].split() == ["NAME", "PHASE", "GPUS", "TOKENS/S", "$/H", "STALENESS", "REWARD", "AGE"]
        assert table[1].split()[:7] == ["status-job", "Running", "24", "41234.5", "96", "1.5", "0.625"]
        # An invalid phase is rejected on the status subresource too.
        bad = devcluster.kubectl(
            "patch", "rlj", "status-job", "--subresource=status", "--type=merge",
            "-p", '{"status": {"phase": "Exploded"}}', check=False,
        )  # fmt: skip
        assert bad.returncode != 0 and "status.phase" in bad.stderr
    finally:
        devcluster.kubectl("delete", "rlj", "status-job", "--wait=true")
