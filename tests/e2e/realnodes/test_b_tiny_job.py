"""The tiny RLJob trains for real in pods on real nodes, with the operator running on the host as a
developer runs it (`hexrl operator --kubeconfig …`). One job, its behaviours in order:

1. `kubectl apply` → every pod Running and Ready through its real probes, in a namespace where the API
   server enforces the Pod Security Standard `restricted` (a pod that is not is refused), each pod without an
   API token and on a read-only root filesystem, the job's NetworkPolicy selecting exactly its pods;
2. rollout workers pull weights through the `<job>-weights` Service, and relay among themselves;
3. a spot node is reclaimed (the reclaim taint, then a drain through the Eviction API): its rollout pods
   get SIGTERM, their partial responses migrate (none lost), replacement pods start on the other spot
   node, the trainer is untouched and training continues;
4. the trainer pod is deleted: the new one resumes from the last checkpoint on a persistent volume and no
   prompt is trained twice;
5. `status.progress.meanReward` rises from < 0.3 to ≥ 0.9 with observed staleness ≤ η;
6. deleting the RLJob removes every container from the nodes.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from real_harness import (
    ROOT,
    RealCluster,
    dashboard_queries,
    free_port,
    podmonitor_scrape_config,
    podmonitor_targets,
    render_podmonitor,
    start_prometheus,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NS = "tiny"
JOB = "tiny-arith"
TINY = ROOT / "manifests" / "examples" / "rljob-tiny.yaml"
HEXRL = str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "hexrl")
RECLAIM_TAINT = {"key": "karpenter.sh/disrupted", "value": "true", "effect": "NoSchedule"}


def tiny_job(namespace: str, total_steps: int = 600) -> dict[str, Any]:
    """The example tiny job, with its checkpoints on a PVC (so a new trainer pod finds them) and enough
    steps that it is still training when the later behaviours are checked."""
    job = yaml.safe_load(TINY.read_text())
    job["metadata"]["namespace"] = namespace
    spec = job["spec"]
    spec["algorithm"]["totalSteps"] = total_steps
    spec["checkpoint"] = {"pvc": "ckpt", "path": "/checkpoints", "everySteps": 10, "keep": 2}
    # A small held-out evaluation (versions 0, 50, …), so the job dashboard's evaluation panel has data too.
    spec["evaluation"] = {"everySteps": 50, "maxPrompts": 8, "k": 2}
    spec.setdefault("images", {})["pullPolicy"] = "Never"
    return job


def pvc(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "ckpt", "namespace": namespace},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}  # fmt: skip


class HostOperator:
    """`hexrl operator --kubeconfig ADMIN` on the host, using the locally loaded worker image."""

    def __init__(self, rc: RealCluster, log: Path, calibration: bool = False) -> None:
        self.rc, self.log, self.calibration = rc, log, calibration
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Online calibration is off unless the test is about it: the GPUCalibration is cluster-wide and what one
        # module's job taught it (these CPUs are ~1,000x slower than the L4s they advertise) would change the
        # next module's plan, and a Calibrated re-plan would move pods in the middle of another behaviour.
        env = {**os.environ, "HEXRL_OPERATOR_WORKER_IMAGE": self.rc.cluster.images()["workers"],
               "HEXRL_OPERATOR_CALIBRATION_ENABLED": "true" if self.calibration else "false"}
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [HEXRL, "operator", "--kubeconfig", str(self.rc.kubeconfig),
                 "--metrics-port", str(free_port()), "--health-port", str(free_port())],
                stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


class Job:
    """Views of the running job: its status, pods, and its coordinator's own endpoints."""

    def __init__(self, rc: RealCluster, namespace: str, name: str) -> None:
        self.rc, self.ns, self.name = rc, namespace, name
        self.started = time.monotonic()
        """When the job was applied (the fixture makes this object just before applying it)."""

    def status(self) -> dict[str, Any]:
        return dict(self.rc.json("get", "rlj", "-n", self.ns, self.name).get("status") or {})

    def progress(self) -> dict[str, Any]:
        return dict(self.status().get("progress") or {})

    def pods(self, role: str | None = None) -> list[dict[str, Any]]:
        sel = f"hexrl.dev/job={self.name}" + (f",hexrl.dev/role={role}" if role else "")
        return [p for p in self.rc.pods(self.ns, sel) if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self, role: str | None = None) -> list[dict[str, Any]]:
        return [p for p in self.pods(role) if _ready(p)]

    def token(self) -> str:
        """The token the operator presents (the job's Secret holds one per calling role)."""
        secrets = self.rc.json("get", "secrets", "-n", self.ns, "-l", f"hexrl.dev/job={self.name}")["items"]
        data = secrets[0]["data"]
        return base64.b64decode(data.get("operator") or data["token"]).decode()

    def exec(self, pod: dict[str, Any], script: str) -> subprocess.CompletedProcess[str]:
        """`sh -c script` in the pod's worker container, as the container's own user; not checked."""
        return self.rc.cluster.kubectl("exec", "-n", self.ns, pod["metadata"]["name"], "--", "sh", "-c", script,
                                       check=False, timeout=60)

    def coordinator(self, path: str) -> Any:
        """GET the coordinator's endpoint from the host (pod IPs are routed to the node bridges)."""
        ip = self.pods("coordinator")[0]["status"]["podIP"]
        req = urllib.request.Request(f"http://{ip}:8000{path}", headers={"Authorization": f"Bearer {self.token()}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def metrics(self, pod: dict[str, Any], port: int) -> dict[str, float]:
        with urllib.request.urlopen(f"http://{pod['status']['podIP']}:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("hexrl_"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out


def _ready(pod: dict[str, Any]) -> bool:
    conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return pod.get("status", {}).get("phase") == "Running" and conds.get("Ready") == "True"


RESTRICTED = "pod-security.kubernetes.io/enforce"


def create_restricted_namespace(rc: RealCluster, namespace: str) -> None:
    """A namespace where the API server's PodSecurity admission refuses any pod that is not `restricted`."""
    rc.apply({"apiVersion": "v1", "kind": "Namespace",
              "metadata": {"name": namespace, "labels": {RESTRICTED: "restricted",
                                                         f"{RESTRICTED}-version": "latest"}}})  # fmt: skip


def run_with_host_operator(rc: RealCluster, log_dir: Path, namespace: str, name: str,
                           objects: list[dict[str, Any]], calibration: bool = False) -> Iterator[Job]:
    """Fixture body: the host operator (online calibration on only with `calibration`), a namespace, `objects`
    (the RLJob among them) applied; on the way out the RLJob and the namespace deleted and the operator stopped
    (its log's tail printed)."""
    op = HostOperator(rc, log_dir / "operator.log", calibration)
    try:
        op.start()
        create_restricted_namespace(rc, namespace)
        job = Job(rc, namespace, name)
        rc.apply(objects)
        yield job
    finally:
        rc.kubectl("delete", "rlj", "-n", namespace, name, "--ignore-not-found", "--wait=true", "--timeout=60s",
                   check=False)
        rc.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s", check=False)
        op.stop()
        print("operator log (tail):\n" + op.tail())


@pytest.fixture(scope="module")
def job(realcluster: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Job]:
    yield from run_with_host_operator(realcluster, tmp_path_factory.mktemp("operator"), NS, JOB,
                                      [pvc(NS), tiny_job(NS)])


def test_every_pod_becomes_ready_through_its_real_probes(job: Job) -> None:
    plan = wait_for(lambda: job.status().get("plan"), 120, "the plan in the RLJob status")
    expected = 1 + sum(r.get("replicas", 1) for r in plan["rollout"]) + len(plan["trainer"]["nodes"])

    def all_ready() -> bool:
        return len(job.ready_pods()) == expected and {p["metadata"]["labels"]["hexrl.dev/role"] for p in job.ready_pods()} == {"coordinator", "trainer", "rollout"}

    wait_for(all_ready, 300, f"{expected} pods of the job Ready ({[p['metadata']['name'] for p in job.ready_pods()]})")
    # the operator writes Ready=True on its next pass after the pods' readiness reaches it
    wait_for(lambda: {c["type"]: c for c in job.status().get("conditions", [])}.get("Ready", {}).get("status") == "True",
             60, "the RLJob's Ready condition True")
    first_step = wait_for(lambda: job.progress().get("trainedSteps", 0) >= 1, 300, "the first trained step")
    assert first_step


def test_the_namespace_refuses_a_pod_that_is_not_restricted(job: Job) -> None:
    """The job runs under PodSecurity `restricted`, and the label bites: the API server refuses a pod that
    leaves out what the job's pods set (its dry run passes admission without creating anything)."""
    assert job.rc.json("get", "namespace", NS)["metadata"]["labels"][RESTRICTED] == "restricted"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unrestricted", "namespace": NS},
           "spec": {"containers": [{"name": "c", "image": job.pods("coordinator")[0]["spec"]["containers"][0]["image"],
                                    "imagePullPolicy": "Never"}]}}  # fmt: skip
    proc = job.rc.cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert proc.returncode != 0 and 'violates PodSecurity "restricted:latest"' in proc.stderr, proc.stderr
    for missing in ("allowPrivilegeEscalation != false", "unrestricted capabilities", "runAsNonRoot != true",
                    "seccompProfile"):
        assert missing in proc.stderr, proc.stderr
    # the job's own pods were admitted: every role runs there
    assert {p["metadata"]["labels"]["hexrl.dev/role"] for p in job.ready_pods()} == {"coordinator", "trainer",
                                                                                      "rollout"}


def test_job_pods_hold_no_api_token_and_write_only_to_their_scratch_dirs(job: Job) -> None:
    """Every pod runs as the job's ServiceAccount with no token in the container, as user 10001, on a
    read-only root filesystem: a write outside its emptyDirs fails, inside them it succeeds."""
    sa = job.rc.json("get", "serviceaccount", "-n", NS, f"{JOB}-workers")
    assert sa["automountServiceAccountToken"] is False
    assert sa["metadata"]["ownerReferences"][0]["name"] == JOB
    for pod in job.ready_pods():
        role = pod["metadata"]["labels"]["hexrl.dev/role"]
        assert pod["spec"]["serviceAccountName"] == f"{JOB}-workers", role
        assert not [v for v in pod["spec"]["volumes"] if "projected" in v], role  # no token volume was added
        proc = job.exec(pod, "id -u; test -e /var/run/secrets/kubernetes.io/serviceaccount && echo TOKEN; "
                             "touch /opt/hexrl/x 2>&1; touch /etc/x 2>&1; touch /x 2>&1; "
                             'touch /tmp/x "$HOME/x" && echo SCRATCH-OK')
        out = proc.stdout
        assert out.splitlines()[0] == "10001", (role, out, proc.stderr)
        assert "TOKEN" not in out, f"{role}: a service account token is mounted"
        assert out.count("Read-only file system") == 3, (role, out)
        assert "SCRATCH-OK" in out, (role, out, proc.stderr)


def test_the_network_policy_is_accepted_and_selects_exactly_the_jobs_pods(job: Job) -> None:
    """The API server holds the job's NetworkPolicy, and its pod selector — evaluated by the API server —
    picks exactly the job's pods. (Enforcing it needs a network plugin these nodes do not run.)"""
    policy = job.rc.json("get", "networkpolicy", "-n", NS, JOB)
    assert policy["metadata"]["ownerReferences"][0]["name"] == JOB
    selector = ",".join(f"{k}={v}" for k, v in policy["spec"]["podSelector"]["matchLabels"].items())
    selected = {p["metadata"]["name"] for p in job.rc.pods(NS, selector)}
    everything = {p["metadata"]["name"] for p in job.rc.pods(NS)}
    assert selected == {p["metadata"]["name"] for p in job.rc.pods(NS, f"hexrl.dev/job={JOB}")} == everything
    assert {p["metadata"]["labels"]["hexrl.dev/role"] for p in job.rc.pods(NS, selector)} == {
        "coordinator", "trainer", "rollout"}


def test_rollout_pulls_weights_through_the_service_and_relays(job: Job) -> None:
    wait_for(lambda: job.progress().get("policyVersion", 0) >= 3, 300, "policy version 3")

    def pulled() -> dict[str, float]:
        totals: dict[str, float] = {}
        for pod in job.ready_pods("rollout"):
            for key, value in job.metrics(pod, 8002).items():
                if key.startswith("hexrl_weight_fetched_bytes_total"):
                    totals[key] = totals.get(key, 0.0) + value
        return totals

    totals = wait_for(lambda: (t := pulled()) and any("origin" in k and v > 0 for k, v in t.items()) and t, 120,
                      "weights fetched from the trainer's weight Service")
    # A pod that became Ready moments ago (a replacement, or a restart) pulls its first version right after
    # its first work request: give it that long, and say which pod lagged and why if it never does.
    lagging = wait_for_every_rollout_pod_updated(job)
    assert not lagging, lagging
    # every worker past version 0 but the trainer's egress not grown with the number of workers
    print("weight bytes by source:", totals)
    assert any("peer" in k and v > 0 for k, v in totals.items()), f"no relay between rollout workers: {totals}"
    # the download overlaps generation: some swap takes a version a pod fetched while its engine generated
    prefetched = wait_for(lambda: sum(job.metrics(p, 8002).get("hexrl_rollout_weights_prefetched_total", 0)
                                      for p in job.ready_pods("rollout")), 120,
                          "a rollout pod swapping in a version it downloaded during generation")
    print("versions swapped in from a prefetch:", prefetched)


def _rollout_pods_without_weight_update(job: Job) -> dict[str, dict[str, Any]]:
    lagging = {}
    for pod in job.ready_pods("rollout"):
        updates = job.metrics(pod, 8002).get("hexrl_rollout_weight_updates_total", 0)
        if updates < 1:
            statuses = pod["status"].get("containerStatuses", [])
            lagging[pod["metadata"]["name"]] = {
                "restarts": sum(c.get("restartCount", 0) for c in statuses),
                "lastState": [c.get("lastState") for c in statuses]}
    return lagging


def wait_for_every_rollout_pod_updated(job: Job, timeout: float = 90) -> dict[str, dict[str, Any]]:
    """Wait (bounded) until every Ready rollout pod has loaded at least one published version; the pods
    that have not, with their restarts and log tails (empty when all have)."""
    deadline = time.monotonic() + timeout
    while (lagging := _rollout_pods_without_weight_update(job)) and time.monotonic() < deadline:
        time.sleep(2)
    for name, info in lagging.items():
        info["log"] = job.rc.kubectl("logs", "-n", NS, name, "--tail", "30", check=False)[-3000:]
    return lagging


def test_spot_reclaim_migrates_partials_and_replaces_rollout(job: Job) -> None:
    rc = job.rc
    trainer_before = {p["metadata"]["uid"] for p in job.pods("trainer")}
    on_spot = [p for p in job.ready_pods("rollout") if p["spec"]["nodeName"].startswith("cpu-spot")]
    assert on_spot, "the plan put rollout on the spot pool"
    victim = on_spot[0]["spec"]["nodeName"]
    survivor = "cpu-spot-1" if victim == "cpu-spot-0" else "cpu-spot-0"
    steps_before = job.progress().get("trainedSteps", 0)
    received_before = _coordinator_counter(job, "hexrl_partials_received_total")
    t0 = time.monotonic()
    rc.kubectl("taint", "node", victim, f"{RECLAIM_TAINT['key']}={RECLAIM_TAINT['value']}:{RECLAIM_TAINT['effect']}")
    try:
        for pod in [p for p in job.pods() if p["spec"].get("nodeName") == victim]:
            eviction = {"apiVersion": "policy/v1", "kind": "Eviction",
                        "metadata": {"name": pod["metadata"]["name"], "namespace": NS}}  # fmt: skip
            rc.cluster.api("POST", f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}/eviction", eviction)

        def replaced() -> bool:
            rollout = job.ready_pods("rollout")
            return not any(p["spec"]["nodeName"] == victim for p in job.pods("rollout")) and any(
                p["spec"]["nodeName"] == survivor and p["metadata"]["uid"] not in {q["metadata"]["uid"] for q in on_spot}
                for p in rollout)

        wait_for(replaced, 180, f"replacement rollout pods Ready on {survivor}")
        print(f"reclaim → replacement rollout Ready in {time.monotonic() - t0:.1f}s")
        received = _coordinator_counter(job, "hexrl_partials_received_total") - received_before
        # How many partial responses a SIGTERM'd worker hands in depends on what it held at that instant: up to
        # 4 groups of 8 two-token samples, or none while the staleness gate held it back (the tiny job is
        # trainer-bound). What must hold either way: nothing is lost (below). tests/workers/test_migration.py
        # pins the hand-in and the continuation from the last token with real worker processes.
        assert {p["metadata"]["uid"] for p in job.pods("trainer")} == trainer_before, "the trainer was untouched"
        # Nothing lost: every prompt admitted so far is trained, buffered, in flight or re-queued — except
        # those in a batch the trainer holds right now, which must show up as trained a few steps later.
        # (A worker container that restarted meanwhile makes the job resume from its last checkpoint: the prompts
        # after it are admitted and trained again, later — hence a wait until they are, not a fixed step count.)
        restarts_before = _restarts(job)
        unaccounted = _unaccounted_prompts(job.coordinator("/v1/state"))
        wait_for(lambda: job.progress().get("trainedSteps", 0) >= steps_before + 5, 240, "training to continue")
        deadline = time.monotonic() + 240
        while (lost := unaccounted - set(job.coordinator("/v1/state")["trainedPromptIds"])) and (
                time.monotonic() < deadline):
            time.sleep(3)
        state = job.coordinator("/v1/state")
        migrated = _coordinator_counter(job, "hexrl_partials_migrated_total")
        print(f"partials handed in {received:.0f} (continued from their last token: {migrated:.0f}; the rest had no "
              f"token yet and were re-dispatched whole), lost {len(lost)}; container restarts before/after "
              f"{restarts_before} / {_restarts(job)}")
        assert not lost, (f"prompts lost in the reclaim: {sorted(lost)}; discarded groups by reason "
                          f"{job.progress().get('discardedGroups')}; container restarts {_restarts(job)}; "
                          f"events: {_job_events(job)}")
        ids = state["trainedPromptIds"]
        assert len(ids) == len(set(ids)), "a prompt was trained twice"
    finally:
        rc.kubectl("taint", "node", victim, f"{RECLAIM_TAINT['key']}-", check=False)


def test_trainer_deleted_resumes_from_checkpoint(job: Job) -> None:
    wait_for(lambda: job.progress().get("trainedSteps", 0) >= 25, 300, "25 trained steps (two checkpoints)")
    old = job.pods("trainer")
    assert len(old) == 1
    job.rc.kubectl("delete", "pod", "-n", NS, old[0]["metadata"]["name"], "--wait=false")
    old_uid = old[0]["metadata"]["uid"]

    def new_trainer_ready() -> bool:
        return any(p["metadata"]["uid"] != old_uid for p in job.ready_pods("trainer"))

    wait_for(new_trainer_ready, 240, "a new trainer pod Ready")
    new = next(p for p in job.ready_pods("trainer") if p["metadata"]["uid"] != old_uid)
    logs = job.rc.kubectl("logs", "-n", NS, new["metadata"]["name"])
    assert "resum" in logs.lower(), logs[-2000:]
    steps_at_restart = job.progress().get("trainedSteps", 0)
    wait_for(lambda: job.progress().get("trainedSteps", 0) >= steps_at_restart + 5, 240, "training after the restart")
    ids = job.coordinator("/v1/state").get("trainedPromptIds", [])
    assert ids and len(ids) == len(set(ids)), "a prompt was trained twice"


def test_reward_rises_above_0_9_within_the_staleness_bound(job: Job) -> None:
    progress = wait_for(lambda: (p := job.progress()).get("meanReward") is not None and p, 300, "a mean reward")
    initial = job.coordinator("/v1/progress").get("initialReward")
    assert initial is not None and initial < 0.3, f"the untrained policy already scores {initial}"
    progress = wait_for(lambda: (p := job.progress()).get("meanReward", 0) >= 0.9 and p, 900,
                        "meanReward >= 0.9")
    eta = job.rc.json("get", "rlj", "-n", NS, JOB)["spec"]["staleness"]["maxPolicyLag"]
    max_seen = job.coordinator("/v1/progress").get("maxObservedStaleness", 0)
    assert max_seen <= eta
    assert progress["observedStaleness"] <= eta
    print(f"reward {initial:.2f} → {progress['meanReward']:.2f} at step {progress['trainedSteps']}, "
          f"max staleness {max_seen} (η={eta})")


def test_prometheus_scrapes_the_pods_through_the_charts_podmonitor(job: Job, tmp_path: Path) -> None:
    """A real Prometheus discovers the job's pods with the selectors, port names and relabelings of the
    chart's PodMonitor (translated the way the Prometheus operator does), and every query of the job and
    weight-sync dashboards over worker metrics returns data."""
    monitor = render_podmonitor()
    targets = tmp_path / "targets.json"
    roles = {"coordinator", "trainer", "rollout"}
    found = wait_for(lambda: (f := podmonitor_targets(monitor, job.rc)) and {g["labels"]["role"] for g in f} == roles
                     and f, 300, "scrape targets of every role")
    targets.write_text(json.dumps(found))
    prom = start_prometheus(tmp_path, [podmonitor_scrape_config(monitor, targets)])
    try:
        for role, metric in (("coordinator", "hexrl_policy_version"), ("trainer", "hexrl_trainer_step_seconds_count"),
                             ("rollout", "hexrl_rollout_generated_tokens_total")):  # fmt: skip
            series = prom.wait_for(f'{metric}{{job="{JOB}", namespace="{NS}", role="{role}"}}', timeout=90)
            assert all(s["metric"]["pod"].startswith(f"{JOB}-") for s in series)
        # A labelled counter has no series before its first increment (e.g. weight bytes by source before the
        # first pull), and rate() needs two scrapes: poll, within one shared bound.
        pending = dashboard_queries(("hexrl-job.json", "hexrl-weights.json"))
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            answers = {expr: prom.query(expr) for expr in pending}
            for expr, answer in answers.items():
                assert answer.get("status") == "success", (expr, answer)
            pending = [expr for expr, answer in answers.items() if not answer["data"]["result"]]
            time.sleep(2)
        assert not pending, f"dashboard queries without data: {pending}"
    finally:
        prom.proc.terminate()
        prom.proc.wait(timeout=30)


def test_deleting_the_job_removes_every_container(job: Job) -> None:
    rc = job.rc
    rc.kubectl("delete", "rlj", "-n", NS, JOB, "--wait=true", "--timeout=90s")
    wait_for(lambda: not job.pods(), 120, "the job's pods gone")
    # Only the job's containers: the sandbox (pause) containers of other namespaces' pods may remain.
    wait_for(lambda: not any(c for cs in rc.containers_on_nodes().values() for c in cs
                             if _container_namespace(rc, c) == NS), 120, "no container of the job on any node")


def _unaccounted_prompts(state: dict[str, Any]) -> set[int]:
    """Prompt ids admitted (below the cursor) that the coordinator's state shows nowhere: neither trained,
    nor in a group of the buffer, nor re-queued. Only a batch being trained may hold such prompts."""
    alive = {g["prompt"]["promptId"] for g in state["groups"]} | {p["promptId"] for p in state["requeued"]}
    return set(range(state["cursor"])) - set(state["trainedPromptIds"]) - alive


def _job_events(job: Job) -> list[str]:
    """The RLJob's Events, oldest first, as "reason: message" (what the operator did meanwhile)."""
    events = job.rc.json("get", "events", "-n", job.ns, "--field-selector", f"involvedObject.name={job.name}")
    return [f"{e.get('reason')}: {e.get('message', '')[:300]}"
            for e in sorted(events["items"], key=lambda e: e.get("lastTimestamp") or "")]


def _restarts(job: Job) -> dict[str, Any]:
    """Container restarts per job pod that has any, with the last termination (reason, exit code)."""
    out: dict[str, Any] = {}
    for pod in job.pods():
        for c in pod["status"].get("containerStatuses", []):
            if c.get("restartCount"):
                out[pod["metadata"]["name"]] = (c["restartCount"], c.get("lastState", {}).get("terminated", {}))
    return out


def _coordinator_counter(job: Job, name: str) -> float:
    pod = job.pods("coordinator")[0]
    return sum(v for k, v in job.metrics(pod, 8000).items() if k.startswith(name))


def _container_namespace(rc: RealCluster, cid: str) -> str:
    state = json.loads((rc.cluster.workdir / "state.json").read_text())
    for n in state["real_nodes"]:
        sock = Path(n["dir"]) / "containerd.sock"
        proc = subprocess.run(["ctr", "--address", str(sock), "-n", "k8s.io", "containers", "info", cid],
                              capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
        if proc.returncode == 0:
            labels = json.loads(proc.stdout).get("Labels", {})
            return str(labels.get("io.kubernetes.pod.namespace", ""))
    return ""
