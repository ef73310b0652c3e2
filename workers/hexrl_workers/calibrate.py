"""A short benchmark of this node for `hexrl calibrate`: decode, prefill and training tokens/s of a model shape.

A randomly initialised Llama-style causal LM is built from the shape (no download) and timed on the device:

- **prefill + decode**: `batch` random prompts of `prompt_tokens` tokens go through one forward pass with the
  KV cache on (prefill), then `new_tokens` greedy steps of one token per sequence reuse the cache (decode).
  Prefill rate = batch·prompt_tokens / its seconds; decode rate = batch·new_tokens / the steps' seconds.
  Then prefill alone, for `seconds` more: inside a generation it is a small part of the time.
- **train**: one step (forward, backward, AdamW) over `batch` sequences of prompt_tokens + new_tokens tokens,
  with activation checkpointing when `recompute` (as the cost model assumes by default); rate = tokens / seconds.

One untimed warm-up of each (allocation, kernel selection), then repetitions until `seconds` have passed per
phase (at least `min_repeats`, at most `max_repeats`); every repetition is one `Measurement`, so the fit in
`hexrl.sched.calibration` sees the spread and can reject an outlier (a descheduled run on a busy machine).
The operator side (predictions from the GPU catalog, the fit, the profile file) is `hexrl calibrate`; this
module only measures (workers never import the planner). torch and transformers are imported when run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class BenchShape:
    """The model measured (a dense decoder-only transformer, Llama layout)."""

    layers: int = 2
    """Transformer layers."""
    hidden_size: int = 64
    """Residual width; a multiple of `attention_heads`."""
    attention_heads: int = 4
    """Query heads (head dim = hidden_size / attention_heads)."""
    kv_heads: int = 2
    """Key/value heads; divides `attention_heads`."""
    intermediate_size: int = 128
    """MLP width."""
    vocab: int = 512
    """Vocabulary size."""

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.attention_heads


@dataclass(frozen=True)
class BenchSettings:
    """What is run and for how long."""

    batch: int = 8
    """Sequences decoded together and trained on in one step."""
    prompt_tokens: int = 64
    """Tokens per prompt (prefill length)."""
    new_tokens: int = 64
    """Decode steps per repetition (tokens generated per sequence)."""
    seconds: float = 1.0
    """Wall seconds per phase after the warm-up (generation, prefill alone, training: about 3× this in all,
    plus building the model)."""
    min_repeats: int = 3
    """Fewest timed repetitions per phase (the outlier rejection needs three)."""
    max_repeats: int = 50
    """Most timed repetitions per phase (a tiny shape repeats quickly; more adds little)."""
    dtype: str = "fp32"
    """fp32 | bf16 | fp16: weights and activations."""
    device: str = "cpu"
    """torch device, e.g. cpu or cuda."""
    recompute: bool = True
    """Activation checkpointing in the training step (the cost model's default)."""
    seed: int = 0
    """Seed of the weights and of the random token ids."""


@dataclass(frozen=True)
class Measurement:
    """One timed repetition of one phase."""

    phase: str
    """decode | prefill | train."""
    tokens: int
    """Tokens processed (generated, prefilled or trained on)."""
    seconds: float
    """Wall seconds it took."""

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


@dataclass(frozen=True)
class BenchResult:
    """What the benchmark measured, and on what."""

    parameters: int
    """Parameters of the model built (embeddings and head included)."""
    measurements: tuple[Measurement, ...]
    device: str
    dtype: str
    threads: int
    """torch's intra-op threads."""
    torch_version: str


def _build(shape: BenchShape, settings: BenchSettings) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the checkpointing/use_cache notice is not the user's business here
    cfg = LlamaConfig(
        vocab_size=shape.vocab, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.layers, num_attention_heads=shape.attention_heads,
        num_key_value_heads=shape.kv_heads, head_dim=shape.head_dim,
        max_position_embeddings=settings.prompt_tokens + settings.new_tokens + 1, tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model: Any = LlamaForCausalLM(cfg)  # its typed `.to` is a functools wrapper mypy cannot call
    return model.to(device=settings.device, dtype=getattr(torch, _DTYPES[settings.dtype]))


def _generate(model: Any, ids: Any, new_tokens: int, sync: Callable[[], None]) -> tuple[float, float]:
    """(prefill seconds, decode seconds) of one greedy generation with the KV cache."""
    import torch

    with torch.inference_mode():
        start = time.perf_counter()
        out = model(input_ids=ids, use_cache=True)
        sync()
        prefilled = time.perf_counter()
        for _ in range(new_tokens):
            out = model(input_ids=out.logits[:, -1:].argmax(-1), use_cache=True, **_cache_of(out))
        sync()
        return prefilled - start, time.perf_counter() - prefilled


def _cache_of(out: Any) -> dict[str, Any]:
    """The KV cache of a forward's output as the next forward's keyword: `cache` (transformers ≥ 5.x
    renamed it) or `past_key_values`."""
    cache = out.get("cache")
    return {"cache": cache} if cache is not None else {"past_key_values": out.past_key_values}


def _train_step(model: Any, optimizer: Any, ids: Any, sync: Callable[[], None]) -> float:
    start = time.perf_counter()
    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sync()
    return time.perf_counter() - start


def _checkpoint_activations(model: Any) -> None:
    """Activation checkpointing (non-reentrant), under the name this transformers version gives it."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _repeat(run: Callable[[], None], settings: BenchSettings) -> None:
    """`run` once untimed, then until `seconds` have passed (within the repeat bounds)."""
    run()
    start, n = time.perf_counter(), 0
    while n < settings.max_repeats and (n < settings.min_repeats or time.perf_counter() - start < settings.seconds):
        run()
        n += 1


def run_benchmark(shape: BenchShape, settings: BenchSettings) -> BenchResult:
    """Measure prefill, decode and training tokens/s of `shape` on `settings.device` (see the module doc)."""
    import torch

    model = _build(shape, settings)
    dev = torch.device(settings.device)
    sync: Callable[[], None] = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(settings.seed)
    b, p, n = settings.batch, settings.prompt_tokens, settings.new_tokens
    out: list[Measurement] = []

    def generate() -> None:
        ids = torch.randint(0, shape.vocab, (b, p), generator=gen).to(dev)
        pre, dec = _generate(model.eval(), ids, n, sync)
        out.extend((Measurement("prefill", b * p, pre), Measurement("decode", b * n, dec)))

    def prefill() -> None:  # prefill alone too: inside a generation it is too short to be much evidence
        ids = torch.randint(0, shape.vocab, (b, p), generator=gen).to(dev)
        out.append(Measurement("prefill", b * p, _generate(model.eval(), ids, 0, sync)[0]))

    _repeat(generate, settings)
    del out[:2]  # the warm-up's two measurements are not results
    before = len(out)
    _repeat(prefill, settings)
    del out[before]
    model.train()
    if settings.recompute:
        _checkpoint_activations(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def train() -> None:
        ids = torch.randint(0, shape.vocab, (b, p + n), generator=gen).to(dev)
        out.append(Measurement("train", b * (p + n), _train_step(model, optimizer, ids, sync)))

    before = len(out)
    _repeat(train, settings)
    del out[before]  # the training warm-up
    return BenchResult(
        parameters=sum(int(t.numel()) for t in model.parameters()),
        measurements=tuple(out),
        device=settings.device,
        dtype=settings.dtype,
        threads=torch.get_num_threads(),
        torch_version=str(torch.__version__),
    )
