"""Does the tiny job learn on every seed? An offline replay of its objective, two datasets side by side.

`hexrl run` on the tiny job interleaves rollout and training differently on every run, so which random
stream a run effectively gets is not under our control: the job must learn on *every* seed. This bench
replays the job's objective without the services — the same model, torch engine, reward, GRPO
advantages, decoupled PPO loss with KL to the reference, AdamW, cosine schedule and gradient clip — and
draws each group's policy version uniformly from the last η+1 (the worst staleness the gate admits). For
each seed it trains twice, once per way of drawing prompts:

- `uniform problems`: each of the 16 problems equally often (answer 0 — only "0+0" — is 1 prompt in 16);
- `uniform answers` (the built-in `arith-digits`): the answer first, then a problem with that answer.

Printed per seed: the final mean reward (last 10 % of steps, sampled at the job's temperature) and the
problems a fresh sample of 64 answers gets right less than 80 % of the time, then the ratio of the two
datasets' worst seeds. Never asserted (tests/workers/test_learning.py runs the real job).

Run: `.venv/bin/python bench/bench_learning_seeds.py [--seeds 0-5] [--steps 300]` (~1 minute per seed
and dataset on one core; `--jobs 2` runs two at once).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TINY_JOB = ROOT / "manifests" / "examples" / "rljob-tiny.yaml"
PROBES = 64
"""Samples per problem when checking, at the end, which problems the policy gets right."""


def _uniform_problems(seed: int):  # type: ignore[no-untyped-def]
    from hexrl_workers.tasks import ArithDigits, Example

    class UniformProblems(ArithDigits):
        """The dataset before answers were balanced."""

        def get(self, prompt_id: int) -> Example:
            rng = random.Random(self.seed * 1_000_003 + prompt_id)
            a, b = rng.choice(self.problems)
            return Example(f"{a}+{b}=", str(a + b))

    return UniformProblems(seed)


@dataclass
class _Replay:
    """What the steps of one replay share: the job, its models and engine, and the policy versions kept."""

    spec: Any
    tok: Any
    model: Any
    ref: Any
    data: Any
    reward: Any
    optim: Any
    loss_settings: Any
    engine: Any
    history: list[dict[str, Any]]
    """The last η+1 policy versions (state dicts), oldest first."""
    rng: random.Random
    cursor: int = 0
    """The next prompt id to draw from `data`."""
    rewards: list[float] = field(default_factory=list)
    """Mean reward of each step's batch."""


def _setup(seed: int, dataset: str) -> _Replay:
    """Build the tiny job's tokenizer, policy, reference, dataset, reward, optimizer and engine for `seed`."""
    import torch
    import yaml

    from hexrl.api import RLJob
    from hexrl_workers.modeling import build_model, build_tokenizer
    from hexrl_workers.reward import load_reward
    from hexrl_workers.rollout.engine import SamplingParams
    from hexrl_workers.rollout.torch_engine import TorchEngine
    from hexrl_workers.tasks import ArithDigits
    from hexrl_workers.trainer.algorithm import LossSettings

    torch.set_num_threads(1)
    spec = RLJob.model_validate(yaml.safe_load(TINY_JOB.read_text())).spec
    alg, gen = spec.algorithm, spec.generation
    # the models draw their initial weights in this order from the seeded stream: keep it
    torch.manual_seed(seed)
    tok = build_tokenizer(spec)
    model = build_model(spec).train()
    ref = build_model(spec).eval().requires_grad_(False)
    data = ArithDigits(seed) if dataset == "uniform answers" else _uniform_problems(seed)
    reward = load_reward(spec.reward.function)
    optim = torch.optim.AdamW(model.parameters(), lr=alg.learning_rate, weight_decay=0.0)
    loss_settings = LossSettings(clip_epsilon=alg.clip_epsilon, decoupled=True, kl_coef=alg.kl_coef,
                                 temperature=gen.temperature)
    engine = TorchEngine(build_model(spec), SamplingParams(gen.temperature, gen.top_p, tok.eos_id, tok.pad_id), seed)
    return _Replay(spec, tok, model, ref, data, reward, optim, loss_settings, engine,
                   history=[copy.deepcopy(model.state_dict())], rng=random.Random(seed))


def _draw_groups(r: _Replay) -> list[tuple[int, int, Any]]:
    """(policy version, group, example) for each prompt of a step; each group's version is 0..η versions old."""
    eta = r.spec.staleness.max_policy_lag
    drawn = []
    for g in range(r.spec.algorithm.prompts_per_step):
        version = len(r.history) - 1 - r.rng.randint(0, min(eta, len(r.history) - 1))
        drawn.append((version, g, r.data.get(r.cursor)))
        r.cursor += 1
    return drawn


def _generate_batch(r: _Replay, drawn: list[tuple[int, int, Any]]) -> Any:
    """Sample each group with its policy version, reward the responses, and pack them in group order."""
    from hexrl_workers.protocol import Trajectory
    from hexrl_workers.rollout.engine import GenRequest
    from hexrl_workers.trainer.algorithm import pack_batch

    tok, group, max_new = r.tok, r.spec.algorithm.group_size, r.spec.generation.max_new_tokens
    trajs: list[tuple[int, int, Trajectory]] = []
    for version in sorted({d[0] for d in drawn}):
        mine = [d for d in drawn if d[0] == version]
        r.engine.load_weights(r.history[version], version)
        results = r.engine.generate([GenRequest(tok.encode(ex.text), max_new)
                                     for _, _, ex in mine for _ in range(group)])
        for j, (_, g, ex) in enumerate(mine):
            for k in range(group):
                res = results[j * group + k]
                trajs.append((g, k, Trajectory(
                    item_id=0, group_id=g, group_size=group, sample_index=k, prompt_id=1,
                    prompt_tokens=tok.encode(ex.text), tokens=res.tokens, logprobs=res.logprobs,
                    versions=res.versions, reward=r.reward(tok.decode(res.tokens), ex.answer, ex.text))))
    return pack_batch([t for _, _, t in sorted(trajs, key=lambda x: (x[0], x[1]))], group, tok.pad_id)


def _train_step(r: _Replay, batch: Any, step: int, steps: int) -> None:
    """One optimizer step on `batch` (cosine LR, KL to the reference, clipped gradient); keeps the new version."""
    import torch

    from hexrl_workers.trainer.algorithm import decoupled_ppo_loss, token_logprobs

    alg, temperature = r.spec.algorithm, r.spec.generation.temperature
    for pg in r.optim.param_groups:
        pg["lr"] = alg.learning_rate * 0.5 * (1 + math.cos(math.pi * step / steps))
    r.optim.zero_grad()
    logp = token_logprobs(r.model, batch.input_ids, batch.attention_mask, temperature)
    with torch.no_grad():
        ref_logp = token_logprobs(r.ref, batch.input_ids, batch.attention_mask, temperature)
    loss, _ = decoupled_ppo_loss(logp, logp.detach(), batch.behaviour_logp, batch.advantages,
                                 batch.response_mask, r.loss_settings, ref_logp)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(r.model.parameters(), 1.0)
    r.optim.step()
    r.history = [*r.history, copy.deepcopy(r.model.state_dict())][-(r.spec.staleness.max_policy_lag + 1):]
    r.rewards.append(float(batch.rewards.mean()))


def _weak_problems(r: _Replay, seed: int, steps: int) -> dict[str, float]:
    """The problems the final policy gets right in less than 80 % of PROBES samples, with that share."""
    from hexrl_workers.rollout.engine import GenRequest
    from hexrl_workers.tasks import ArithDigits

    r.engine.load_weights(r.model.state_dict(), steps)
    weak = {}
    for a, b in ArithDigits(seed).problems:
        results = r.engine.generate([GenRequest(r.tok.encode(f"{a}+{b}="), r.spec.generation.max_new_tokens)] * PROBES)
        right = sum(r.reward(r.tok.decode(res.tokens), str(a + b), "") for res in results) / PROBES
        if right < 0.8:
            weak[f"{a}+{b}"] = round(right, 2)
    return weak


def replay(seed: int, dataset: str, steps: int) -> dict[str, object]:
    """Train the tiny job's objective for `steps` steps; returns the final reward and the weak problems."""
    r = _setup(seed, dataset)
    for step in range(steps):
        _train_step(r, _generate_batch(r, _draw_groups(r)), step, steps)
    weak = _weak_problems(r, seed, steps)
    tail = max(1, steps // 10)
    return {"seed": seed, "dataset": dataset, "final": round(sum(r.rewards[-tail:]) / tail, 3), "weak": weak}


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-5", help="e.g. 0-5 or 0,3,7")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=1, help="replays run at once (one core each)")
    args = ap.parse_args()
    datasets = ("uniform problems", "uniform answers")
    work = [(s, d) for s in _seeds(args.seeds) for d in datasets]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(replay, *zip(*work, strict=True), [args.steps] * len(work)))
    print(f"{'seed':>4s}  " + "  ".join(f"{d:>34s}" for d in datasets))
    by = {(r["seed"], r["dataset"]): r for r in results}
    for s in _seeds(args.seeds):
        cells = [f"{by[s, d]['final']:.3f} weak {json.dumps(by[s, d]['weak']):>22s}" for d in datasets]
        print(f"{s:4d}  " + "  ".join(f"{c:>34s}" for c in cells))
    worst = {d: min(float(r["final"]) for r in results if r["dataset"] == d) for d in datasets}
    stuck = {d: sum(1 for r in results if r["dataset"] == d and r["weak"]) for d in datasets}
    n = len(_seeds(args.seeds))
    print(f"worst seed: uniform answers {worst[datasets[1]]:.3f} vs uniform problems {worst[datasets[0]]:.3f} "
          f"(ratio {worst[datasets[1]] / worst[datasets[0]]:.3f}); seeds with a problem below 80 %: "
          f"{stuck[datasets[1]]}/{n} vs {stuck[datasets[0]]}/{n}")


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "workers")]
    main()
