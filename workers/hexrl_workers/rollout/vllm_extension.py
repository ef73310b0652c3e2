"""Methods mixed into vLLM's GPU worker processes (engine argument `worker_extension_cls`), called from
the rollout worker through `AsyncLLM.collective_rpc` on every tensor-parallel rank.

- `hexrl_load_weights(path)`: load a pulled weight version in place. The rollout worker saves the
  version's tensors (views into the pulled blob, one storage) to a file in /dev/shm; each rank maps it
  (`torch.load(mmap=True)`, no copy in host memory) and hands the named tensors to the model's own
  `load_weights`, which fuses q/k/v and gate/up and keeps only this rank's shard.
- `hexrl_set_temperature(T)`: make the model's logits the tempered ones, logits / T. The engine then
  samples with vLLM's temperature 1 (top-p applied to the tempered distribution: the same draw as vLLM at
  temperature T) and asks for `raw_logprobs`, which are then log_softmax(logits / T) — untruncated and
  tempered, exactly what the trainer recomputes. (vLLM's own "processed" log-probs are renormalised over
  the top-p nucleus, and its raw ones are untempered.) T = 0 (greedy) keeps the raw logits.

Imported only inside vLLM's worker processes (GPU images).
"""

from __future__ import annotations

from typing import Any


class HexrlWorkerExtension:
    """The attributes used here (`model_runner.get_model()`, the model's `load_weights` and
    `compute_logits`) are checked against the pinned vLLM by tests/workers/test_vllm_api.py."""

    model_runner: Any

    def hexrl_load_weights(self, path: str) -> int:
        import torch

        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        model = self.model_runner.get_model()
        model.load_weights(weights=iter(state.items()))
        return len(state)

    def hexrl_set_temperature(self, temperature: float) -> None:
        model = self.model_runner.get_model()
        original = getattr(model, "_hexrl_compute_logits", None) or model.compute_logits
        model._hexrl_compute_logits = original
        if temperature <= 0 or temperature == 1.0:
            model.compute_logits = original
            return

        def tempered(*args: Any, **kwargs: Any) -> Any:
            logits = original(*args, **kwargs)
            return None if logits is None else logits / temperature

        model.compute_logits = tempered
