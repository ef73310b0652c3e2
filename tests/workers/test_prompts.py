"""Prompts in the rollout worker: the token ids it generates from are the tokenizer's own chat template applied to
the system prompt and the templated user message (or the plain text without a template), and a prompt over
generation.maxPromptTokens ends as a discarded group counted as prompt-too-long while the job goes on."""

from __future__ import annotations

import json

import pytest
from workers_builders import CREDENTIALS, TOKENS, tiny_spec

from hexrl.api.dataspec import PromptSpec
from hexrl_workers.coordinator.server import ThreadedCoordinator
from hexrl_workers.coordinator_client import CoordinatorClient
from hexrl_workers.protocol import WorkItem
from hexrl_workers.rollout.engine import GenResult
from hexrl_workers.rollout.prompts import PromptEncoder
from hexrl_workers.rollout.worker import RolloutSettings, RolloutWorker
from hexrl_workers.runtime import build_coordinator
from hexrl_workers.tasks import CharTokenizer, HFTokenizer
from hexrl_workers.tinymodel import write_tiny_model

pytestmark = pytest.mark.workers

OVERRIDE = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}[assistant] {% endif %}")
"""A chat template unlike ChatML, so the test sees the override (not the tokenizer's own) in use."""


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


class _RecordingEngine:
    """Answers every request with the same finished response and keeps the requests it was given."""

    version = 0

    def __init__(self) -> None:
        self.requests = []

    def generate(self, reqs, stop=None):
        self.requests.extend(reqs)
        return [GenResult(tokens=[6, 2], logprobs=[-1.0, -0.5], versions=[0, 0], finished=True) for _ in reqs]


def _item(text: str = "Nora has 3 beads. How many?", metadata: dict | None = None, item_id: int = 1) -> WorkItem:
    return WorkItem.model_validate({
        "itemId": item_id, "groupId": item_id, "groupSize": 2, "policyVersion": 0,
        "prompt": {"promptId": item_id, "text": text, "answer": "3", "metadata": metadata},
        "samples": [{"sampleIndex": 0}, {"sampleIndex": 1}],
    })


def _sent_prompt(tok, spec: PromptSpec, item: WorkItem) -> list[int]:
    engine = _RecordingEngine()
    worker = RolloutWorker(RolloutSettings(worker_id="w"), engine, tok, lambda c, a, p: 1.0, None, None,
                           prompts=PromptEncoder(spec, tok))
    out = worker.process([item])
    assert len(out.trajectories) == 2 and not out.discarded
    assert engine.requests[0].prompt_tokens == engine.requests[1].prompt_tokens == out.trajectories[0].prompt_tokens
    return engine.requests[0].prompt_tokens


@pytest.mark.parametrize("system", [None, "You are a careful math tutor."])
@pytest.mark.parametrize("override", [None, OVERRIDE])
def test_the_worker_sends_the_tokenizers_own_chat_template_ids(tiny_dir, system, override):
    from transformers import AutoTokenizer

    spec = PromptSpec(system_prompt=system, template="[{level}] {prompt}\nPut the final answer after ####.",
                      chat_template_override=override)
    sent = _sent_prompt(HFTokenizer(str(tiny_dir)), spec, _item(metadata={"level": "Level 2"}))
    reference = AutoTokenizer.from_pretrained(tiny_dir, local_files_only=True)
    user = "[Level 2] Nora has 3 beads. How many?\nPut the final answer after ####."
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    expected = reference.apply_chat_template(messages, chat_template=override, add_generation_prompt=True,
                                             tokenize=True, return_dict=False)
    assert sent == list(expected)
    text = reference.decode(sent)
    assert (system in text) if system else ("system" not in text)
    assert text.endswith("[assistant] " if override else "<|im_start|>assistant\n")


def test_without_a_chat_template_the_worker_sends_the_plain_text(tiny_dir):
    hf = HFTokenizer(str(tiny_dir))
    spec = PromptSpec(chat_template="none", system_prompt="Be brief.")
    assert _sent_prompt(hf, spec, _item()) == hf.encode("Be brief.\n\nNora has 3 beads. How many?")
    char = CharTokenizer()  # the built-in tokenizer has no chat template: auto means plain text
    assert _sent_prompt(char, PromptSpec(template="{prompt}"), _item("1+2=")) == char.encode("1+2=")


def test_a_template_field_the_record_lacks_discards_the_group_instead_of_crashing():
    engine = _RecordingEngine()
    worker = RolloutWorker(RolloutSettings(worker_id="w"), engine, CharTokenizer(), lambda c, a, p: 1.0, None, None,
                           prompts=PromptEncoder(PromptSpec(template="{prompt}{topic}"), CharTokenizer()))
    out = worker.process([_item("1+2=")])
    assert not out.trajectories and not engine.requests
    assert [(d.reason, d.sample_index) for d in out.discarded] == [("prompt-template-error", 0)]
    assert "topic" in out.discarded[0].detail


def test_an_over_long_prompt_is_a_discarded_group_counted_and_the_job_goes_on(tmp_path):
    data = tmp_path / "prompts.jsonl"
    records = [{"prompt": "1+2=", "answer": "3"}, {"prompt": "1111111111+2=", "answer": "1111111113"},
               {"prompt": "2+2=", "answer": "4"}, {"prompt": "3+1=", "answer": "4"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    spec = tiny_spec(**{"dataset": {"path": str(data), "shuffle": False, "epochs": 1},
                        "generation.maxPromptTokens": 6, "algorithm.promptsPerStep": 3,
                        "algorithm.groupSize": 2})
    coord = ThreadedCoordinator(build_coordinator(spec, CREDENTIALS))
    try:
        client = CoordinatorClient(coord.url, TOKENS["rollout"], retry_seconds=5)
        engine = _RecordingEngine()
        worker = RolloutWorker(RolloutSettings(worker_id="w", max_prompt_tokens=6), engine, CharTokenizer(),
                               lambda c, a, p: 1.0, client, None, prompts=PromptEncoder(spec.prompt, CharTokenizer()))
        for _ in range(3):
            resp = client.work("w", max_items=4, wait_seconds=0)
            if resp.items:
                client.push(worker.process(resp.items))
        operator = CoordinatorClient(coord.url, TOKENS["operator"], retry_seconds=5)
        progress = operator.progress()
        assert progress.discarded_groups == {"prompt-too-long": 1}
        assert progress.dataset_exhausted
        assert all(len(r.prompt_tokens) <= 6 for r in engine.requests)  # never truncated, never generated
        trainer = CoordinatorClient(coord.url, TOKENS["trainer"], retry_seconds=5)
        batch = trainer.batch(0, wait_seconds=0)
        assert batch is not None
        assert sorted({t.prompt_id for t in batch.trajectories}) == [0, 2, 3]
        assert not trainer.version()["done"]
        trainer.new_version(1, batch.batch_id)
        assert trainer.version()["done"]  # every record trained or discarded: the one epoch is over
    finally:
        coord.close()


def test_a_prompt_limit_above_the_default_bound_widens_the_coordinators_body_limit():
    """A worker may send a prompt of maxPromptTokens tokens, so the coordinator must accept a push holding it."""
    from hexrl_workers.limits import max_prompt_tokens, prompt_token_limit, spec_body_limits

    plain = tiny_spec()
    assert prompt_token_limit(plain) == max_prompt_tokens(plain.generation.prompt_tokens)
    wide = tiny_spec(**{"generation.maxPromptTokens": 4 * max_prompt_tokens(plain.generation.prompt_tokens)})
    assert prompt_token_limit(wide) == wide.generation.max_prompt_tokens
    assert spec_body_limits(wide).trajectories > spec_body_limits(plain).trajectories
    assert build_coordinator(wide, CREDENTIALS).limits == spec_body_limits(wide)
    narrow = tiny_spec(**{"generation.maxPromptTokens": 16})  # below the bound: the bound stays
    assert spec_body_limits(narrow) == spec_body_limits(plain)
