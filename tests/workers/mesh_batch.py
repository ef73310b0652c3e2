"""The fixed model and batch of the mesh-equivalence check, shared by the reference and the ranks."""

from __future__ import annotations

import random
from typing import Any

import torch
from workers_builders import tiny_spec

from hexrl.api.models import AlgorithmName
from hexrl_workers.modeling import build_model
from hexrl_workers.protocol import Trajectory
from hexrl_workers.trainer.algorithm import (
    LossSettings,
    PackedBatch,
    decoupled_ppo_loss,
    loss_normaliser,
    pack_batch,
    token_logprobs,
)

GROUP = 4


def spec():  # type: ignore[no-untyped-def]
    # 4 query heads, 2 key/value heads, MLP 128: splits over TP2
    return tiny_spec(**{"model.shape.vocab": 40})


def tiny_model() -> Any:
    return build_model(spec())


def fixed_batch() -> tuple[PackedBatch, float]:
    """12 trajectories of different lengths (3 groups), behaviour log-probs a little off the model's."""
    rnd = random.Random(7)
    trajs = []
    for k in range(12):
        prompt = [rnd.randrange(3, 40) for _ in range(rnd.randint(3, 6))]
        resp = [rnd.randrange(3, 40) for _ in range(rnd.randint(1, 5))]
        trajs.append(Trajectory(
            item_id=k // GROUP, group_id=k // GROUP, group_size=GROUP, sample_index=k % GROUP, prompt_id=k // GROUP,
            prompt_tokens=prompt, tokens=resp, logprobs=[-3.5 - 0.1 * j for j in range(len(resp))],
            versions=[0] * len(resp), reward=float(rnd.random() < 0.5) + 0.1 * k,
        ))
    packed = pack_batch(trajs, GROUP, pad_id=0, estimator=AlgorithmName.grpo)
    return packed, loss_normaliser(AlgorithmName.grpo, float(packed.response_mask.sum()), len(trajs), 8)


def loss_of(model: Any, batch: PackedBatch, normaliser: float) -> torch.Tensor:
    logp = token_logprobs(model, batch.input_ids, batch.attention_mask, 1.0)
    loss, _ = decoupled_ppo_loss(logp, logp.detach() - 0.05, batch.behaviour_logp, batch.advantages,
                                 batch.response_mask, LossSettings(kl_coef=0.0), normaliser=normaliser)
    return loss
