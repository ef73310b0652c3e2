"""GRPO advantages, the decoupled PPO loss, and the torch engine's log-probs and continuation."""

from __future__ import annotations

import pytest
import torch
from workers_builders import tiny_spec

from hexrl_workers.modeling import build_model, build_tokenizer
from hexrl_workers.reward import load_reward, math_answer
from hexrl_workers.rollout.engine import GenRequest, SamplingParams
from hexrl_workers.rollout.torch_engine import TorchEngine
from hexrl_workers.trainer.algorithm import LossSettings, decoupled_ppo_loss, grpo_advantages, token_logprobs

pytestmark = pytest.mark.workers


def test_grpo_advantages_are_group_normalised():
    a = grpo_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]), group_size=4)
    assert a[:4].sum().abs() < 1e-5 and a[0] > 0 > a[1]
    assert torch.allclose(a[4:], torch.zeros(4))  # equal rewards carry no signal


def test_decoupled_loss_weights_by_behaviour_ratio_and_clips_against_proximal():
    logp = torch.log(torch.tensor([[0.5, 0.5]])).requires_grad_(True)
    prox = torch.log(torch.tensor([[0.5, 0.5]]))
    behav = torch.log(torch.tensor([[0.25, 0.5]]))  # token 0 was twice as likely now as when generated
    adv = torch.tensor([1.0])
    mask = torch.ones(1, 2)
    loss, st = decoupled_ppo_loss(logp, prox, behav, adv, mask, LossSettings(behaviour_weight_cap=5.0))
    loss.backward()
    # d loss / d logp_t = -w_t * A / n_tokens with w = prox/behav = (2, 1)
    assert torch.allclose(logp.grad, torch.tensor([[-1.0, -0.5]]))
    assert st["behaviour_weight_mean"] == pytest.approx(1.5)
    # beyond the clip range the gradient vanishes for positive advantages
    far = (prox + 0.5).clone().requires_grad_(True)
    loss2, st2 = decoupled_ppo_loss(far, prox, prox, adv, mask, LossSettings(clip_epsilon=0.2))
    loss2.backward()
    assert torch.allclose(far.grad, torch.zeros_like(far)) and st2["clip_fraction"] == 1.0


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9)])
def test_engine_logprobs_equal_the_trainers_recomputation(temperature, top_p):
    spec = tiny_spec(**{"model.shape.vocab": 64})
    model = build_model(spec)
    tok = build_tokenizer(spec)
    engine = TorchEngine(build_model(spec), SamplingParams(temperature=temperature, top_p=top_p), seed=3)
    prompts = [tok.encode("3+2="), tok.encode("13+1=")]  # different lengths: exercises left padding
    res = engine.generate([GenRequest(p, 12) for p in prompts])
    for p, r in zip(prompts, res, strict=True):
        ids = torch.tensor([p + r.tokens])
        with torch.no_grad():
            lp = token_logprobs(model, ids, torch.ones_like(ids), temperature)[0, len(p) - 1:]
        assert torch.allclose(lp, torch.tensor(r.logprobs), atol=1e-4)


def test_continuation_keeps_the_prefix_and_continues_after_its_last_token():
    spec = tiny_spec(**{"model.shape.vocab": 512})
    tok = build_tokenizer(spec)
    a = TorchEngine(build_model(spec), SamplingParams(), seed=1)
    b = TorchEngine(build_model(spec), SamplingParams(), seed=2)
    b.version = 3
    p = tok.encode("1+1=")
    first = a.generate([GenRequest(p, 8)])[0]
    cont = b.generate([GenRequest(p, 20, first.tokens, first.logprobs, first.versions)])[0]
    assert cont.tokens[:8] == first.tokens and cont.versions[:8] == [0] * 8
    assert len(cont.tokens) > 8 or cont.finished is False
    assert set(cont.versions[8:]) <= {3}
    # the continuation's own log-probs are exact too, conditioned on the whole prefix
    ids = torch.tensor([p + cont.tokens])
    with torch.no_grad():
        lp = token_logprobs(b.model, ids, torch.ones_like(ids), 1.0)[0, len(p) - 1:]
    assert torch.allclose(lp[8:], torch.tensor(cont.logprobs[8:]), atol=1e-4)


def test_stop_event_interrupts_generation():
    import threading

    spec = tiny_spec(**{"model.shape.vocab": 512})
    engine = TorchEngine(build_model(spec), SamplingParams(), seed=0)
    stop = threading.Event()
    stop.set()
    (r,) = engine.generate([GenRequest([1, 4], 50)], stop)
    assert r.interrupted and r.tokens == []


def test_rewards():
    assert math_answer("5", "5") == 1.0 and math_answer("55", "5") == 0.0
    assert math_answer("so #### 1,234", "1234") == 1.0 and math_answer(r"\boxed{1/2}", "0.5") == 1.0
    assert load_reward("exact-match")(" a ", "a", "") == 1.0
    assert load_reward("hexrl_workers.reward:math_answer") is math_answer
    with pytest.raises(ValueError, match=r"unknown reward\.function"):
        load_reward("nope")
    with pytest.raises(ValueError, match="cannot be loaded"):
        load_reward("no_such_module:f")
