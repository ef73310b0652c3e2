"""spec.reward: the old forms stay valid, the new ones validate, and every mistake is a sentence naming the
field and what to do."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from builders import rljob
from hexrl.api.models import RLJob
from hexrl.api.rewardspec import DEFAULT_REWARD, REWARD_MOUNT_DIR, RewardSpec

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("reward", [
    {}, {"function": "math-answer"}, {"function": "exact-match"}, {"function": "math-verify"},
    {"function": "workers_builders:parity_reward"}, {"function": "format"},
    {"function": "regex-match", "pattern": r"\b{answer}\b"},
    {"function": "code", "code": {"cpuSeconds": 2, "wallSeconds": 4, "scoring": "all"}, "timeoutSeconds": 8},
    {"function": "score", "file": f"{REWARD_MOUNT_DIR}/score.py", "configMap": "my-reward"},
    {"terms": [{"function": "math-verify"}, {"function": "format", "weight": 0.1}], "timeoutSeconds": 5},
])
def test_valid_rewards_are_accepted_in_a_whole_job(reward):
    job = RLJob.model_validate(rljob(reward=reward))
    again = RLJob.model_validate(job.model_dump(by_alias=True, exclude_none=True, mode="json"))
    assert again.spec.reward == job.spec.reward


def test_unset_function_means_math_answer_but_terms_leave_it_unset():
    assert RewardSpec().function == DEFAULT_REWARD == "math-answer"
    weighted = RewardSpec.model_validate({"terms": [{"function": "math-verify"}]})
    assert weighted.function is None
    assert [f.function for f in weighted.functions()] == ["math-verify"]


def test_a_stored_job_with_terms_and_the_api_servers_defaults_stays_valid():
    """The API server fills schema defaults in (timeoutSeconds, each term's weight, code limits); a job read
    back must validate as it did when written."""
    stored = {"terms": [{"function": "code", "weight": 1.0, "code": {"cpuSeconds": 5, "memoryMib": 1024,
                                                                       "wallSeconds": 5.0, "fileSizeMib": 16,
                                                                       "openFiles": 64, "scoring": "fraction"}},
                        {"function": "format", "weight": 0.1}], "timeoutSeconds": 10.0}
    assert RewardSpec.model_validate(stored).wire() == stored


@pytest.mark.parametrize("reward,sentence", [
    ({"function": "mathverify"}, "reward.function 'mathverify' is neither a built-in reward"),
    ({"function": "score", "file": "score.py"}, "reward.file must be the absolute path of a Python file"),
    ({"function": "score", "file": "/etc/hexrl/reward/score.txt"}, "ending in .py"),
    ({"function": "mod:score", "file": "/r/score.py"}, "reward.function must name a function defined in reward.file"),
    ({"function": "regex-match"}, "reward.pattern is required by regex-match"),
    ({"function": "format", "pattern": "(<think>"}, "reward.pattern is not a valid Python regular expression"),
    ({"function": "exact-match", "pattern": "x"}, "reward.pattern is only used by regex-match and format; remove it"),
    ({"function": "math-verify", "code": {}}, "reward.code only configures the code reward"),
    ({"function": "math-verify", "terms": [{"function": "format"}]}, "reward.terms replaces reward.function"),
    ({"terms": [{"function": "math-verify"}, {"function": "format", "pattern": "[a-"}]},
     "reward.terms[1].pattern is not a valid Python regular expression"),
    ({"terms": [{"function": "nope"}]}, "reward.terms[0].function 'nope' is neither"),
    ({"function": "code", "timeoutSeconds": 5}, "wallSeconds (5 s in all) must be below reward.timeoutSeconds"),
    ({"terms": [{"function": "code", "code": {"wallSeconds": 3}}, {"function": "code", "code": {"wallSeconds": 3}}],
      "timeoutSeconds": 5}, "wallSeconds (6 s in all)"),
    ({"timeoutSeconds": 0}, "greater than or equal to 0.1"),
    ({"timeoutSeconds": 3600}, "less than or equal to 600"),
    ({"configMap": "My_Reward"}, "configMap"),
    ({"terms": []}, "at least 1 item"),
])
def test_mistakes_are_refused_with_a_sentence_naming_the_field(reward, sentence):
    with pytest.raises(ValidationError) as err:
        RLJob.model_validate(rljob(reward=reward))
    assert sentence in str(err.value), str(err.value)
