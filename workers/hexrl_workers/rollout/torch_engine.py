"""Generation with a `transformers` causal LM in PyTorch (CPU or GPU), with a KV cache.

Batched incremental decoding: the contexts (prompt + migrated prefix) are left-padded and prefilled
once; then each step feeds one token per sequence with the cache. Per step, for sequence b:

    z = logits_b / T,   logp = log_softmax(z),   p = exp(logp)
    top-p: keep the smallest set S of tokens, by decreasing p, with Σ_S p >= topP; sample x ~ p|S
    reported log-prob = logp[x]            (tempered, untruncated; see `rollout.engine`)

A request with its own temperature (`GenRequest.temperature`, evaluation) is sampled at it; T ≤ 0 is greedy.

Finished sequences (EOS) keep being fed a pad token with attention mask 0 until the batch ends, which
keeps the cache rectangular without affecting the others. The stop event is checked between tokens,
so an interruption loses at most one token step of work.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from hexrl_workers.rollout.engine import GenRequest, GenResult, SamplingParams


class TorchEngine:
    def __init__(self, model: Any, params: SamplingParams, seed: int = 0, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.params = params
        self.device = device
        self.version = 0
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed)

    def load_weights(self, tensors: dict[str, Any], version: int) -> None:
        missing, unexpected = self.model.load_state_dict(tensors, strict=False)
        if unexpected or [m for m in missing if not m.endswith("rotary_emb.inv_freq")]:
            raise ValueError(f"weights do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        self.version = version

    def _temperature(self, request: GenRequest) -> float:
        """The request's own temperature, else the engine's."""
        return self.params.temperature if request.temperature is None else request.temperature

    def _sample(self, logits: torch.Tensor, temps: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """One token per row at that row's temperature (≤ 0: greedy), and its tempered log-prob."""
        if len(set(temps)) > 1:
            return self._sample_mixed(logits, temps)
        t = temps[0]
        if t <= 0:
            logp = torch.log_softmax(logits.float(), dim=-1)
            tok = logp.argmax(dim=-1)
            return tok, logp.gather(-1, tok[:, None])[:, 0]
        return self._draw(torch.log_softmax(logits.float() / t, dim=-1))

    def _sample_mixed(self, logits: torch.Tensor, temps: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of different temperatures: every row is drawn, greedy rows then take their argmax instead."""
        t = torch.tensor(temps, dtype=torch.float32, device=logits.device)
        greedy = t <= 0
        logp = torch.log_softmax(logits.float() / torch.where(greedy, torch.ones_like(t), t)[:, None], dim=-1)
        tok, _ = self._draw(logp)
        tok = torch.where(greedy, logp.argmax(dim=-1), tok)
        return tok, logp.gather(-1, tok[:, None])[:, 0]

    def _draw(self, logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A token drawn from exp(logp) (nucleus-truncated when topP < 1) and its untruncated log-prob."""
        probs = logp.exp()
        if self.params.top_p < 1.0:
            sp, idx = probs.sort(dim=-1, descending=True)
            # keep a token when the mass strictly before it is below top_p (the first is always kept)
            keep = (sp.cumsum(-1) - sp) < self.params.top_p
            sp = sp * keep
            choice = torch.multinomial(sp / sp.sum(-1, keepdim=True), 1, generator=self.gen)
            tok = idx.gather(-1, choice)[:, 0]
        else:
            tok = torch.multinomial(probs, 1, generator=self.gen)[:, 0]
        return tok, logp.gather(-1, tok[:, None])[:, 0]

    @torch.inference_mode()
    def generate(self, requests: list[GenRequest], stop: threading.Event | None = None) -> list[GenResult]:
        """Continue every request from its prefix, all rows decoded together (left-padded), until each has
        emitted EOS or its max_new_tokens, or `stop` is set (then the unfinished ones are marked interrupted)."""
        out, active = self._start(requests)
        if not active:
            return out
        eos, pad = self.params.eos_id, self.params.pad_id
        temps = [self._temperature(requests[i]) for i in active]
        ids, mask, pos = self._left_padded([requests[i].prompt_tokens + requests[i].prefix_tokens for i in active])
        res = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        past, logits = res.past_key_values, res.logits[:, -1, :]
        alive = torch.ones(len(active), dtype=torch.bool)
        next_pos = pos[:, -1] + 1
        budget = max(requests[i].max_new_tokens - len(requests[i].prefix_tokens) for i in active)
        for _ in range(budget):
            if stop is not None and stop.is_set():
                for i in active:
                    if not out[i].finished:
                        out[i].interrupted = True
                return out
            tok, lp = self._sample(logits, temps)
            for row, i in enumerate(active):
                if not alive[row]:
                    continue
                t = int(tok[row])
                out[i].tokens.append(t)
                out[i].logprobs.append(float(lp[row]))
                out[i].versions.append(self.version)
                if t == eos or len(out[i].tokens) >= requests[i].max_new_tokens:
                    out[i].finished = t == eos
                    alive[row] = False
            if not bool(alive.any()):
                break
            feed = torch.where(alive.to(self.device), tok, torch.full_like(tok, pad))
            mask = torch.cat([mask, alive.to(self.device, torch.long)[:, None]], dim=1)
            res = self.model(input_ids=feed[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                             past_key_values=past, use_cache=True)
            past, logits = res.past_key_values, res.logits[:, -1, :]
            next_pos = next_pos + 1
        return out

    def _start(self, requests: list[GenRequest]) -> tuple[list[GenResult], list[int]]:
        """(a result per request holding its prefix, the indices still to decode): a prefix that already ends in
        EOS or fills max_new_tokens is done before any forward pass."""
        eos = self.params.eos_id
        out = [GenResult(list(r.prefix_tokens), list(r.prefix_logprobs), list(r.prefix_versions), False)
               for r in requests]
        active: list[int] = []
        for i, r in enumerate(requests):
            if (r.prefix_tokens and r.prefix_tokens[-1] == eos) or len(r.prefix_tokens) >= r.max_new_tokens:
                out[i].finished = bool(r.prefix_tokens) and r.prefix_tokens[-1] == eos
            else:
                active.append(i)
        return out, active

    def _left_padded(self, ctx: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids, attention mask, position ids) of the contexts right-aligned in one batch, on the device."""
        width = max(len(c) for c in ctx)
        ids = torch.full((len(ctx), width), self.params.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ctx), width), dtype=torch.long)
        for row, c in enumerate(ctx):
            ids[row, width - len(c):] = torch.tensor(c)
            mask[row, width - len(c):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)
