"""The recording format (hexrl.sim.recording): lossless round trip, one clear sentence per malformed file, the
writer's per-line flush, `hexrl run`'s layout as a plan, and the recorder that samples a coordinator."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from recording_builders import header, planned_job, sample_doc, simulated_recording
from typer.testing import CliRunner

from hexrl.api.models import RLJob
from hexrl.cli import app
from hexrl.commands._recorder import ProgressRecorder, counter_value
from hexrl.sched.calibration import CalibrationProfile
from hexrl.sched.catalog import DEFAULT_CATALOG
from hexrl.sched.costmodel import CostModelSettings, Workload, decode_tokens_per_second
from hexrl.sched.settings import PlannerSettings
from hexrl.sim.engine import simulate
from hexrl.sim.recording import (
    RecordingError,
    RecordingSample,
    RecordingWriter,
    header_line,
    load_recording,
    local_layout,
    parse_recording,
    sample_from_progress,
    sample_line,
)
from hexrl.sim.scenario import setup_from_plan

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
TINY = RLJob.model_validate(yaml.safe_load((ROOT / "manifests/examples/rljob-tiny.yaml").read_text())).spec
PROFILE = CalibrationProfile.of({("H100", "decode"): 0.8})


@pytest.fixture(scope="module")
def planned():  # type: ignore[no-untyped-def]
    return planned_job()


@pytest.fixture(scope="module")
def head(planned) -> str:  # type: ignore[no-untyped-def]
    return header_line(header(*planned, profile=PROFILE, seed=7))


def _lines(head: str, *samples: dict[str, Any]) -> list[str]:
    return [head + "\n", *(json.dumps(s) + "\n" for s in samples)]


def test_the_header_and_samples_round_trip_exactly(planned) -> None:  # type: ignore[no-untyped-def]
    job, cluster, plan = planned
    rec = parse_recording(simulated_recording(job, cluster, plan, seconds=300, profile=PROFILE))
    h = rec.header
    assert (h.job, h.cluster, h.plan, h.profile) == (job, cluster, plan, PROFILE)
    assert h.plan_source == "operator" and len(rec.samples) == 11 and rec.duration_seconds == pytest.approx(300)
    again = parse_recording([header_line(h), *(sample_line(s) for s in rec.samples)])
    assert again.header == h and again.samples == rec.samples


@pytest.mark.parametrize(("lines", "message"), [
    ([], "test.jsonl is empty"),
    (["{\"t\": 1"], "test.jsonl, line 1 is not JSON"),
    ([json.dumps(sample_doc())], "test.jsonl, line 1 is not a recording header"),
])
def test_a_file_without_a_header_is_refused(lines: list[str], message: str) -> None:
    with pytest.raises(RecordingError, match=message):
        parse_recording(lines, "test.jsonl")


def _refused(head: str, *docs: Any) -> str:
    lines = [head + "\n", *((d if isinstance(d, str) else json.dumps(d)) + "\n" for d in docs)]
    with pytest.raises(RecordingError) as exc:
        parse_recording(lines, "test.jsonl")
    return str(exc.value)


def test_malformed_recordings_each_give_one_sentence_with_file_and_line(head: str) -> None:
    assert _refused(head, sample_doc(), "{not json") == (
        "test.jsonl, line 3 is not JSON (Expecting property name enclosed in double quotes at column 2)")
    assert _refused(head, sample_doc(t=-1)) == (
        "test.jsonl, line 2: invalid sample: t: Input should be greater than or equal to 0")
    assert _refused(head, sample_doc(t=5), sample_doc(t=5)) == (
        "test.jsonl, line 3: t 5 is not after the previous sample's 5; samples must be in time order")
    assert _refused(head, sample_doc(t=1, trainedSteps=3), sample_doc(t=2, trainedSteps=2)).startswith(
        "test.jsonl, line 3: trainedSteps went down (3 → 2); the coordinator restarted")
    assert _refused(head, sample_doc(bogus=1)) == (
        "test.jsonl, line 2: invalid sample: bogus: Extra inputs are not permitted")
    assert "line 3 is a second header" in _refused(head, sample_doc(), json.loads(head))
    assert _refused(head) == "test.jsonl has a header but no samples; record the job for longer"
    assert "line 2 must be a JSON object" in _refused(head, "[1, 2]")


def test_an_unknown_format_version_or_a_bad_header_is_named(head: str) -> None:
    doc = json.loads(head)
    with pytest.raises(RecordingError, match=r"line 1: formatVersion 7 is not supported; this hexrl reads .* 1"):
        parse_recording([json.dumps({**doc, "formatVersion": 7}), json.dumps(sample_doc())], "test.jsonl")
    bad_plan = {**doc, "plan": {**doc["plan"], "trainer": {**doc["plan"]["trainer"], "gpus_per_node": "x"}}}
    with pytest.raises(RecordingError, match=r"line 1: invalid header: plan\.trainer\.gpus_per_node: "):
        parse_recording([json.dumps(bad_plan), json.dumps(sample_doc())], "test.jsonl")


def test_the_unterminated_last_line_of_a_killed_recorder_is_left_out(head: str) -> None:
    lines = _lines(head, sample_doc(t=1), sample_doc(t=2))
    rec = parse_recording([*lines, '{"t": 3, "trainedSte'], "test.jsonl")
    assert [s.t for s in rec.samples] == [1, 2]
    with pytest.raises(RecordingError, match="line 4 is not JSON"):  # with its newline it was written whole
        parse_recording([*lines, '{"t": 3, "trainedSte\n'], "test.jsonl")


def test_the_writer_flushes_every_line(planned, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "rec.jsonl"
    writer = RecordingWriter(path, header(*planned))
    writer.write(RecordingSample(t=1.0, trained_steps=1, policy_version=1, trained_tokens=10.0))
    assert len(load_recording(path).samples) == 1  # readable while the writer is still open
    writer.close()


def test_load_recording_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="it does not exist"):
        load_recording(tmp_path / "missing.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe")
    with pytest.raises(RecordingError, match="is not UTF-8"):
        load_recording(tmp_path / "bin.jsonl")


def test_a_bad_recording_on_the_command_line_is_one_line_without_a_traceback(head: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(head + "\n" + json.dumps(sample_doc(t=-2)) + "\n")
    res = CliRunner().invoke(app, ["simulate", "--replay", str(path)])
    assert res.exit_code == 1
    assert res.output.strip() == f"hexrl simulate: {path}, line 2: invalid sample: t: Input should be greater than or equal to 0"
    single = tmp_path / "one.jsonl"
    single.write_text(head + "\n" + json.dumps(sample_doc()) + "\n")
    res = CliRunner().invoke(app, ["simulate", "--replay", str(single)])
    assert res.exit_code == 1 and "a replay compares windows between at least two" in res.output


# ------------------------------------------------------------------------------------------ hexrl run's layout


def test_the_local_layout_is_a_plan_of_the_cost_models_rates() -> None:
    cost = CostModelSettings(max_sequences_per_replica=16)
    cluster, plan = local_layout(TINY, "L4", workers=2, trainer_procs=1, settings=cost)
    assert [n.name for n in cluster.nodes] == ["local-0"] and cluster.nodes[0].gpus == 3
    assert len(plan.replicas) == 2 and plan.trainer.gpus == 1 and plan.gpus_per_node() == {"local-0": 3}
    one = decode_tokens_per_second(DEFAULT_CATALOG.get("L4"), Workload.from_spec(TINY), 1, 1, cost)
    assert one is not None and one.batch == 16
    assert plan.rollout_tokens_per_second == pytest.approx(2 * one.tokens_per_second)
    assert plan.tokens_per_second == min(plan.rollout_tokens_per_second, plan.training_tokens_per_second)
    setup = setup_from_plan("local", plan, TINY, cluster, PlannerSettings(cost=cost))
    assert simulate(setup, (), 60 / 3600, 0).trained_steps > 0  # the engine runs the layout
    with pytest.raises(ValueError, match="'Z9' is not in the catalog"):
        local_layout(TINY, "Z9", 2, 1)


# ------------------------------------------------------------------------------------------ the recorder


class _FakeCoordinator(BaseHTTPRequestHandler):
    """/v1/progress (bearer token required) and /metrics of a job that trains one step per read."""

    reads = 0
    done_after = 3

    def do_GET(self) -> None:
        if self.path == "/metrics":
            body = (f"# TYPE hexrl_trained_tokens counter\nhexrl_trained_tokens_total {100.0 * type(self).reads}\n"
                    "hexrl_generated_tokens_total 42.0\n").encode()
        elif self.headers.get("Authorization") != "Bearer op-token":
            self.send_response(401)
            self.end_headers()
            return
        else:
            type(self).reads += 1
            n = type(self).reads
            body = json.dumps({"trainedSteps": n, "policyVersion": n, "observedStaleness": 0.5,
                               "done": n >= type(self).done_after,
                               "observedWork": [{"gpu": "L4", "phase": "decode", "tokens": 10 * n, "seconds": n},
                                                {"gpu": "L4", "phase": "bogus", "tokens": 1, "seconds": 1}]}).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_the_recorder_samples_the_coordinator_until_it_is_done(tmp_path: Path) -> None:
    cluster, plan = local_layout(TINY, "L4", 2, 1)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeCoordinator)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        path = tmp_path / "rec.jsonl"
        from hexrl.sim.recording import RecordingHeader

        recorder = ProgressRecorder(path, RecordingHeader(job=TINY, cluster=cluster, plan=plan,
                                                          plan_source="local-layout"), period=0.05)
        recorder.coordinator_up(f"http://127.0.0.1:{server.server_address[1]}", "op-token")
        assert recorder._thread is not None
        recorder._thread.join(timeout=10)  # ends by itself: the third read says done
        recorder.coordinator_closing()
    finally:
        server.shutdown()
    rec = load_recording(path)
    assert [s.trained_steps for s in rec.samples] == [1, 2, 3] and rec.samples[-1].done
    assert [s.trained_tokens for s in rec.samples] == [100.0, 200.0, 300.0]
    assert rec.samples[0].observed_work[0].tokens == 10 and len(rec.samples[0].observed_work) == 1
    assert recorder.samples == 3


def test_counters_are_read_from_prometheus_text() -> None:
    text = "# HELP x\nhexrl_trained_tokens_total 12.5\nhexrl_trained_tokens_created 1.7e9\nother 3\n"
    assert counter_value(text, "hexrl_trained_tokens") == 12.5
    assert counter_value(text, "hexrl_generated_tokens") == 0.0


def test_a_sample_from_progress_keeps_what_is_well_formed() -> None:
    s = sample_from_progress(2.5, {"trainedSteps": 4, "policyVersion": 4, "done": True, "observedStaleness": None,
                                   "observedWork": [{"gpu": "L4", "phase": "train", "tokens": 5, "seconds": 0.5}]},
                             70.0, 20.0)
    assert (s.t, s.trained_steps, s.trained_tokens, s.generated_tokens, s.done) == (2.5, 4, 70.0, 20.0, True)
    assert s.observed_staleness == 0.0 and s.observed_work[0].phase == "train"
