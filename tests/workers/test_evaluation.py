"""Held-out evaluation (spec.evaluation): the pass@k estimator, the numbers of an evaluation through the
coordinator and a rollout worker (a scripted engine with known answers, and the real torch engine against
a direct computation), the core's guarantees (never trained on, outside the staleness gate, leases,
snapshots, the evaluated version) and a short `hexrl run` reporting its evaluations."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workers_builders import CREDENTIALS, PYTHON, REPO, TINY_JOB, TOKENS, tiny_spec

from hexrl_workers.coordinator.core import CoordinatorCore, CoordinatorSettings, RejectedError
from hexrl_workers.coordinator.evaluation import EvalSettings, Evaluator, eval_settings, pass_at_k, summarize
from hexrl_workers.coordinator.server import ThreadedCoordinator, build_coordinator
from hexrl_workers.coordinator_client import CoordinatorClient
from hexrl_workers.modeling import build_model
from hexrl_workers.protocol import EvalResult, Prompt, Trajectory, TrajectoryBatchIn, WorkItem
from hexrl_workers.reward import load_reward
from hexrl_workers.rollout.engine import GenRequest, GenResult, SamplingParams
from hexrl_workers.rollout.torch_engine import TorchEngine
from hexrl_workers.rollout.worker import RolloutSettings, RolloutWorker
from hexrl_workers.tasks import ArithDigits, CharTokenizer

pytestmark = pytest.mark.workers
TOK = CharTokenizer()


# ------------------------------------------------------------------------------------------ pass@k


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (4, 1, 1, 0.25), (4, 1, 4, 1.0), (4, 0, 1, 0.0), (4, 0, 4, 0.0), (4, 2, 2, 1 - 1 / 6), (5, 2, 3, 0.9),
    (4, 4, 1, 1.0),
])
def test_pass_at_k_is_the_unbiased_estimator(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_refuses_impossible_counts():
    with pytest.raises(ValueError, match="pass@k"):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="pass@k"):
        pass_at_k(4, 1, 5)


# ------------------------------------------------------------------- a scripted engine, known answers


class ScriptedEngine:
    """Answers "a+b=" prompts: greedy requests correctly when a is even; of the sampled requests for one prompt
    in one call, the first a are correct and the rest wrong (so c = a of k = 4). One item per call."""

    def __init__(self) -> None:
        self.version = 0
        self.temperatures: list[float | None] = []

    def load_weights(self, tensors, version):  # pragma: no cover - no weights in this test
        self.version = version

    def generate(self, requests: list[GenRequest], stop=None) -> list[GenResult]:
        out, seen = [], 0
        for r in requests:
            self.temperatures.append(r.temperature)
            a, b = int(TOK.decode(r.prompt_tokens)[0]), int(TOK.decode(r.prompt_tokens)[2])
            if r.temperature == 0:
                right = a % 2 == 0
            else:
                right, seen = seen < a, seen + 1
            digit = (a + b) if right else (a + b + 1)
            toks = [*TOK.encode(str(digit % 10))[1:], TOK.eos_id]
            out.append(GenResult(toks, [-0.1] * len(toks), [self.version] * len(toks), True))
        return out


def _eval_spec(**evaluation):
    return tiny_spec(**{"algorithm.promptsPerStep": 1, "evaluation": {"everySteps": 5, **evaluation}})


def _drive(coord: ThreadedCoordinator, worker: RolloutWorker, client: CoordinatorClient, rounds: int = 500) -> None:
    """Pull, generate and push evaluation work until the coordinator has no evaluation running."""
    for _ in range(rounds):
        if not coord.server.core.evaluating:
            return
        resp = client.work("w", worker.s.max_items, 0)
        items = [i for i in resp.items if i.evaluation is not None]
        release = [i.item_id for i in resp.items if i.evaluation is None]
        out = worker.process(items) if items else TrajectoryBatchIn(worker_id="w")
        out.released_item_ids += release
        client.push(out)
    raise AssertionError("the evaluation did not finish")


def test_scripted_engine_gives_exact_greedy_accuracy_and_pass_at_k():
    spec = _eval_spec(maxPrompts=12, k=4)
    coord = ThreadedCoordinator(build_coordinator(spec, CREDENTIALS))
    engine = ScriptedEngine()
    client = CoordinatorClient(coord.url, TOKENS["rollout"], retry_seconds=5)
    worker = RolloutWorker(RolloutSettings("w", max_items=1, max_new_tokens=2), engine, TOK,
                           load_reward("math-answer"), client, None)
    try:
        _drive(coord, worker, client)
        progress = CoordinatorClient(coord.url, TOKENS["operator"]).progress()
    finally:
        coord.close()
    prompts = [(int(p.text[0]), int(p.text[2])) for p in coord.server.core.evaluator.s.prompts]
    assert len(prompts) == 12
    ev = progress.evaluation
    assert ev is not None and ev.version == 0 and ev.prompts == 12 and ev.k == 4
    assert ev.greedy_accuracy == pytest.approx(sum(a % 2 == 0 for a, _ in prompts) / 12)
    assert ev.greedy_mean_reward == pytest.approx(ev.greedy_accuracy)
    assert ev.pass_at_k == pytest.approx(sum(a > 0 for a, _ in prompts) / 12)
    assert ev.pass_at_1 == pytest.approx(sum(a / 4 for a, _ in prompts) / 12)
    assert sorted(set(engine.temperatures)) == [0.0, 1.0]  # greedy, and spec.generation.temperature
    assert progress.evaluations == [ev]


def test_held_out_prompts_are_another_stream_read_in_order():
    spec = _eval_spec(maxPrompts=10)
    held_out = eval_settings(spec)
    assert held_out is not None
    assert [p.prompt_id for p in held_out.prompts] == list(range(10))
    training = ArithDigits(spec.algorithm.seed)
    assert [p.text for p in held_out.prompts] != [training.get(i).text for i in range(10)]


def test_no_evaluation_without_every_steps():
    assert eval_settings(tiny_spec()) is None
    assert eval_settings(tiny_spec(**{"evaluation": {"everySteps": 0}})) is None


# ------------------------------------------------------------- the real torch engine, a fixed model


def test_torch_engine_evaluation_equals_a_direct_greedy_computation():
    """Through coordinator + rollout worker, greedy numbers equal generating greedily here and scoring."""
    spec = _eval_spec(maxPrompts=16, k=2)
    reward = load_reward("workers_builders:parity_reward")  # varies on a random model: a non-trivial check
    params = SamplingParams(temperature=1.0, eos_id=TOK.eos_id, pad_id=TOK.pad_id)
    coord = ThreadedCoordinator(build_coordinator(spec, CREDENTIALS))
    client = CoordinatorClient(coord.url, TOKENS["rollout"], retry_seconds=5)
    worker = RolloutWorker(RolloutSettings("w", max_items=3, max_new_tokens=2), TorchEngine(build_model(spec), params),
                           TOK, reward, client, None)
    try:
        _drive(coord, worker, client)
        ev = CoordinatorClient(coord.url, TOKENS["operator"]).progress().evaluation
    finally:
        coord.close()
    direct = TorchEngine(build_model(spec), SamplingParams(temperature=0.0, eos_id=TOK.eos_id, pad_id=TOK.pad_id))
    rewards = []
    for p in coord.server.core.evaluator.s.prompts:
        res = direct.generate([GenRequest(TOK.encode(p.text), 2)])[0]
        rewards.append(reward(TOK.decode([t for t in res.tokens if t != TOK.eos_id]), p.answer, p.text))
    assert ev is not None and ev.prompts == 16
    assert ev.greedy_mean_reward == pytest.approx(sum(rewards) / 16)
    assert ev.greedy_accuracy == pytest.approx(sum(r >= 0.5 for r in rewards) / 16)
    assert 0 < ev.greedy_mean_reward < 1, rewards  # the check compares something
    assert ev.pass_at_k is not None and 0 <= ev.pass_at_1 <= ev.pass_at_k <= 1


def test_torch_engine_honours_per_request_temperature_in_a_mixed_batch():
    spec = tiny_spec()
    engine = TorchEngine(build_model(spec), SamplingParams(temperature=5.0, eos_id=TOK.eos_id, pad_id=TOK.pad_id))
    greedy_alone = TorchEngine(build_model(spec), SamplingParams(temperature=0.0, eos_id=TOK.eos_id, pad_id=TOK.pad_id))
    prompt = TOK.encode("1+2=")
    expected = greedy_alone.generate([GenRequest(prompt, 6)])[0].tokens
    for _ in range(5):  # the sampled rows at T = 5 are almost surely different; the greedy row never is
        res = engine.generate([GenRequest(prompt, 6), GenRequest(prompt, 6, temperature=0.0),
                               GenRequest(prompt, 6)])
        assert res[1].tokens == expected


# ------------------------------------------------------------------------------------- the core


def _core(every=5, prompts=3, k=2, lease=600.0, eta=1, pps=1, g=2, total=None) -> CoordinatorCore:
    evaluator = Evaluator(EvalSettings(every_steps=every, k=k, lease_seconds=lease, prompts=[
        Prompt(prompt_id=i, text=f"{i}+0=", answer=str(i)) for i in range(prompts)]))
    return CoordinatorCore(CoordinatorSettings(prompts_per_step=pps, group_size=g, max_policy_lag=eta,
                                               total_steps=total), ArithDigits(0), evaluator)


def _answer_eval(core: CoordinatorCore, item: WorkItem, reward: float = 1.0, version: int | None = None):
    out = None
    for s in item.samples:
        out = core.ingest_evaluation(EvalResult(
            item_id=item.item_id, epoch=item.epoch, evaluation=item.evaluation, prompt_id=item.prompt.prompt_id,
            sample_index=s.sample_index, reward=reward,
            generated_version=item.evaluation.version if version is None else version))
    return out


def _answer_train(core: CoordinatorCore, item: WorkItem) -> None:
    for s in item.samples:
        core.ingest(Trajectory(item_id=item.item_id, epoch=item.epoch, group_id=item.group_id,
                               group_size=item.group_size, sample_index=s.sample_index,
                               prompt_id=item.prompt.prompt_id, prompt_tokens=[1, 3], tokens=[4, 2],
                               logprobs=[-1.0, -1.0], versions=[core.version] * 2, reward=0.5))


def test_evaluation_items_go_first_and_leave_the_gate_and_n_r_alone():
    core = _core()
    plain = CoordinatorCore(CoordinatorSettings(prompts_per_step=1, group_size=2, max_policy_lag=1), ArithDigits(0))
    items, _ = core.dispatch("w", 100, now=0.0)
    evals = [i for i in items if i.evaluation is not None]
    train = [i for i in items if i.evaluation is None]
    assert items[:len(evals)] == evals and len(evals) == 3 * 2  # a greedy and a sampled item per prompt
    ref, reason = plain.dispatch("w", 100, now=0.0)
    assert [i.prompt for i in train] == [i.prompt for i in ref]  # the same training work, same gate
    assert core.n_requested == plain.n_requested == len(train) * 2
    assert reason == "staleness-gate" and not core.gate_open()
    for it in evals:
        _answer_eval(core, it)
    assert core.n_requested == plain.n_requested and core.buffer_depth == 0


def test_evaluation_results_are_never_trained_on_and_hold_the_batch_until_in():
    core = _core(prompts=2)
    items, _ = core.dispatch("w", 100, now=0.0)
    evals = [i for i in items if i.evaluation is not None]
    for it in (i for i in items if i.evaluation is None):
        _answer_train(core, it)
    assert core.evaluating and core.take_batch(0) is None  # a complete group waits for the evaluation
    summary = None
    for it in evals:
        summary = _answer_eval(core, it, reward=1.0) or summary
    assert summary is not None and summary.version == 0 and summary.greedy_accuracy == 1.0
    batch = core.take_batch(0)
    assert batch is not None and {t.prompt_id for t in batch.trajectories} <= {i.prompt.prompt_id for i in items
                                                                                if i.evaluation is None}
    assert len(batch.trajectories) == 2


def test_a_vanished_workers_evaluation_items_are_dispatched_again_after_the_lease():
    core = _core(prompts=1, k=2, lease=10.0)
    first = [i for i in core.dispatch("gone", 100, now=0.0)[0] if i.evaluation is not None]
    assert len(first) == 2
    assert [i for i in core.dispatch("w", 100, now=5.0)[0] if i.evaluation is not None] == []
    again = [i for i in core.dispatch("w", 100, now=11.0)[0] if i.evaluation is not None]
    assert sorted((i.evaluation.greedy, [s.sample_index for s in i.samples]) for i in again) == \
        sorted((i.evaluation.greedy, [s.sample_index for s in i.samples]) for i in first)
    with pytest.raises(RejectedError, match="not outstanding"):
        _answer_eval(core, first[0])
    for it in again:
        _answer_eval(core, it)
    assert not core.evaluating and core.evaluator.latest.version == 0


def test_a_result_of_another_version_is_refused_and_its_sample_queued_again():
    core = _core(prompts=1, k=0)
    (item,) = [i for i in core.dispatch("w", 100, now=0.0)[0] if i.evaluation is not None]
    with pytest.raises(RejectedError, match="version 3"):
        _answer_eval(core, item, version=3)
    (again,) = [i for i in core.dispatch("w", 100, now=1.0)[0] if i.evaluation is not None]
    assert again.prompt == item.prompt and again.evaluation.greedy
    assert _answer_eval(core, again).greedy_accuracy == 1.0


def test_evaluations_follow_every_steps_and_survive_a_snapshot():
    core = _core(every=1, prompts=1, k=1, total=2)
    for version in (0, 1):
        items, _ = core.dispatch("w", 100, now=float(version))
        for it in items:
            (_answer_eval if it.evaluation is not None else _answer_train)(core, it)
        batch = core.take_batch(version)
        assert batch is not None
        core.acknowledge(version + 1, batch.batch_id)
    assert core.evaluating and not core.done  # version 2 (the last) is evaluated before the job is done
    snap = json.loads(json.dumps(core.snapshot()))
    assert [h["version"] for h in snap["evaluations"]] == [0, 1]
    restored = _core(every=1, prompts=1, k=1, total=2)
    restored.restore(snap)
    assert [h.version for h in restored.evaluator.history] == [0, 1]
    assert restored.evaluating  # the unfinished evaluation of version 2 starts again
    for it in restored.dispatch("w", 100, now=0.0)[0]:
        if it.evaluation is not None:
            _answer_eval(restored, it)
    assert restored.done and [h.version for h in restored.evaluator.history] == [0, 1, 2]


def test_an_old_snapshot_without_evaluations_restores():
    core = _core()
    snap = core.snapshot()
    del snap["evaluations"]
    core.restore(snap)
    assert core.evaluating and list(core.evaluator.history) == []


def test_summarize_without_greedy_or_samples_leaves_those_numbers_unset():
    only_greedy = summarize(3, {0: 1.0, 1: 0.0}, {}, 2, 0)
    assert (only_greedy.greedy_accuracy, only_greedy.pass_at_k) == (0.5, None)
    only_sampled = summarize(3, {}, {0: [1.0, 0.0], 1: [0.0, 0.0]}, 2, 2)
    assert (only_sampled.greedy_accuracy, only_sampled.pass_at_k, only_sampled.pass_at_1) == (None, 0.5, 0.25)


# ----------------------------------------------------------------------------------- rollout worker


class _StoppingEngine(ScriptedEngine):
    def generate(self, requests, stop=None):
        return [GenResult([], [], [], False, interrupted=True) for _ in requests]


def test_an_interrupted_evaluation_item_is_released_not_handed_in_as_partials():
    core = _core(prompts=1, k=2)
    items = [i for i in core.dispatch("w", 100, now=0.0)[0] if i.evaluation is not None]
    worker = RolloutWorker(RolloutSettings("w"), _StoppingEngine(), TOK, load_reward("math-answer"), None, None)
    out = worker.process(items)
    assert out.partials == [] and out.evaluations == []
    assert sorted(out.released_item_ids) == sorted(i.item_id for i in items)


def test_a_failing_reward_scores_an_evaluation_sample_zero():
    core = _core(prompts=1, k=0)
    items = [i for i in core.dispatch("w", 100, now=0.0)[0] if i.evaluation is not None]

    def broken(completion, answer, prompt):
        raise ZeroDivisionError("boom")

    out = RolloutWorker(RolloutSettings("w"), ScriptedEngine(), TOK, broken, None, None).process(items)
    assert [r.reward for r in out.evaluations] == [0.0] and out.discarded == []


# ------------------------------------------------------------------------------------------ hexrl run


def test_hexrl_run_reports_an_evaluation_every_five_steps(tmp_path):
    raw = yaml.safe_load(TINY_JOB.read_text())
    raw["spec"]["evaluation"] = {"everySteps": 5, "maxPrompts": 16, "k": 2}
    raw["spec"]["algorithm"]["promptsPerStep"] = 8
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(raw))
    summary = tmp_path / "summary.json"
    proc = subprocess.run(
        [PYTHON, "-m", "hexrl.cli", "run", str(job), "--steps", "10", "--quiet", "--summary", str(summary),
         "--checkpoint-dir", str(tmp_path / "ck")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**_env(), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(summary.read_text())
    assert [e["version"] for e in result["evaluations"]] == [0, 5, 10], result
    assert result["lastEvaluation"] == result["evaluations"][-1]
    for e in result["evaluations"]:
        assert e["prompts"] == 16 and e["k"] == 2 and 0 <= e["greedyAccuracy"] <= 1 and 0 <= e["passAtK"] <= 1
    print(f"hexrl run with evaluation: {result['wallSeconds']} s, evaluations {result['evaluations']}")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("HEXRL_", "RAY_ADDRESS"))}



def test_the_clients_one_push_per_group_keeps_evaluations_and_discarded_samples():
    from hexrl_workers.coordinator_client import split_by_group
    from hexrl_workers.protocol import DiscardedSample, EvalTag

    tag = EvalTag(version=0, greedy=True, temperature=0.0)
    body = TrajectoryBatchIn(worker_id="w", released_item_ids=[7], evaluations=[
        EvalResult(item_id=7, evaluation=tag, prompt_id=0, sample_index=0, reward=1.0, generated_version=0)],
        discarded=[DiscardedSample(item_id=8, group_id=1, sample_index=0, prompt_id=3, reason="reward-error")])
    parts = split_by_group(body)
    assert [e for p in parts for e in p.evaluations] == body.evaluations
    assert [d for p in parts for d in p.discarded] == body.discarded
    assert [i for p in parts for i in p.released_item_ids] == [7]


# ------------------------------------------------------------------- property: evaluation is invisible


TWIN_ACTIONS = st.lists(st.tuples(
    st.sampled_from(["dispatch"] * 3 + ["finish"] * 4 + ["eval"] * 4 + ["release", "expire"] + ["train"] * 3),
    st.integers(0, 1_000_000)), min_size=30, max_size=250)


TWIN_STATS = {"batches": 0, "evaluations": 0, "after_training": 0}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(eta=st.sampled_from([0, 1, 3]), group_size=st.integers(1, 3), every=st.integers(1, 3), actions=TWIN_ACTIONS)
def test_training_is_the_same_with_and_without_evaluation(eta, group_size, every, actions):
    """A core with evaluation and a twin without, given the same training work: after every action they agree
    on N_r, the gate, the cursor, the buffer and every batch (evaluation only delays batches, never changes
    them); no evaluation result is ever in a batch, and lost evaluation items come back after their lease."""
    def new(evaluator):
        return CoordinatorCore(CoordinatorSettings(1, group_size, eta, lease_seconds=10.0), ArithDigits(0), evaluator)

    core = new(Evaluator(EvalSettings(every_steps=every, k=2, lease_seconds=10.0, prompts=[
        Prompt(prompt_id=0, text="1+0=", answer="1")])))
    twin = new(None)
    now, inflight, evals = 0.0, [], []  # inflight: (core item, twin item, sample index); evals: (item, sample)
    for kind, r in actions:
        if kind == "dispatch":
            items, _ = core.dispatch("w", 1 + r % 3, now)
            evals += [(i, s.sample_index) for i in items if i.evaluation is not None for s in i.samples]
            train = [i for i in items if i.evaluation is None]
            mirror, _ = twin.dispatch("w", len(train), now) if train else twin.dispatch("w", 0, now)
            assert [(i.group_id, i.prompt, [s.sample_index for s in i.samples]) for i in train] == \
                [(i.group_id, i.prompt, [s.sample_index for s in i.samples]) for i in mirror]
            inflight += [(a, b, s.sample_index) for a, b in zip(train, mirror, strict=True) for s in a.samples]
        elif kind == "finish" and inflight:
            a, b, idx = inflight.pop(r % len(inflight))
            for c, it in ((core, a), (twin, b)):
                c.ingest(_one_traj(c, it, idx))
        elif kind == "eval" and evals:
            it, idx = evals.pop(r % len(evals))
            with contextlib.suppress(RejectedError):  # its lease may have run out meanwhile
                core.ingest_evaluation(_eval_result(it, idx, float(r % 2)))
        elif kind == "release" and inflight:
            a, b, _ = inflight[r % len(inflight)]
            inflight = [x for x in inflight if x[0].item_id != a.item_id]
            core.release(a.item_id)
            twin.release(b.item_id)
        elif kind == "expire":
            now += 11.0  # every lease runs out: training samples are queued again in both, evaluation ones in one
            inflight, evals = [], []
        elif kind == "train":
            held = core.evaluating  # the trainer waits: no batch, and nothing in the buffer changes
            batch = core.take_batch(core.version)
            mirror = None if held else twin.take_batch(twin.version)
            assert not (held and batch is not None)
            assert (batch is None) == (mirror is None)
            if batch is not None and mirror is not None:
                assert [t.prompt_id for t in batch.trajectories] == [t.prompt_id for t in mirror.trajectories]
                assert all(t.item_id not in {e.item_id for e, _ in evals} for t in batch.trajectories)
                core.acknowledge(core.version + 1, batch.batch_id)
                twin.acknowledge(twin.version + 1, mirror.batch_id)
        assert (core.n_requested, core.gate_open(), core.cursor, core.buffer_depth, core.version) == \
            (twin.n_requested, twin.gate_open(), twin.cursor, twin.buffer_depth, twin.version)
    summaries = list(core.evaluator.history)
    TWIN_STATS["batches"] += core.trained_steps
    TWIN_STATS["evaluations"] += len(summaries)
    TWIN_STATS["after_training"] += sum(s.version > 0 for s in summaries)
    assert [s.version for s in summaries] == sorted({s.version for s in summaries})
    assert all(core.evaluator.due(s.version) for s in summaries)


def test_the_twin_property_run_trained_and_evaluated():
    """The property above ran (in this order) and exercised both training and evaluations after training."""
    assert TWIN_STATS["batches"] > 40 and TWIN_STATS["evaluations"] > 40 and TWIN_STATS["after_training"] > 3, \
        TWIN_STATS


def _one_traj(core: CoordinatorCore, item: WorkItem, idx: int) -> Trajectory:
    return Trajectory(item_id=item.item_id, epoch=item.epoch, group_id=item.group_id, group_size=item.group_size,
                      sample_index=idx, prompt_id=item.prompt.prompt_id, prompt_tokens=[1, 3], tokens=[4, 2],
                      logprobs=[-1.0, -1.0], versions=[core.version] * 2, reward=0.5)


def _eval_result(item: WorkItem, idx: int, reward: float) -> EvalResult:
    return EvalResult(item_id=item.item_id, epoch=item.epoch, evaluation=item.evaluation,
                      prompt_id=item.prompt.prompt_id, sample_index=idx, reward=reward,
                      generated_version=item.evaluation.version)


def test_one_prompts_largest_evaluation_push_fits_the_smallest_body_limit():
    from hexrl_workers.coordinator_client import split_by_group
    from hexrl_workers.limits import body_limits
    from hexrl_workers.protocol import EvalTag

    tag = EvalTag(version=10**9, greedy=False, temperature=1.25)
    body = TrajectoryBatchIn(worker_id="rollout-" + "x" * 50, evaluations=[
        EvalResult(item_id=10**12 + item, epoch=10**6, evaluation=tag, prompt_id=10**9, sample_index=i,
                   reward=-0.123456789012345, generated_version=10**9, response_tokens=10**6, worker_id="w" * 60)
        for item in range(2) for i in range(256)])
    parts = split_by_group(body)
    assert [len(p.evaluations) for p in parts] == [256, 256, 0]
    smallest = body_limits(group_size=2, max_new_tokens=1, mean_prompt_tokens=1).trajectories
    assert max(len(p.model_dump_json(by_alias=True)) for p in parts) < smallest


@pytest.mark.parametrize(("requested", "job", "expected"), [
    (None, 1.0, 1.0), (None, 0.7, 1.0), (None, 0.0, 0.0),  # the job's own requests: T is in the logits already
    (0.0, 0.7, 0.0), (0.0, 0.0, 0.0),  # greedy
    (1.4, 0.7, 2.0), (0.5, 1.0, 0.5), (0.6, 0.0, 0.6),  # T' on logits / T is T'/T (untempered logits when T = 0)
])
def test_vllm_request_temperature_composes_with_the_tempered_logits(requested, job, expected):
    from hexrl_workers.rollout.vllm_engine import vllm_temperature

    assert vllm_temperature(requested, job) == pytest.approx(expected)
