"""Malformed requests, unknown wire versions, wrong tokens, missing model paths: clear 4xx / messages."""

from __future__ import annotations

import json
import subprocess

import pytest
import requests
from workers_builders import CREDENTIALS, PYTHON, REPO, TOKENS, auth, subprocess_env, tiny_spec, write_config

from hexrl_workers.coordinator.server import ThreadedCoordinator
from hexrl_workers.modeling import ModelSourceError, build_model
from hexrl_workers.runtime import build_coordinator

pytestmark = pytest.mark.workers
ROLE_OF = {"/v1/work": "rollout", "/v1/trajectories": "rollout", "/v1/version": "trainer", "/v1/restore": "trainer",
           "/v1/batch": "trainer", "/v1/staleness": "operator", "/v1/progress": "operator", "/v1/state": "trainer"}
"""The role whose token these tests call each coordinator path with (one `ACCESS` allows)."""


@pytest.fixture
def coord():
    c = ThreadedCoordinator(build_coordinator(tiny_spec(), CREDENTIALS))
    yield c
    c.close()


def _post(c, path, body, headers=None, raw=False):
    headers = auth(ROLE_OF[path]) if headers is None else headers
    data = body if raw else json.dumps(body)
    return requests.post(c.url + path, data=data, headers={**headers, "Content-Type": "application/json"}, timeout=10)


def test_malformed_and_unknown_version_requests_get_4xx_and_service_keeps_serving(coord):
    r = _post(coord, "/v1/work", b"{not json", raw=True)
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = _post(coord, "/v1/work", {"wireVersion": 99, "workerId": "w"})
    assert r.status_code == 400 and r.json()["field"] == "wireVersion" and "99" in r.json()["error"]
    r = _post(coord, "/v1/work", {"maxItems": 1})
    assert r.status_code == 422 and r.json()["field"] == "workerId"
    r = _post(coord, "/v1/trajectories", {"trajectories": [{"itemId": 0, "groupId": 0, "groupSize": 2,
                                                             "sampleIndex": 0, "promptId": 0, "promptTokens": [1],
                                                             "tokens": [3, 4], "logprobs": [-1.0],
                                                             "versions": [0, 0], "reward": 1}]})
    assert r.status_code == 422 and "same length" in r.json()["error"]
    r = _post(coord, "/v1/work", {"workerId": "w"}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["field"] == "Authorization"
    r = requests.put(coord.url + "/v1/staleness", json={"maxPolicyLag": -1}, headers=auth("operator"), timeout=10)
    assert r.status_code == 422
    r = _post(coord, "/v1/version", {"version": 5, "batchId": 0})
    assert r.status_code == 409 and "does not follow" in r.json()["error"]
    r = _post(coord, "/v1/restore", {"nonsense": True})
    assert r.status_code == 422
    # after all that, real work is still served
    r = _post(coord, "/v1/work", {"workerId": "w", "maxItems": 1})
    assert r.status_code == 200 and len(r.json()["items"]) == 1
    metrics = requests.get(coord.url + "/metrics", timeout=10).text
    assert 'hexrl_rejected_requests_total{reason="wireVersion"} 1.0' in metrics


def test_eta_can_be_changed_at_run_time_by_endpoint_and_by_config_file(tmp_path):
    spec = tiny_spec()
    cfg = write_config(tmp_path, spec, "http://x", "http://y", max_policy_lag=4)
    server = build_coordinator(spec, CREDENTIALS, 4, config_path=str(cfg))
    server.settings.config_poll_seconds = 0.05
    c = ThreadedCoordinator(server)
    try:
        r = requests.put(c.url + "/v1/staleness", json={"maxPolicyLag": 1}, headers=auth("operator"), timeout=10)
        assert r.json() == {"maxPolicyLag": 1} and server.core.s.max_policy_lag == 1
        write_config(tmp_path, spec, "http://x", "http://y", max_policy_lag=7)  # the operator's edit
        import time

        deadline = time.monotonic() + 30  # polled every 0.05 s; the margin is for a loaded machine
        while server.core.s.max_policy_lag != 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.core.s.max_policy_lag == 7
        assert requests.get(c.url + "/v1/progress", headers=auth("operator"), timeout=10).json()["maxPolicyLag"] == 7
    finally:
        c.close()


def test_missing_model_path_is_a_clear_error(tmp_path):
    spec = tiny_spec(**{"model.source": {"localPath": str(tmp_path / "nope")}})
    with pytest.raises(ModelSourceError, match=r"does not exist; set model\.source\.localPath"):
        build_model(spec)
    job = tmp_path / "job.yaml"
    text = (REPO / "manifests/examples/rljob-tiny.yaml").read_text().replace(
        "source: {builtin: tiny-random}", f"source: {{localPath: {tmp_path / 'nope'}}}")
    job.write_text(text)
    out = subprocess.run([PYTHON, "-m", "hexrl.cli", "run", str(job), "--quiet"], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 1  # bad input (hexrl.commands._inputs.EXIT_BAD_INPUT)
    assert "does not exist" in out.stderr and "Traceback" not in out.stderr


def test_hexrl_run_rejects_a_bad_job_file_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: hexrl.dev/v1alpha1\nkind: RLJob\nspec: {model: 3}\n")
    out = subprocess.run([PYTHON, "-m", "hexrl.cli", "run", str(bad)], capture_output=True, text=True, timeout=120,
                         cwd=REPO)
    assert out.returncode == 1 and "spec.model" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([PYTHON, "-m", "hexrl.cli", "run", str(tmp_path / "missing.yaml")], capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert out.returncode == 1 and "does not exist" in out.stderr


def test_pod_entry_point_reports_config_problems(tmp_path):
    env = subprocess_env(tmp_path / "absent.yaml", "rollout")
    out = subprocess.run([PYTHON, "-m", "hexrl_workers", "rollout"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "not found" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "c.yaml").write_text("job: t\nspec: {}\n")
    out = subprocess.run([PYTHON, "-m", "hexrl_workers", "trainer"], env=subprocess_env(tmp_path / "c.yaml"),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "coordinatorUrl" in out.stderr
    out = subprocess.run([PYTHON, "-m", "hexrl_workers", "dance"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "usage" in out.stderr


@pytest.mark.parametrize("layout,why", [
    ({"HEXRL_PIPELINE_PARALLEL": "2", "HEXRL_NNODES": "2", "HEXRL_NODE_RANK": "0"}, "pipeline parallelism (PP2)"),
    ({"LOCAL_WORLD_SIZE": "4", "HEXRL_TENSOR_PARALLEL": "4", "HEXRL_DATA_PARALLEL": "1"}, "key/value heads (2)"),
    ({"LOCAL_WORLD_SIZE": "2", "HEXRL_TENSOR_PARALLEL": "two"}, "HEXRL_TENSOR_PARALLEL='two'"),
])
def test_trainer_pod_refuses_a_layout_it_cannot_execute(tmp_path, layout, why):
    """Before any process is launched or any rank waits for peers: exit 2 with the reason, no traceback."""
    config = write_config(tmp_path, tiny_spec(), "http://127.0.0.1:9", "http://127.0.0.1:9")
    env = subprocess_env(config, **layout)
    out = subprocess.run([PYTHON, "-m", "hexrl_workers", "trainer"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert why in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_trajectories_that_would_poison_training_are_counted_dropped_and_generated_again(coord):
    """NaN/Infinity rewards and log-probs and token ids outside the vocabulary (the tiny job's is 24) never
    reach a batch: each is dropped with its reason counted, and its sample is handed out again."""
    work = _post(coord, "/v1/work", {"workerId": "w", "maxItems": 1}).json()
    item = work["items"][0]

    def traj(sample: int, **bad: object) -> dict:
        t = {"itemId": item["itemId"], "epoch": item.get("epoch", 0), "groupId": item["groupId"],
             "groupSize": item["groupSize"], "sampleIndex": sample, "promptId": item["prompt"]["promptId"],
             "promptTokens": [1, 5], "tokens": [6, 2], "logprobs": [-1.0, -0.5], "versions": [0, 0], "reward": 1.0}
        t.update(bad)
        return t

    cases = [
        (traj(0, reward="NaN"), "non-finite reward"),
        (traj(1, logprobs=[-1.0, "Infinity"]), "invalid log-prob"),
        (traj(2, tokens=[6, 10_000]), "token id out of vocabulary"),
    ]
    for t, reason in cases:
        raw = json.dumps({"trajectories": [t]}).replace('"NaN"', "NaN").replace('"Infinity"', "Infinity")
        r = _post(coord, "/v1/trajectories", raw, raw=True)
        assert r.status_code == 200 and r.json()["accepted"] == 0 and r.json()["dropped"] == 1, (reason, r.text)
    metrics = requests.get(coord.url + "/metrics", timeout=10).text
    for _, reason in cases:
        assert f'hexrl_samples_invalid_total{{reason="{reason}"}} 1.0' in metrics, metrics
    # the three samples are generated again: the next work request continues them from scratch
    again = _post(coord, "/v1/work", {"workerId": "w2", "maxItems": 4}).json()["items"]
    redo = {s["sampleIndex"] for i in again if i["groupId"] == item["groupId"] for s in i["samples"]}
    assert {0, 1, 2} <= redo, again


@pytest.mark.parametrize("value", ["", None], ids=["empty", "unset"])
@pytest.mark.parametrize("role,var,says", [
    ("coordinator", "HEXRL_TOKEN_DIGESTS", "could not check who calls them"),
    ("rollout", "HEXRL_TOKEN_DIGESTS", "could not check who calls them"),
    ("rollout", "HEXRL_TOKEN", "needs the job's rollout token"),
    ("trainer", "HEXRL_TOKEN", "needs the job's trainer token"),
])
def test_a_worker_without_its_token_or_the_digests_refuses_to_start_instead_of_serving_open(
        tmp_path, value, role, var, says):
    config = write_config(tmp_path, tiny_spec(), "http://127.0.0.1:9", "http://127.0.0.1:9")
    env = subprocess_env(config, role, HEXRL_PORT="0")
    if value is None:
        del env[var]
    else:
        env[var] = value
    out = subprocess.run([PYTHON, "-m", "hexrl_workers", role], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"{var} is " + ("empty" if value == "" else "not set") in out.stderr, out.stderr[-2000:]
    assert says in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("role,token,says", [
    ("trainer", TOKENS["rollout"], "is not this job's trainer token"),
    ("rollout", "a-guess", "is not this job's rollout token"),
])
def test_a_worker_given_another_roles_token_refuses_to_start(tmp_path, role, token, says):
    config = write_config(tmp_path, tiny_spec(), "http://127.0.0.1:9", "http://127.0.0.1:9")
    out = subprocess.run([PYTHON, "-m", "hexrl_workers", role], env=subprocess_env(config, role, HEXRL_TOKEN=token),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]


def test_restore_is_all_or_nothing_and_deep_json_is_a_client_error(coord):
    state = requests.get(coord.url + "/v1/state", headers=auth("trainer"), timeout=10).json()
    before = requests.get(coord.url + "/v1/version", headers=auth("trainer"), timeout=10).json()["version"]
    bad = {**state, "version": 999, "continuations": [{"groupId": 0, "spec": {"sampleIndex": "not a number"}}]}
    r = _post(coord, "/v1/restore", bad)
    assert r.status_code == 422, r.text
    assert requests.get(coord.url + "/v1/version", headers=auth("trainer"), timeout=10).json()["version"] == before
    deep = "[" * 100_000 + "]" * 100_000
    for path in ("/v1/restore", "/v1/trajectories"):
        r = _post(coord, path, deep, raw=True)
        assert r.status_code == 400 and ("nested too deeply" in r.text or "recursion" in r.text.lower()), (path, r.text)
    assert _post(coord, "/v1/work", {"workerId": "w", "maxItems": 1}).status_code == 200  # still serving
