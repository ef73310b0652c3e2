"""Online calibration on a real API server, with a real job's workers: the tiny job's coordinator, trainer and
rollout worker run on loopback (kwok pods do not run), tagged with the GPU types the operator rendered into
their pods, and the operator polls the coordinator's /v1/progress. The test shows, in order:

1. the operator created the cluster-scoped GPUCalibration `default` (RBAC and the admission policy allow it);
2. the trainer GPU type's train factor moves from the catalog's 1 with evidence (this CPU is orders of
   magnitude slower than the GPU it stands in for), with a window of observations in the object's status;
3. a Calibrated Event on the RLJob says what was learned and whether the plan changed, and
   status.calibration shows the calibrated prediction below the catalog's, next to the observed rate;
4. a factor a platform team pins in spec.pinned is used as given (status and the job's factors);
5. after an operator restart the learned factors are still there: a job applied after the restart is
   planned with them.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from op_harness import ROOT, Kube, OperatorProcess, free_port, wait_for

from hexrl.api import reasons

pytestmark = pytest.mark.e2e

TINY = ROOT / "manifests" / "examples" / "rljob-tiny.yaml"


def tiny_job(name: str) -> dict[str, Any]:
    """The example tiny job with a budget that buys this inventory's GPUs and no step limit to speak of."""
    job = yaml.safe_load(TINY.read_text())
    job["metadata"] = {"name": name}
    spec = job["spec"]
    spec["budget"] = {"maxCostPerHour": 20}
    # one GPU type: the loopback workers keep the type they started with, while a re-plan could move pods
    # (which in a cluster would be replaced with the new type) to another type
    spec["placement"] = {"gpuTypes": ["L40S"]}
    spec["algorithm"]["totalSteps"] = 100000
    spec["checkpoint"] = {"path": "/tmp/hexrl-calibration-e2e", "everySteps": 1000, "keep": 1}
    spec.pop("resources", None)
    return job


def calibration(kube: Kube) -> dict[str, Any]:
    return kube.json("gpucalibration", "default")


def factor(kube: Kube, gpu: str, phase: str) -> dict[str, Any] | None:
    status = calibration(kube).get("status") or {}
    return next((f for f in status.get("factors", []) if (f["gpu"], f["phase"]) == (gpu, phase)), None)


def pod_env(kube: Kube, job: str, role: str) -> dict[str, str]:
    pod = kube.pods(job, role)[0]
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"] if "value" in e}


class Workers:
    """The job's worker processes on loopback, the coordinator on the port the operator polls."""

    def __init__(self, kube: Kube, job: str, coordinator_port: int, folder: Path) -> None:
        self.folder = folder
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        config = yaml.safe_load(kube.json("configmap", f"{job}-config")["data"]["config.yaml"])
        config["checkpointDir"] = str(folder / "checkpoints")
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        secret = {k: base64.b64decode(v).decode() for k, v in kube.json("secret", f"{job}-token")["data"].items()}
        self.secret = secret
        weights = free_port()
        self.env = {
            **os.environ, "HEXRL_JOB": job, "HEXRL_CONFIG": str(folder / "config.yaml"),
            "HEXRL_TOKEN_DIGESTS": secret["digests"], "HEXRL_COORDINATOR_URL": f"http://127.0.0.1:{coordinator_port}",
            "HEXRL_WEIGHTS_URL": f"http://127.0.0.1:{weights}", "HEXRL_PORT": str(coordinator_port),
            "HEXRL_WEIGHTS_PORT": str(weights), "HEXRL_RELAY_PORT": str(free_port()),
            "HEXRL_TRAINER_METRICS_PORT": str(free_port()), "HEXRL_POD_IP": "127.0.0.1", "OMP_NUM_THREADS": "1",
        }

    def start(self, role: str, extra: dict[str, str]) -> None:
        own = {"HEXRL_TOKEN": self.secret[role]} if role != "coordinator" else {}
        log = (self.folder / f"{role}.log").open("wb")
        self.procs[role] = subprocess.Popen([sys.executable, "-m", "hexrl_workers", role],
                                            env={**self.env, **own, **extra, "HEXRL_ROLE": role}, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        dead = {r: p.returncode for r, p in self.procs.items() if p.poll() is not None}
        if dead:
            logs = {r: (self.folder / f"{r}.log").read_text(errors="replace")[-2000:] for r in dead}
            pytest.fail(f"worker(s) exited: {dead}\n{logs}")
        return True

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


@pytest.fixture
def workers(kube: Kube, operator: OperatorProcess, tmp_path: Path) -> Iterator[Workers]:
    kube.apply(tiny_job("tiny"))
    wait_for(lambda: kube.pods("tiny", "rollout") and kube.pods("tiny", "trainer"), 90,
             what="the tiny job's rollout and trainer pods")
    w = Workers(kube, "tiny", operator.progress_port, tmp_path)
    try:
        yield w
    finally:
        w.stop()
        kube.cluster.kubectl("patch", "gpucalibration", "default", "--type", "merge", "-p",
                             '{"spec": {"pinned": null}}', check=False)


def test_calibration_learns_announces_honours_pins_and_survives_a_restart(
    kube: Kube, operator: OperatorProcess, workers: Workers
):
    # 1. the object exists, created by the operator with nothing pinned
    obj = wait_for(lambda: calibration(kube), 30, what="the GPUCalibration default")
    assert obj["spec"].get("learning", True) is True
    rollout_gpu = pod_env(kube, "tiny", "rollout")["HEXRL_GPU_TYPE"]
    trainer_env = pod_env(kube, "tiny", "trainer")
    trainer_gpu = trainer_env["HEXRL_GPU_TYPE"]
    assert rollout_gpu and trainer_gpu  # the operator renders each pod's GPU type
    workers.start("coordinator", {})
    workers.start("trainer", {"HEXRL_GPU_TYPE": trainer_gpu})
    workers.start("rollout", {"HEXRL_GPU_TYPE": rollout_gpu,
                              "HEXRL_TENSOR_PARALLEL": pod_env(kube, "tiny", "rollout")["HEXRL_TENSOR_PARALLEL"]})

    # 2. the train factor of the trainer's GPU type moves from 1, with evidence. (Decode is learned too where
    # the rollout worker's busy time exceeds what the cost model's fixed terms — reward, prefill — explain;
    # one loopback worker on this machine is faster than that, so only the real-node test checks decode.)
    train = wait_for(lambda: workers.alive() and (f := factor(kube, trainer_gpu, "train")) and f["used"] >= 2
                     and f, 240, interval=2, what=f"a fitted {trainer_gpu} train factor")
    assert train["factor"] < 0.5 and train["confidence"] > 0.5 and not train["pinned"], train
    assert train["recent"] and all(o["job"].endswith("/tiny") for o in train["recent"])
    assert train["interval"][0] <= train["fitted"] <= train["interval"][1]

    # 3. the Event and the job's status say so
    event = wait_for(lambda: next((e for e in kube.events("tiny", reasons.CALIBRATED)
                                   if f"{trainer_gpu} train measured" in e["message"]), None),
                     120, what=f"a Calibrated Event about {trainer_gpu} train")
    assert "× the catalog (confidence 0." in event["message"], event["message"]
    assert "re-planned" in event["message"] or "plan unchanged" in event["message"], event["message"]
    status = wait_for(lambda: (c := kube.status("tiny").get("calibration")) and c.get("observedTokensPerSecond")
                      and c, 120, what="status.calibration with an observed rate")
    print("status.calibration:", status)
    print("GPUCalibration:", (calibration(kube).get("status") or {}).get("summary"))
    print("events:", [e["message"] for e in kube.events("tiny", reasons.CALIBRATED)])
    # every learned factor is below 1 here (this CPU is slower than any GPU), so the calibrated prediction
    # cannot exceed the catalog's (equal when the plan's bottleneck is a term no factor scales)
    assert status["predictedTokensPerSecond"] <= status["catalogTokensPerSecond"]
    assert any(f["gpu"] == trainer_gpu and f["phase"] == "train" for f in status["factors"])
    assert status["message"].startswith("Calibrated: ")

    # 4. a pinned factor wins and is never re-fitted
    kube.cluster.kubectl("patch", "gpucalibration", "default", "--type", "merge", "-p",
                         yaml.safe_dump({"spec": {"pinned": [{"gpu": trainer_gpu, "phase": "train", "factor": 7.0}]}}))
    pinned = wait_for(lambda: (f := factor(kube, trainer_gpu, "train")) and f["pinned"] and f, 60,
                      what=f"the pinned {trainer_gpu} train factor in the status")
    assert pinned["factor"] == 7.0
    wait_for(lambda: any(f["gpu"] == trainer_gpu and f["phase"] == "train" and f["factor"] == 7.0 and f["pinned"]
                         for f in (kube.status("tiny").get("calibration") or {}).get("factors", [])),
             60, what="the job's plan using the pinned factor")

    # 5. a restart keeps what was learned
    workers.stop()

    def settled() -> dict[str, Any] | None:  # the operator's last write after the workers stopped has landed
        first = calibration(kube).get("status", {}).get("factors")
        time.sleep(3 * 2)  # three of the harness's 2-second poll intervals
        return first if first == calibration(kube).get("status", {}).get("factors") else None

    learned = {(f["gpu"], f["phase"]): f for f in wait_for(settled, 60, what="the GPUCalibration's status to settle")}
    kube("delete", "rljob", "tiny", "--wait=false")  # its GPUs go to the next job
    wait_for(lambda: not kube.pods("tiny"), 90, what="the first job's pods to go away")
    operator.kill(signal.SIGTERM)
    operator.start()
    kube.apply(tiny_job("tiny-after"))
    after = wait_for(lambda: (kube.status("tiny-after").get("calibration") or {}).get("factors"), 90,
                     what="the new job's calibrated factors")
    cells = {(f["gpu"], f["phase"]): f["factor"] for f in after}
    assert cells.get((trainer_gpu, "train")) == 7.0  # the pin, read back from the object
    for (gpu, phase), f in learned.items():  # every learned factor of the new plan's types is what was stored
        if (gpu, phase) in cells and not f["pinned"]:
            assert cells[(gpu, phase)] == pytest.approx(f["factor"], rel=1e-3)
    stored = {(f["gpu"], f["phase"]): f for f in calibration(kube)["status"]["factors"]}
    assert all(stored[c]["used"] >= f["used"] for c, f in learned.items())  # the windows were not wiped
    # the fit behind the pin survived too: rebuilt from the stored window of observations
    assert stored[(trainer_gpu, "train")]["fitted"] == pytest.approx(learned[(trainer_gpu, "train")]["fitted"], rel=1e-6)
