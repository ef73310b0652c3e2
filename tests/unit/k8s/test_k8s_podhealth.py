"""podhealth: why a job's pod cannot start or serve, in one line, from its status (pure; pod builders)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from builders import job_pod, running, unschedulable, waiting
from hexrl.api import reasons
from hexrl.k8s import conditions as cond
from hexrl.k8s import podhealth
from hexrl.k8s.snapshot import pod_view

pytestmark = pytest.mark.unit
T0 = "2026-01-01T00:00:00Z"


def at(seconds: float) -> datetime:
    """`seconds` after T0."""
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


def problem(status):
    return podhealth.pod_problem(job_pod("p", status=status))


def test_a_missing_pvc_reads_as_the_schedulers_reason_without_its_boilerplate():
    got = problem(unschedulable('persistentvolumeclaim "models" not found'))
    assert got == {"kind": reasons.POD_UNSCHEDULABLE, "cause": "Unschedulable",
                   "detail": 'persistentvolumeclaim "models" not found'}
    capacity = problem(unschedulable("2 Insufficient cpu, 6 node(s) didn't match Pod's node affinity/selector"))
    assert capacity["detail"] == "2 Insufficient cpu, 6 node(s) didn't match Pod's node affinity/selector"


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"])
def test_image_pull_errors(reason):
    msg = 'Container image "hexrl.local/hexrl-workers:1" is not present with pull policy of Never'
    got = problem(waiting(reason, msg))
    assert got == {"kind": reasons.IMAGE_PULL_FAILED, "cause": reason, "detail": msg}


def test_a_crash_loop_names_the_exit_code_and_the_last_line_the_worker_printed():
    log = "INFO starting\nhexrl_workers coordinator: unknown dataset.name 'gsm8k'\n"
    got = problem(waiting("CrashLoopBackOff", "back-off 40s restarting failed container", restarts=3, last_exit=2,
                          last_message=log))
    assert got["kind"] == reasons.CRASH_LOOP
    assert got["detail"] == ("container rollout exited with code 2: hexrl_workers coordinator: unknown dataset.name "
                             "'gsm8k'; restarted 3 time(s)")


def test_container_config_errors_and_failed_ranks():
    got = problem(waiting("CreateContainerConfigError", 'secret "math-token" not found'))
    assert (got["kind"], got["detail"]) == (reasons.CONTAINER_FAILED, 'secret "math-token" not found')
    failed = {"phase": "Failed", "containerStatuses": [{"name": "trainer", "state": {"terminated": {
        "exitCode": 137, "reason": "OOMKilled", "message": ""}}}]}
    got = problem(failed)
    assert (got["kind"], got["cause"], got["detail"]) == (
        reasons.CONTAINER_FAILED, "OOMKilled", "container trainer exited with code 137 (OOMKilled)")
    evicted = {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}
    assert problem(evicted)["cause"] == "Evicted"


def test_healthy_and_starting_pods_have_no_problem():
    assert problem({"phase": "Pending"}) is None
    assert problem(waiting("ContainerCreating")) is None
    assert problem(running()) is None
    assert problem(running(ready=False)) is None  # time-dependent: judged over the job, below
    long_message = problem(waiting("ErrImagePull", "x" * 1000))["detail"]
    assert len(long_message) == podhealth.MAX_DETAIL and "\n" not in long_message


def test_running_but_not_ready_becomes_a_problem_after_the_grace_period():
    view = pod_view(job_pod("t-trainer-0", role="trainer", status=running(ready=False, since=T0), probe_port=8003))
    assert podhealth.job_problems([view], at(299), 300) == []
    assert podhealth.next_not_ready_check([view], at(200), 300) == pytest.approx(101)
    (late,) = podhealth.job_problems([view], at(361), 300)
    assert late.kind == reasons.POD_NOT_READY
    assert late.line() == "pod t-trainer-0: NotReady: running but not ready for 6m01s (GET :8003/readyz fails)"
    assert podhealth.next_not_ready_check([view], at(361), 300) is None  # past it: nothing left to wait for
    ready = pod_view(job_pod("r", status=running(ready=True, since=T0)))
    assert podhealth.job_problems([ready], at(10_000), 300) == []


def test_the_most_fundamental_problem_comes_first_and_the_ready_condition_names_it():
    views = [pod_view(p) for p in (
        job_pod("math-rollout-a-1-0", status=waiting("ImagePullBackOff", "back-off pulling image")),
        job_pod("math-rollout-a-0-0", status=unschedulable('persistentvolumeclaim "models" not found')),
        job_pod("math-trainer-ab12-0", role="trainer", status=unschedulable('persistentvolumeclaim "models" not found')),
    )]
    problems = podhealth.job_problems(views, at(0), 300)
    assert [p.pod for p in problems] == ["math-trainer-ab12-0", "math-rollout-a-0-0", "math-rollout-a-1-0"]
    h = cond.Health(planned=True, trainer_desired=1, rollout_desired=2, problems=tuple(problems))
    status, reason, message = cond.ready_condition(h)
    assert (status, reason) == ("False", reasons.POD_UNSCHEDULABLE)
    assert message == ('pod math-trainer-ab12-0: Unschedulable: persistentvolumeclaim "models" not found '
                       "(2 more pod(s) with problems; waiting for coordinator, trainer 0/1, rollout 0/2)")


def test_a_dataset_error_wins_over_the_pods_it_keeps_unready():
    h = cond.Health(planned=True, coordinator_ready=False, trainer_desired=1, trainer_ready=1,
                    data_error="dataset unavailable: unknown dataset.name 'gsm8k'")
    status, reason, message = cond.ready_condition(h)
    assert (status, reason) == ("False", reasons.DATASET_UNAVAILABLE)
    assert message.startswith("coordinator: dataset unavailable: unknown dataset.name 'gsm8k'; fix spec.dataset")
    assert message.endswith("(waiting for coordinator)")
    assert cond.ready_condition(cond.Health(planned=True, coordinator_ready=True))[1] == reasons.CHILDREN_READY
