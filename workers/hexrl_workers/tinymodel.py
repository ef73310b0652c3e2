"""A tiny Hugging Face model directory built on this machine: for CPU examples and tests, no download.

What a researcher would otherwise fetch from a hub (Qwen2.5-style: config, safetensors weights, a byte-level
BPE tokenizer with a ChatML chat template) is written from scratch here, so the real code paths —
`AutoModelForCausalLM.from_pretrained`, `AutoTokenizer.from_pretrained`, `apply_chat_template`, vLLM's
loader — run on it exactly as on a real model, only small and untrained:

- **tokenizer**: byte-level BPE (every byte is a token, so any text encodes) trained by the `tokenizers`
  library on `corpus` (default: `DEFAULT_CORPUS`, arithmetic word-problem text) up to `vocab_size` ids, plus
  the specials `<|endoftext|>` (pad), `<|im_start|>` and `<|im_end|>` (end of a turn: the EOS); the chat
  template is ChatML, the format of Qwen2.5's instruct models.
- **model**: `Qwen2ForCausalLM` with `layers` × `hidden_size`, random weights from `seed` (the same seed gives
  the same bytes), saved as safetensors.

`hexrl tiny-model --out DIR` writes one; `TinyModelSettings` holds the knobs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # transformers is imported where it is used: importing this module stays cheap
    from transformers import PreTrainedTokenizerFast, Qwen2Config

PAD = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIALS = (PAD, IM_START, IM_END)
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
"""ChatML: `<|im_start|>role\\ncontent<|im_end|>\\n` per message, then the assistant's header when asked."""

DEFAULT_CORPUS = "\n".join(
    [
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
        "How many clips did Natalia sell altogether in April and May? #### 72",
        "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting.",
        "What is the value of x if 3x + 5 = 20? The answer is \\boxed{5}.",
        "Compute \\frac{1}{2} + \\frac{1}{3}. The answer is \\boxed{\\frac{5}{6}}.",
        "Let's think step by step. First, add the numbers. Then multiply the result by two.",
        "0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 + - * / = ( ) % $ . , ? ! : ;",
        "The total is the sum of the parts. Each box holds the same number of apples, oranges and pears.",
        "You are a helpful assistant. Solve the problem and put the final answer after ####.",
    ]
)
"""Text the default tokenizer is trained on: enough for merges over digits, math notation and common words."""


@dataclass(frozen=True)
class TinyModelSettings:
    """Shape of the tiny model and its tokenizer."""

    vocab_size: int = 512
    """Tokenizer size including the 256 byte tokens and the 3 specials (ids). 512 keeps the embedding small."""
    hidden_size: int = 64
    """Residual width. 64 with 2 layers is ~0.1 M parameters besides the embeddings: a training step on CPU
    takes milliseconds."""
    layers: int = 2
    """Transformer layers."""
    attention_heads: int = 4
    """Query heads (head dim = hidden_size / attention_heads)."""
    kv_heads: int = 2
    """Key/value heads (grouped-query attention, as in Qwen2.5)."""
    intermediate_size: int = 128
    """MLP width."""
    max_positions: int = 2048
    """Longest sequence (prompt + response) the model accepts, tokens."""
    seed: int = 0
    """Seed of the random initial weights."""


def train_tokenizer(corpus: str, vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE `PreTrainedTokenizerFast` with the ChatML specials and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + len(SPECIALS):
        raise ValueError(f"vocab_size {vocab_size} is below the 256 byte tokens plus {len(SPECIALS)} specials")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus.splitlines(), trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token=PAD, eos_token=IM_END, unk_token=None)
    tok.chat_template = CHATML_TEMPLATE
    return tok


def build_config(settings: TinyModelSettings, tokenizer: PreTrainedTokenizerFast) -> Qwen2Config:
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.layers,
        num_attention_heads=settings.attention_heads,
        num_key_value_heads=settings.kv_heads,
        max_position_embeddings=settings.max_positions,
        tie_word_embeddings=False,
        bos_token_id=_token_id(tokenizer, IM_START),
        eos_token_id=_token_id(tokenizer, IM_END),
        pad_token_id=_token_id(tokenizer, PAD),
    )


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    """The id of one token (typed as possibly a list, which only a list of tokens gives)."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    assert isinstance(token_id, int)
    return token_id


def write_tiny_model(out: str | Path, settings: TinyModelSettings = TinyModelSettings(),
                     corpus: str = DEFAULT_CORPUS) -> Path:
    """Write config.json, model.safetensors, the tokenizer files and generation_config.json into `out`."""
    import torch
    from transformers import Qwen2ForCausalLM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(corpus, settings.vocab_size)
    config = build_config(settings, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = config.pad_token_id
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    for f in out.iterdir():  # readable by the workers' user when copied onto a volume (safetensors writes 0600)
        f.chmod(0o644)
    return out


def model_shape(path: str | Path) -> dict[str, object]:
    """`spec.model.shape` (camelCase) of a saved model directory, for writing an RLJob that uses it."""
    cfg = json.loads((Path(path) / "config.json").read_text())
    heads = int(cfg["num_attention_heads"])
    hidden = int(cfg["hidden_size"])
    layers, inter, vocab = int(cfg["num_hidden_layers"]), int(cfg["intermediate_size"]), int(cfg["vocab_size"])
    params = 2 * vocab * hidden + layers * (4 * hidden * hidden + 3 * hidden * inter)
    return {"parameters": float(params), "layers": layers, "hiddenSize": hidden,
            "kvHeads": int(cfg["num_key_value_heads"]), "headDim": hidden // heads, "vocab": vocab,
            "attentionHeads": heads, "intermediateSize": inter, "dtype": "fp32"}
