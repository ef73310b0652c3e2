"""Generation with vLLM on GPUs (imported lazily; needs CUDA and the `vllm` extra).

Written against vLLM's offline `LLM` API (`LLM.generate` with `SamplingParams(logprobs=0)` returns the
sampled token's log-prob; in-place weight updates through the model runner's `load_weights`). It is not
exercised on this project's CPU-only CI: the torch engine covers the same interface there. Log-probs:
vLLM reports them after temperature scaling when `logprobs_mode="processed_logprobs"` (recent vLLM);
older releases report raw-logit log-probs, in which case the trainer must use T = 1 — a warning says so.
Interruption granularity is one `generate` call (vLLM does not expose a per-token stop hook offline),
so the worker issues short `max_tokens` slices when a stop is possible and hands in the accumulated
prefix as a partial.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from hexrl_workers.rollout.engine import GenRequest, GenResult, SamplingParams

log = logging.getLogger(__name__)
SLICE_TOKENS = 64
"""Tokens generated per vLLM call, so a SIGTERM is honoured within one slice."""


class VLLMEngine:
    def __init__(self, model_path: str, params: SamplingParams, seed: int = 0, **llm_kwargs: Any) -> None:
        try:
            import vllm
        except ImportError as exc:  # pragma: no cover - GPU images only
            raise RuntimeError("the vLLM engine needs `pip install hexrl[vllm]` and a CUDA GPU") from exc
        self._vllm = vllm
        kwargs = {"seed": seed, "enable_prefix_caching": True, **llm_kwargs}
        try:
            self.llm = vllm.LLM(model=model_path, logprobs_mode="processed_logprobs", **kwargs)
        except TypeError:
            log.warning("this vLLM has no logprobs_mode: log-probs are of T=1; use temperature 1 for training")
            self.llm = vllm.LLM(model=model_path, **kwargs)
        self.params = params
        self.version = 0

    def load_weights(self, tensors: dict[str, Any], version: int) -> None:  # pragma: no cover - GPU only
        engine = self.llm.llm_engine
        runner = engine.model_executor.driver_worker.model_runner
        runner.model.load_weights(weights=list(tensors.items()))
        self.llm.reset_prefix_cache()
        self.version = version

    def generate(self, requests: list[GenRequest], stop: threading.Event | None = None) -> list[GenResult]:  # pragma: no cover
        out = [GenResult(list(r.prefix_tokens), list(r.prefix_logprobs), list(r.prefix_versions), False) for r in requests]
        todo = list(range(len(requests)))
        while todo:
            if stop is not None and stop.is_set():
                for i in todo:
                    out[i].interrupted = True
                return out
            prompts, sps = [], []
            for i in todo:
                r = requests[i]
                left = r.max_new_tokens - len(out[i].tokens)
                prompts.append({"prompt_token_ids": r.prompt_tokens + out[i].tokens})
                sps.append(self._vllm.SamplingParams(
                    temperature=self.params.temperature, top_p=self.params.top_p,
                    max_tokens=min(SLICE_TOKENS, left), logprobs=0, stop_token_ids=[self.params.eos_id],
                ))
            results = self.llm.generate(prompts, sps, use_tqdm=False)
            still = []
            for i, res in zip(todo, results, strict=True):
                comp = res.outputs[0]
                for tok, lps in zip(comp.token_ids, comp.logprobs or [], strict=False):
                    out[i].tokens.append(int(tok))
                    out[i].logprobs.append(float(lps[tok].logprob))
                    out[i].versions.append(self.version)
                if comp.finish_reason == "stop":
                    out[i].finished = True
                elif len(out[i].tokens) < requests[i].max_new_tokens:
                    still.append(i)
            todo = still
        return out
