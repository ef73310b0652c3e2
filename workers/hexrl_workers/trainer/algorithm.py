"""Critic-free advantages (GRPO, RLOO, Dr. GRPO) and the decoupled PPO objective (AReaL, arXiv
2505.24298), in PyTorch.

Advantages. For a group of G responses to one prompt with rewards r_1..r_G, every token of response k
gets A_k:

    grpo     A_k = (r_k - mean(r)) / std(r)                      (DeepSeekMath, arXiv 2402.03300)
    rloo     A_k = r_k - mean_{j≠k} r_j = G/(G-1) · (r_k - mean(r))   (leave-one-out baseline, arXiv 2402.14740)
    dr_grpo  A_k = r_k - mean(r)                                 (no std normalisation, arXiv 2503.20783)

computed in float64 (float32 leaves rounding noise of ~1e-7 in r - mean(r), which the std division of a
group whose rewards are all equal blows up to O(1) advantages) and exactly 0 for a group whose rewards are
all equal: it carries no signal.

Loss aggregation. GRPO and RLOO average the per-token loss over all response tokens of the batch
(token-mean, DAPO's fix of the per-sequence mean). Dr. GRPO removes the length bias as well: the token sum
is divided by a constant, (number of responses) × maxNewTokens, so a long response is not down-weighted.

Decoupled PPO. Three policies: the behaviour policy π_behav that generated token t (its log-prob is
in the trajectory, possibly from several versions after migration), the proximal policy π_prox = the
trainer's weights before this update (log-probs recomputed with no grad), and π_θ being optimised.
Per token:

    w_t = min(π_prox(t) / π_behav(t), c)                  importance weight, detached, capped at c
    ρ_t = π_θ(t) / π_prox(t)
    L   = - Σ_t m_t · w_t · min(ρ_t A_t, clip(ρ_t, 1-ε, 1+ε) A_t) / Σ_t m_t   (+ β · KL_t)

m_t masks response tokens. Clipping is against π_prox, so the trust region is centred on a recent,
well-defined policy however stale the data, and w_t corrects the off-policyness. With
`decoupled = False` this is standard PPO with π_old = π_behav (w ≡ 1). The optional KL to a frozen
reference uses the non-negative k3 estimator `exp(q - p) - (q - p) - 1` with q = log π_ref, p = log π_θ.

All log-probs are of the tempered distribution softmax(logits / T), the same the engine reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hexrl.api.models import AlgorithmName
from hexrl_workers.protocol import Trajectory


@dataclass
class LossSettings:
    """The objective's constants."""

    clip_epsilon: float = 0.2
    """ε: PPO clip range around the proximal policy (spec.algorithm.clipEpsilon)."""
    decoupled: bool = True
    """Use the decoupled objective (spec.algorithm.decoupled)."""
    behaviour_weight_cap: float = 5.0
    """c: cap of π_prox/π_behav, bounding the variance a very stale token can inject (AReaL uses ~5)."""
    kl_coef: float = 0.0
    """β: weight of the KL penalty to the reference policy (spec.algorithm.klCoef)."""
    temperature: float = 1.0
    """T of the sampling distribution (generation.temperature; 0 = greedy, treated as 1)."""


def group_advantages(rewards: torch.Tensor, group_size: int, estimator: AlgorithmName = AlgorithmName.grpo,
                     eps: float = 1e-6) -> torch.Tensor:
    """rewards [N] ordered group by group → float32 advantages [N] of `estimator` (see the module docstring)."""
    r = rewards.to(torch.float64).view(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if estimator == AlgorithmName.grpo:
        a = centred / (r.std(dim=1, unbiased=False, keepdim=True) + eps)
    elif estimator == AlgorithmName.rloo:
        a = centred * (group_size / (group_size - 1))
    elif estimator == AlgorithmName.dr_grpo:
        a = centred
    else:
        raise ValueError(f"no advantage estimator for algorithm {estimator!r}")
    flat = (r.amax(dim=1, keepdim=True) == r.amin(dim=1, keepdim=True)).expand_as(r)
    return a.masked_fill(flat, 0.0).reshape(-1).to(torch.float32)


def grpo_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """GRPO's advantages (`group_advantages` with the grpo estimator)."""
    return group_advantages(rewards, group_size, AlgorithmName.grpo, eps)


def loss_normaliser(estimator: AlgorithmName, response_tokens: float, responses: int, max_new_tokens: int) -> float:
    """What the batch's summed per-token loss is divided by: its response tokens (token-mean), or for
    Dr. GRPO the constant responses × maxNewTokens."""
    if estimator == AlgorithmName.dr_grpo:
        return float(responses * max_new_tokens)
    return max(float(response_tokens), 1.0)


@dataclass
class PackedBatch:
    """Right-padded prompt+response tensors of a batch (rows in batch order)."""

    input_ids: torch.Tensor  # [N, L]
    attention_mask: torch.Tensor  # [N, L]
    response_mask: torch.Tensor  # [N, L-1]: 1 where position t predicts a response token
    behaviour_logp: torch.Tensor  # [N, L-1]
    advantages: torch.Tensor  # [N]
    rewards: torch.Tensor  # [N]

    def rows(self, idx: slice) -> PackedBatch:
        return PackedBatch(
            self.input_ids[idx], self.attention_mask[idx], self.response_mask[idx], self.behaviour_logp[idx],
            self.advantages[idx], self.rewards[idx],
        )


def pack_batch(trajs: list[Trajectory], group_size: int, pad_id: int,
               estimator: AlgorithmName = AlgorithmName.grpo) -> PackedBatch:
    n = len(trajs)
    width = max(len(t.prompt_tokens) + len(t.tokens) for t in trajs)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    att = torch.zeros((n, width), dtype=torch.long)
    rmask = torch.zeros((n, width - 1))
    blogp = torch.zeros((n, width - 1))
    for i, t in enumerate(trajs):
        p, r = len(t.prompt_tokens), len(t.tokens)
        ids[i, : p + r] = torch.tensor(t.prompt_tokens + t.tokens)
        att[i, : p + r] = 1
        # position j predicts token j+1: response tokens sit at p..p+r-1, predicted from p-1..p+r-2
        rmask[i, p - 1 : p - 1 + r] = 1
        blogp[i, p - 1 : p - 1 + r] = torch.tensor(t.logprobs)
    rewards = torch.tensor([t.reward for t in trajs], dtype=torch.float32)
    return PackedBatch(ids, att, rmask, blogp, group_advantages(rewards, group_size, estimator), rewards)


def token_logprobs(model: Any, ids: torch.Tensor, att: torch.Tensor, temperature: float) -> torch.Tensor:
    """log π(x_{t+1} | x_{≤t}) under softmax(logits / T), shape [N, L-1]."""
    logits = model(input_ids=ids, attention_mask=att).logits[:, :-1, :].float()
    t = temperature if temperature > 0 else 1.0
    logp = torch.log_softmax(logits / t, dim=-1)
    return logp.gather(-1, ids[:, 1:, None])[..., 0]


def decoupled_ppo_loss(
    logp: torch.Tensor,
    prox_logp: torch.Tensor,
    behav_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    s: LossSettings,
    ref_logp: torch.Tensor | None = None,
    normaliser: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss summed over tokens and divided by `normaliser` (default: this micro-batch's tokens)."""
    adv = advantages[:, None].expand_as(logp)
    if s.decoupled:
        w = torch.exp(prox_logp - behav_logp).clamp(max=s.behaviour_weight_cap).detach()
        ratio = torch.exp(logp - prox_logp.detach())
    else:
        w = torch.ones_like(logp)
        ratio = torch.exp(logp - behav_logp)
    surr = torch.minimum(ratio * adv, ratio.clamp(1 - s.clip_epsilon, 1 + s.clip_epsilon) * adv)
    per_tok = -w * surr
    if s.kl_coef > 0 and ref_logp is not None:
        d = ref_logp.detach() - logp
        per_tok = per_tok + s.kl_coef * (torch.exp(d) - d - 1)
    denom = normaliser if normaliser is not None else float(mask.sum().clamp(min=1))
    loss = (per_tok * mask).sum() / denom
    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        stats = {
            "clip_fraction": float((((ratio - 1).abs() > s.clip_epsilon).float() * mask).sum() / n),
            "behaviour_weight_mean": float((w * mask).sum() / n),
        }
        if s.kl_coef > 0 and ref_logp is not None:  # k3 estimate of KL(π_θ ‖ π_ref), token mean
            stats["kl"] = float(((torch.exp(d) - d - 1) * mask).sum() / n)
    return loss, stats
