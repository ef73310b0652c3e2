"""The coordinator's latest held-out evaluation reaches `status.progress.evaluation` (rounded), and an
unreadable one is left out without breaking the status."""

from __future__ import annotations

import pytest
from test_k8s_reconcile import World

pytestmark = pytest.mark.unit


def _report(w: World, progress: dict) -> None:
    job = w.api.objects[("RLJob", "default", "math")]
    w.rec.set_progress(job["metadata"]["uid"], progress)
    w.pass_()


def test_the_latest_evaluation_reaches_the_status_rounded():
    w = World()
    w.pass_()
    w.sync()
    evaluation = {"version": 20, "prompts": 64, "greedyAccuracy": 0.671875, "greedyMeanReward": 0.6718751,
                  "k": 4, "passAtK": 0.8437499, "passAt1": 0.54296875}
    _report(w, {"policyVersion": 21, "observedStaleness": 1.0, "evaluation": evaluation,
                "evaluations": [evaluation]})
    assert w.status()["progress"]["evaluation"] == {
        "version": 20, "prompts": 64, "greedyAccuracy": 0.672, "greedyMeanReward": 0.672, "k": 4,
        "passAtK": 0.844, "passAt1": 0.543}
    assert "evaluations" not in w.status()["progress"]  # the history stays in the coordinator: the status is small


def test_no_or_an_unreadable_evaluation_leaves_it_out():
    w = World()
    w.pass_()
    w.sync()
    _report(w, {"policyVersion": 3, "observedStaleness": 0.0})
    assert "evaluation" not in w.status()["progress"]
    _report(w, {"policyVersion": 4, "observedStaleness": 0.0, "evaluation": {"version": "soon"}})
    assert w.status()["progress"]["policyVersion"] == 4 and "evaluation" not in w.status()["progress"]
