"""Build the job's causal LM and tokenizer from `spec.model`, identically on every worker.

- `source.builtin: tiny-random`: a Llama-style `transformers` config from `model.shape`, random init
  from `algorithm.seed` (every process builds the same version-0 weights), and the built-in
  `CharTokenizer`. Nothing is downloaded.
- `source.localPath` (or `source.pvc` + `path`, mounted at `MODEL_MOUNT_DIR`): a local HF model
  directory loaded with `local_files_only=True`; its tokenizer from the same directory.
- `source.uri`: not fetched by the workers; a clear error says to stage it on a PVC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hexrl.api.models import RLJobSpec
from hexrl_workers.tasks import CharTokenizer, HFTokenizer, Tokenizer

MODEL_MOUNT_DIR = "/models"
"""Where the operator mounts `model.source.pvc` in worker pods."""
BUILTINS = ("tiny-random",)
_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class ModelSourceError(ValueError):
    """The model cannot be found or built; the message says what to change."""


def model_dir(spec: RLJobSpec) -> str | None:
    src = spec.model.source
    if src.local_path:
        return src.local_path
    if src.pvc:
        return str(Path(MODEL_MOUNT_DIR) / (src.path or "").lstrip("/"))
    if src.uri:
        raise ModelSourceError(
            f"model.source.uri {src.uri!r} is not downloaded by the workers; copy the model to a PVC "
            "and use model.source.pvc + path (or localPath for `hexrl run`)"
        )
    return None


def check_model_source(spec: RLJobSpec) -> None:
    """Fail early with a readable message (used by `hexrl run` before starting anything)."""
    src = spec.model.source
    if src.builtin is not None:
        if src.builtin not in BUILTINS:
            raise ModelSourceError(f"unknown model.source.builtin {src.builtin!r}; available: {list(BUILTINS)}")
        need = CharTokenizer().size
        if spec.model.shape.vocab < need:
            raise ModelSourceError(
                f"model.shape.vocab {spec.model.shape.vocab} is smaller than the built-in tokenizer ({need} ids)"
            )
        return
    path = model_dir(spec)
    if path is None or not Path(path).is_dir():
        raise ModelSourceError(
            f"model directory {path!r} does not exist; set model.source.localPath to a HF model directory "
            "(config.json, weights, tokenizer files)"
        )
    if not (Path(path) / "config.json").is_file():
        raise ModelSourceError(f"{path!r} has no config.json; it is not a Hugging Face model directory")


def build_tokenizer(spec: RLJobSpec) -> Tokenizer:
    check_model_source(spec)
    if spec.model.source.builtin is not None:
        return CharTokenizer()
    return HFTokenizer(str(model_dir(spec)))


def build_model(spec: RLJobSpec, max_positions: int = 4096) -> Any:
    """The initial (version 0) model, in train mode, on CPU."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    check_model_source(spec)
    dtype = getattr(torch, _DTYPES[str(spec.model.shape.dtype)])
    if spec.model.source.builtin is not None:
        sh = spec.model.shape
        heads = sh.attention_heads or max(1, sh.hidden_size // sh.head_dim)
        cfg = LlamaConfig(
            vocab_size=sh.vocab,
            hidden_size=sh.hidden_size,
            intermediate_size=sh.intermediate_size or 4 * sh.hidden_size,
            num_hidden_layers=sh.layers,
            num_attention_heads=heads,
            num_key_value_heads=sh.kv_heads,
            head_dim=sh.head_dim,
            max_position_embeddings=max_positions,
            tie_word_embeddings=False,
            bos_token_id=CharTokenizer.bos_id,
            eos_token_id=CharTokenizer.eos_id,
            pad_token_id=CharTokenizer.pad_id,
        )
        # The same seed on every process gives every worker the same version-0 weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.algorithm.seed)
            model = LlamaForCausalLM(cfg)
        return model.to(dtype)
    return AutoModelForCausalLM.from_pretrained(str(model_dir(spec)), local_files_only=True, torch_dtype=dtype)
