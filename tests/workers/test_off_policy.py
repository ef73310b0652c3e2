"""The off-policy correction of the decoupled objective, on deliberately stale data.

Two checks with the trainer's own loss (`decoupled_ppo_loss`) on a categorical policy over K arms — small
enough to know the exact on-policy gradient:

1. Unbiasedness. With θ at the proximal policy and samples from a *different* behaviour policy b, the
   gradient of the loss is −(1/N) Σ w_i A_i ∇log π(a_i) with w = π_prox/b, whose expectation is the exact
   on-policy gradient −Σ_a π(a) A(a) ∇log π(a). A removed weight (w ≡ 1) estimates −E_b[A ∇log π], an
   inverted one (b/π_prox) something else again: both miss by far more than the sampling noise.
2. Learning from stale samples. Every batch comes from the policy 8 versions old. The decoupled objective
   (clip against π_prox, importance weight π_prox/π_behav) learns the best arm; standard PPO on the same
   data (clip against π_behav) stalls, because once the policy is more than ε away from the stale
   behaviour every ratio sits outside the clip range and the gradient vanishes.
"""

from __future__ import annotations

import pytest
import torch

from hexrl.api.models import AlgorithmName
from hexrl_workers.trainer.algorithm import LossSettings, decoupled_ppo_loss, group_advantages

pytestmark = pytest.mark.workers
K = 6


def _loss_grad(theta: torch.Tensor, arms: torch.Tensor, behaviour_logp: torch.Tensor, adv: torch.Tensor,
               settings: LossSettings) -> torch.Tensor:
    theta = theta.clone().requires_grad_(True)
    logp = torch.log_softmax(theta, -1)[arms][:, None]
    loss, _ = decoupled_ppo_loss(logp, logp.detach(), behaviour_logp[:, None], adv, torch.ones_like(logp), settings)
    loss.backward()
    assert theta.grad is not None
    return theta.grad


def test_the_importance_weight_makes_the_stale_gradient_the_on_policy_one():
    torch.manual_seed(0)
    theta = torch.tensor([1.5, 0.5, 0.0, -0.5, -1.0, 0.2])  # the proximal (current) policy
    behaviour = torch.softmax(torch.tensor([-1.0, 0.0, 1.5, 0.3, 0.8, -0.4]), -1)  # stale, very different
    advantage = torch.tensor([1.0, -0.5, 0.3, -1.0, 0.8, -0.2])  # A(arm)
    pi = torch.softmax(theta, -1)
    # exact on-policy gradient of −E_π[A log π] with A fixed: −Σ_a π(a) A(a) (e_a − π)
    exact = -sum(pi[a] * advantage[a] * (torch.eye(K)[a] - pi) for a in range(K))
    arms = torch.multinomial(behaviour, 200_000, replacement=True)
    blogp = behaviour.log()[arms]
    settings = LossSettings(behaviour_weight_cap=1e9, clip_epsilon=0.2)
    corrected = _loss_grad(theta, arms, blogp, advantage[arms], settings)
    # the same data without the weight (π_behav taken as π_prox) and with it inverted
    removed = _loss_grad(theta, arms, torch.log_softmax(theta, -1)[arms], advantage[arms], settings)
    inverted = _loss_grad(theta, arms, 2 * torch.log_softmax(theta, -1)[arms] - blogp, advantage[arms], settings)

    def err(g: torch.Tensor) -> float:
        return float((g - exact).norm() / exact.norm())

    assert err(corrected) < 0.05, (corrected, exact)
    assert err(removed) > 0.5 and err(inverted) > 0.5, (err(removed), err(inverted))


def _stale_bandit(decoupled: bool, steps: int = 16, lag: int = 8, group: int = 64, seed: int = 0):
    """Train a K-armed policy (reward 1 on the last arm) on batches from the policy `lag` versions old."""
    gen = torch.Generator().manual_seed(seed)
    theta = torch.zeros(K, requires_grad=True)
    optim = torch.optim.SGD([theta], lr=1.0)  # not Adam: it would rescale the vanishing gradient back up
    history = [theta.detach().clone()]
    lags = []
    settings = LossSettings(decoupled=decoupled, clip_epsilon=0.2, behaviour_weight_cap=5.0)
    for version in range(steps):
        behaviour_version = max(0, version - lag)
        lags.append(version - behaviour_version)
        b = torch.softmax(history[behaviour_version], -1)
        arms = torch.multinomial(b, group, replacement=True, generator=gen)
        rewards = (arms == K - 1).float()
        adv = group_advantages(rewards, group, AlgorithmName.grpo)
        logp = torch.log_softmax(theta, -1)[arms][:, None]
        loss, _ = decoupled_ppo_loss(logp, logp.detach(), b.log()[arms][:, None], adv, torch.ones_like(logp), settings)
        optim.zero_grad()
        loss.backward()
        optim.step()
        history.append(theta.detach().clone())
    return float(torch.softmax(theta.detach(), -1)[K - 1]), lags


def test_decoupled_ppo_learns_from_stale_samples_where_standard_ppo_stalls():
    best_decoupled, lags = _stale_bandit(decoupled=True)
    best_standard, _ = _stale_bandit(decoupled=False)
    assert max(lags) >= 1 and sum(lags) / len(lags) > 3  # it really trained on stale samples
    # measured: 0.97 against 0.50 (seeds 0-3 within ±0.02)
    assert best_decoupled > 0.9, best_decoupled
    assert best_standard < 0.7 and best_decoupled - best_standard > 0.3, (best_decoupled, best_standard)
