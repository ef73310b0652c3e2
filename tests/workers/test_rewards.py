"""Reward functions on tricky answers, rewards built from the spec (terms, a function from a file), and the
reward runner: a NaN, raising or hanging reward drops its sample with the right reason, and the runner keeps
working afterwards; a reward that cannot load stops the rollout pod at start-up with a sentence."""

from __future__ import annotations

import math
import subprocess
import textwrap
import time

import pytest
from workers_builders import PYTHON, TINY_JOB, subprocess_env, tiny_spec, write_config

from hexrl.api.rewardspec import RewardSpec
from hexrl_workers.protocol import WorkItem
from hexrl_workers.reward.build import build_reward
from hexrl_workers.reward.builtins import exact_match, format_reward, math_answer, math_verify, regex_match
from hexrl_workers.reward.runner import RewardFailed, RewardRunner, RewardTimeout
from hexrl_workers.rollout.engine import GenResult
from hexrl_workers.rollout.worker import RolloutSettings, RolloutWorker
from hexrl_workers.tasks import CharTokenizer

pytestmark = pytest.mark.workers

USER_REWARDS = textwrap.dedent("""
    import math, time

    def length_parity(completion, answer, prompt):
        print("user functions may print")  # must not disturb the runner's pipe
        return float(len(completion) % 2)

    def nan_on_second(completion, answer, prompt):
        return math.nan if completion == "2" else 1.0

    def raise_on_second(completion, answer, prompt):
        if completion == "2":
            raise ZeroDivisionError("division by zero")
        return 1.0

    def hang_on_second(completion, answer, prompt):
        if completion == "2":
            time.sleep(600)
        return 1.0

    def not_a_number(completion, answer, prompt):
        return "high"
""")


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "rewards.py"
    path.write_text(USER_REWARDS)
    return str(path)


# ---------------------------------------------------------------------------------------------- built-ins


@pytest.mark.parametrize("completion,answer", [
    (r"So the answer is $\boxed{\frac{1}{2}}$.", "0.5"),
    (r"\boxed{\frac{1}{2}}", "1/2"),
    (r"\boxed{\dfrac12}", "1/2"),
    ("1/2", r"\frac12"),
    ("She has 1234 in total.\n#### 1,234", "1234"),
    ("#### 1234", "Natalia sold 48/2 = 24 clips in May.\n#### 1,234"),  # a whole GSM8K solution as reference
    ("x = 3", "3"),
    (r"The width is $\boxed{5 \text{ cm}}$", "5"),
    (r"\boxed{10\%}", "10"),
    ("The total is $1,234.", "1234"),
    (r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{1}{\sqrt{2}}"),
    ("<think>first I thought 5</think>The answer is 7.", "7"),
])
def test_math_verify_accepts_equal_answers_however_written(completion, answer):
    assert math_verify(completion, answer) == 1.0


@pytest.mark.parametrize("completion,answer", [
    (r"\boxed{4}", "3"),
    (r"\boxed{\frac{1}{3}}", "0.5"),
    ("#### 1,235", "1234"),
    ("<think>the answer is 7</think>The answer is 5.", "7"),  # only the answer part is graded
    ("I do not know.", "3"),
    ("", "3"),
])
def test_math_verify_rejects_wrong_or_missing_answers(completion, answer):
    assert math_verify(completion, answer) == 0.0


def test_exact_regex_and_format_rewards():
    assert exact_match("  Paris \n", "Paris") == 1.0 and exact_match("paris", "Paris") == 0.0
    answer_word = regex_match(r"(?i)answer:\s*{answer}\b")
    assert answer_word("... Answer: 3.5", "3.5") == 1.0
    assert answer_word("... Answer: 305", "3.5") == 0.0  # the reference is escaped: '.' is not a wildcard
    assert regex_match(r"^\d+$")("42", "") == 1.0 and regex_match(r"^\d+$")("4 2", "") == 0.0
    think = format_reward()
    assert think("<think>reasoning</think>\n42", "") == 1.0
    assert think("42", "") == 0.0 and think("<think>reasoning</think>   ", "") == 0.0
    assert format_reward(r"\\boxed\{")(r"so \boxed{3}", "") == 1.0


# ------------------------------------------------------------------------------------------ from the spec


def test_weighted_terms_add_up():
    reward = build_reward(RewardSpec.model_validate(
        {"terms": [{"function": "math-verify"}, {"function": "format", "weight": 0.1}]}))
    assert reward("<think>2+2</think>\\boxed{4}", "4", "") == pytest.approx(1.1)
    assert reward("\\boxed{4}", "4", "") == pytest.approx(1.0)
    assert reward("<think>2+2</think>\\boxed{5}", "4", "") == pytest.approx(0.1)


def test_a_function_from_a_file(user_file):
    reward = build_reward(RewardSpec(function="length_parity", file=user_file))
    assert reward("abc", "", "") == 1.0 and reward("ab", "", "") == 0.0


@pytest.mark.parametrize("content,function,sentence", [
    (None, "length_parity", "does not exist in the rollout worker; mount it"),
    (USER_REWARDS, "missing", "defines no function 'missing'"),
    ("def broken(:\n    pass\n", "broken", "has a syntax error at line 1"),
    ("raise RuntimeError('no GPU here')\n", "f", "failed while loading (RuntimeError: no GPU here)"),
])
def test_a_reward_file_that_cannot_load_is_a_sentence(tmp_path, content, function, sentence):
    path = tmp_path / "reward.py"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=r"^reward\.file .*reward\.py") as err:
        build_reward(RewardSpec(function=function, file=str(path)))
    assert sentence in str(err.value)


def test_a_missing_module_is_a_sentence():
    with pytest.raises(ValueError, match=r"reward\.function 'no_such_module:f' cannot be loaded"):
        build_reward(RewardSpec(function="no_such_module:f"))


# ------------------------------------------------------------------------------------------------- runner


class _EngineOf:
    """Finished responses whose texts are the given strings (one per sample, in order)."""

    version = 0

    def __init__(self, texts: list[str]) -> None:
        self.tok = CharTokenizer()
        self.texts = texts

    def generate(self, reqs, stop=None):
        out = []
        for k, _ in enumerate(reqs):
            toks = self.tok.encode(self.texts[k])
            out.append(GenResult(tokens=toks, logprobs=[-1.0] * len(toks), versions=[0] * len(toks), finished=True))
        return out


def _item(group_size: int = 3) -> WorkItem:
    return WorkItem.model_validate({"itemId": 7, "groupId": 2, "groupSize": group_size, "policyVersion": 0,
                                    "prompt": {"promptId": 4, "text": "1+2=", "answer": "3"},
                                    "samples": [{"sampleIndex": k} for k in range(group_size)]})


def _process(runner: RewardRunner, texts: list[str]):
    tok = CharTokenizer()
    assert [tok.decode(tok.encode(t)) for t in texts] == texts  # the reward sees exactly these texts
    worker = RolloutWorker(RolloutSettings(worker_id="w"), _EngineOf(texts), tok, runner, None, None)
    return worker, worker.process([_item(len(texts))])


@pytest.mark.parametrize("function,reason", [
    ("nan_on_second", "reward-not-finite"),
    ("raise_on_second", "reward-error"),
    ("not_a_number", "reward-error"),
])
def test_a_bad_user_reward_drops_its_sample_with_the_reason(user_file, function, reason):
    runner = RewardRunner(RewardSpec(function=function, file=user_file))
    try:
        worker, out = _process(runner, ["1", "2", "3"])
    finally:
        runner.close()
    if function == "not_a_number":
        assert [d.reason for d in out.discarded] == [reason] * 3 and not out.trajectories
        assert "returned 'high', not a number" in out.discarded[0].detail
        return
    assert [t.sample_index for t in out.trajectories] == [0, 2]
    assert [(d.sample_index, d.reason) for d in out.discarded] == [(1, reason)]
    if reason == "reward-error":
        assert out.discarded[0].detail == "ZeroDivisionError: division by zero"  # the user's own error
    metrics = worker.metrics.render()[0].decode()
    assert f'hexrl_rollout_samples_discarded_total{{reason="{reason}"}} 1.0' in metrics
    assert "hexrl_rollout_reward_seconds_count 3.0" in metrics  # every sample's scoring is timed


def test_a_hanging_reward_times_out_and_the_runner_keeps_working(user_file):
    timeout = 1.5
    runner = RewardRunner(RewardSpec(function="hang_on_second", file=user_file, timeoutSeconds=timeout))
    try:
        start = time.monotonic()
        _, out = _process(runner, ["1", "2", "3"])
        took = time.monotonic() - start
        assert [(d.sample_index, d.reason) for d in out.discarded] == [(1, "reward-timeout")]
        assert "timeoutSeconds (1.5 s)" in out.discarded[0].detail
        # sample 2 ran in a fresh reward process (its start-up is not charged to the sample)
        assert [(t.sample_index, t.reward) for t in out.trajectories] == [(0, 1.0), (2, 1.0)]
        assert runner.restarts == 1
        assert took < timeout + 30  # the hang (600 s) was cut at the timeout; the rest is process start-up
        assert runner("4", "", "") == 1.0
    finally:
        runner.close()


def test_the_runner_survives_a_reward_process_that_dies(tmp_path):
    path = tmp_path / "r.py"
    path.write_text("import os\ndef die(c, a, p):\n    if c == 'die':\n        os._exit(3)\n    return 0.25\n")
    runner = RewardRunner(RewardSpec(function="die", file=str(path)))
    try:
        with pytest.raises(RewardFailed, match="exit status 3"):
            runner("die", "", "")
        assert runner("live", "", "") == 0.25
    finally:
        runner.close()


def test_a_hanging_reward_is_cut_at_its_timeout(user_file):
    runner = RewardRunner(RewardSpec(function="hang_on_second", file=user_file, timeoutSeconds=0.5))
    try:
        start = time.monotonic()
        with pytest.raises(RewardTimeout):
            runner("2", "", "")
        assert time.monotonic() - start < 0.5 + 2.0  # the 600 s sleep is cut at the timeout (+ kill, busy host)
    finally:
        runner.close()


def test_a_printing_user_reward_does_not_disturb_the_runner(user_file):
    runner = RewardRunner(RewardSpec(function="length_parity", file=user_file))
    try:
        assert [runner(t, "", "") for t in ("a", "ab", "abc")] == [1.0, 0.0, 1.0]
    finally:
        runner.close()


def test_the_runner_scores_built_ins_and_the_code_reward():
    runner = RewardRunner(RewardSpec.model_validate({"terms": [
        {"function": "code", "code": {"wallSeconds": 5}}, {"function": "format", "pattern": "```python", "weight": 0.5},
    ]}))
    try:
        program = "```python\ndef add(a, b):\n    return a + b\n```"
        assert runner(program, "assert add(1, 2) == 3", "") == 1.5
        assert runner(program.replace("a + b", "a * b"), "assert add(1, 2) == 3", "") == 0.5
        assert math.isfinite(runner("no code", "assert add(1, 2) == 3", ""))
    finally:
        runner.close()


def test_a_bad_reward_stops_the_runner_at_start_up(tmp_path):
    with pytest.raises(ValueError, match="does not exist in the rollout worker"):
        RewardRunner(RewardSpec(function="f", file=str(tmp_path / "absent.py")))


def test_rollout_pod_with_a_missing_reward_file_exits_2_with_the_sentence(tmp_path):
    spec = tiny_spec(reward={"function": "score", "file": "/etc/hexrl/reward/score.py"})
    config = write_config(tmp_path, spec, "http://127.0.0.1:9", "http://127.0.0.1:9")
    out = subprocess.run([PYTHON, "-m", "hexrl_workers", "rollout"], env=subprocess_env(config, "rollout"),
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "reward.file /etc/hexrl/reward/score.py does not exist in the rollout worker" in out.stderr
    assert "Traceback" not in out.stderr


def test_hexrl_run_with_a_broken_reward_file_stops_before_starting(tmp_path):
    broken = tmp_path / "score.py"
    broken.write_text("def score(completion, answer, prompt)\n    return 1.0\n")
    job = tmp_path / "job.yaml"
    text = TINY_JOB.read_text().replace("reward: {function: math-answer}",
                                        f"reward: {{function: score, file: {broken}}}")
    assert str(broken) in text
    job.write_text(text)
    out = subprocess.run([PYTHON, "-m", "hexrl.cli", "run", str(job), "--quiet"], capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 1, out.stderr[-2000:]  # bad input (hexrl.commands._inputs.EXIT_BAD_INPUT)
    assert f"reward.file {broken} has a syntax error at line 1" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("completion,score", [("So she has 19 beads. #### 19", 1.0), ("The answer is 19.", 1.0),
                                              ("#### 20", 0.0), ("no number", 0.0)])
def test_math_answer_takes_the_final_answer_of_a_worked_reference_solution(completion, score):
    """A GSM8K answer column is a whole solution ending in `#### N`: the reference is N, not the text."""
    reference = "The packs hold 4 * 4 = <<4*4=16>>16 beads.\nNora has 3 + 16 = <<3+16=19>>19 beads now.\n#### 19"
    assert math_answer(completion, reference) == score
    assert math_answer("\\boxed{-12}", "so $x = \\frac{-108}{9} = \\boxed{-12}$.") == 1.0
