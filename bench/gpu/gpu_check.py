"""GPU check: the vLLM rollout engine and the trainer on one GPU, measured beside the cost model's prediction.

Needs one CUDA GPU and `pip install -e '.[workers,vllm]'`; downloads nothing. It builds a Qwen2-style model
from a config with random weights (default: the shape of Qwen2.5-0.5B; `--shape 1.5B` for Qwen2.5-1.5B),
saves it to a temporary directory, and then, on this GPU:

1. decode: `VLLMEngine` (the rollout pods' engine: AsyncLLM, continuous batching, tempered raw log-probs)
   generates `--requests` responses of up to `--new-tokens` tokens to random prompts → decode tokens/s;
2. weight update: a full state dict packed into a weight-service blob and loaded into the running engine
   in place (`load_weights`: /dev/shm + collective_rpc + prefix-cache reset) → seconds;
3. train: `--steps` optimizer steps of the trainer's loss (decoupled PPO on the generated responses,
   bf16 autocast from fp32 master weights, activation checkpointing) → train tokens/s;
4. the cost model's predictions for the same GPU type and model shape, and the ratios measured/predicted.

It also checks that the engine's log-probs equal the trainer's recomputation (tempered, untruncated) on
a few responses, so a wrong `logprobs_mode` shows here first.

    python bench/gpu/gpu_check.py [--shape 0.5B|1.5B] [--requests 256] [--new-tokens 512] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

QWEN_EOS = 151643
SHAPES = {
    # parameters, layers, hidden, heads, kv heads, intermediate, vocab (Qwen2.5 configs)
    "0.5B": (0.49e9, 24, 896, 14, 2, 4864, 151936),
    "1.5B": (1.54e9, 28, 1536, 12, 2, 8960, 151936),
}


def build_model_dir(shape: str, out: str) -> Any:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    _, layers, hidden, heads, kv, inter, vocab = SHAPES[shape]
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=kv, intermediate_size=inter, max_position_embeddings=4096,
                      tie_word_embeddings=True, torch_dtype="bfloat16")
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    return model


def predictions(shape: str, gpu_name: str, prompt: int, new_tokens: int) -> dict[str, float | None]:
    from hexrl.api.models import RLJobSpec
    from hexrl.sched.catalog import DEFAULT_CATALOG
    from hexrl.sched.costmodel import (
        CostModelSettings,
        Workload,
        decode_tokens_per_second,
        training_tokens_per_second,
    )

    name = DEFAULT_CATALOG.canonical(gpu_name)
    if name is None:
        return {"gpu": None}
    params, layers, hidden, heads, kv, inter, vocab = SHAPES[shape]
    spec = RLJobSpec.model_validate({
        "model": {"name": shape, "source": {"builtin": "tiny-random"},
                  "shape": {"parameters": params, "layers": layers, "hiddenSize": hidden, "kvHeads": kv,
                            "headDim": hidden // heads, "attentionHeads": heads, "intermediateSize": inter,
                            "vocab": vocab}},
        "generation": {"promptTokens": prompt, "maxNewTokens": new_tokens, "meanNewTokens": new_tokens,
                       "lengthDistribution": "fixed"},
        "budget": {"maxCostPerHour": 100},
    })
    w, s, gpu = Workload.from_spec(spec), CostModelSettings(), DEFAULT_CATALOG.get(name)
    d = decode_tokens_per_second(gpu, w, 1, 1, s)
    t = training_tokens_per_second(gpu, w, 1, 1, 1, False, s, 8)
    return {"gpu": name, "decode_tokens_per_second": d.tokens_per_second if d else None,
            "train_tokens_per_second": t.tokens_per_second if t else None}


@dataclass
class _Check:
    """What the steps on the GPU share: options, model, engine, its prompts and responses, and the results."""

    args: argparse.Namespace
    model: Any
    engine: Any
    out: dict[str, Any]
    """The results, printed as JSON at the end (in the order they were measured)."""
    prompts: list[list[int]] = field(default_factory=list)
    responses: list[Any] = field(default_factory=list)


def _parse_args() -> argparse.Namespace:
    """The command line: model shape, decode load, training steps, sampling temperature."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), default="0.5B")
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=512)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--temperature", type=float, default=0.8)
    return ap.parse_args()


def _measure_decode(c: _Check) -> None:
    """Generate responses to random prompts with the engine → decode tokens/s."""
    import torch

    from hexrl_workers.rollout.engine import GenRequest

    a, vocab = c.args, c.model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    c.prompts = [torch.randint(10, vocab - 10, (a.prompt_tokens,), generator=g).tolist() for _ in range(a.requests)]
    t0 = time.perf_counter()
    c.responses = c.engine.generate([GenRequest(p, a.new_tokens) for p in c.prompts])
    dt = time.perf_counter() - t0
    c.out["decode_tokens_per_second"] = sum(len(r.tokens) for r in c.responses) / dt


def _measure_weight_update(c: _Check) -> None:
    """Pack the model into a weight-service blob and load it into the running engine in place → seconds."""
    from hexrl_workers.weights.store import pack, unpack

    state = {k: v.detach().cpu() for k, v in c.model.state_dict().items()}
    manifest, blob = pack(state, 1, 64 << 20)
    t0 = time.perf_counter()
    c.engine.load_weights(unpack(manifest, blob), 1)
    c.out["weight_update_seconds"] = time.perf_counter() - t0
    c.out["weight_bytes"] = manifest.total_bytes


def _trajectories(c: _Check) -> list[Any]:
    """The generated responses as trajectories in groups of 8 (an incomplete last group dropped)."""
    from hexrl_workers.protocol import Trajectory

    trajs = [Trajectory(item_id=i // 8, group_id=i // 8, group_size=8, sample_index=i % 8, prompt_id=i // 8,
                        prompt_tokens=p, tokens=r.tokens, logprobs=r.logprobs, versions=r.versions,
                        reward=float(i % 3 == 0)) for i, (p, r) in enumerate(zip(c.prompts, c.responses, strict=True))]
    return trajs[: len(trajs) // 8 * 8]


def _compare_logprobs(c: _Check, trainer_model: Any, batch: Any) -> None:
    """The engine's log-probs against the trainer's recomputation on 4 responses → max and mean |diff|."""
    import torch

    from hexrl_workers.trainer.algorithm import token_logprobs

    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        check = batch.rows(slice(0, 4))
        lp = token_logprobs(trainer_model, check.input_ids.cuda(), check.attention_mask.cuda(), c.args.temperature)
        mask = check.response_mask.cuda().bool()
        diff = (lp[mask] - check.behaviour_logp.cuda()[mask]).abs()
    c.out["logprob_max_abs_diff_vs_trainer"] = float(diff.max())
    c.out["logprob_mean_abs_diff_vs_trainer"] = float(diff.mean())


def _measure_training(c: _Check, trainer_model: Any, batch: Any, n: int) -> None:
    """`--steps` optimizer steps of the trainer's loss on `n` trajectories, micro-batches of 8 → train tokens/s."""
    import torch

    from hexrl_workers.trainer.algorithm import LossSettings, decoupled_ppo_loss, token_logprobs

    optim = torch.optim.AdamW(trainer_model.parameters(), lr=1e-6)
    mb, tokens = 8, 0
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(c.args.steps):
        optim.zero_grad(set_to_none=True)
        for s in range(0, n, mb):
            sub = batch.rows(slice(s, s + mb))
            ids, att = sub.input_ids.cuda(), sub.attention_mask.cuda()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logp = token_logprobs(trainer_model, ids, att, c.args.temperature)
            loss, _ = decoupled_ppo_loss(logp, logp.detach(), sub.behaviour_logp.cuda(), sub.advantages.cuda(),
                                         sub.response_mask.cuda(), LossSettings())
            loss.backward()
            tokens += int(att.sum())
        optim.step()
    torch.cuda.synchronize()
    c.out["train_tokens_per_second"] = tokens / (time.perf_counter() - t0)


def _train_on_responses(c: _Check) -> None:
    """Train the model (fp32 master weights, activation checkpointing) on its responses, log-probs checked first."""
    from hexrl_workers.trainer.algorithm import pack_batch

    trajs = _trajectories(c)
    trainer_model = c.model.float().cuda().train()
    trainer_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    batch = pack_batch(trajs, 8, pad_id=0)
    _compare_logprobs(c, trainer_model, batch)
    _measure_training(c, trainer_model, batch, len(trajs))


def _add_predictions(out: dict[str, Any], a: argparse.Namespace) -> None:
    """The cost model's predictions for this GPU and shape, and measured / predicted where it has one."""
    pred = predictions(a.shape, out["gpu"], a.prompt_tokens, a.new_tokens)
    out["predicted"] = pred
    for key in ("decode_tokens_per_second", "train_tokens_per_second"):
        if pred.get(key):
            out[f"{key}_measured_over_predicted"] = out[key] / pred[key]  # type: ignore[operator]


def main() -> None:
    """Decode, weight update and training measured on this GPU, beside the cost model's predictions."""
    import torch

    from hexrl_workers.rollout.engine import SamplingParams
    from hexrl_workers.rollout.vllm_engine import VLLMEngine

    a = _parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA GPU visible; run it on a GPU machine")
    out: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "shape": a.shape}
    with tempfile.TemporaryDirectory(prefix="hexrl-gpu-check-") as model_dir:
        model = build_model_dir(a.shape, model_dir)
        engine = VLLMEngine(model_dir, SamplingParams(temperature=a.temperature, top_p=0.95, eos_id=QWEN_EOS),
                            seed=0, skip_tokenizer_init=True, dtype="bfloat16", gpu_memory_utilization=0.5)
        c = _Check(a, model, engine, out)
        _measure_decode(c)
        _measure_weight_update(c)
        _train_on_responses(c)
        engine.close()
    _add_predictions(out, a)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
