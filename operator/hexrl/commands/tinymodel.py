"""Write a tiny, randomly initialised Hugging Face model directory (Qwen2-style, ChatML tokenizer), no download.

Example: `hexrl tiny-model --out /tmp/tiny-qwen` writes config.json, model.safetensors and the tokenizer
files, then prints the `model.shape` block for an RLJob that uses it (`model.source.localPath: /tmp/tiny-qwen`
for `hexrl run`, or copy the directory onto a PVC). For CPU examples and tests: it runs the same code paths as
a real model (from_pretrained, the chat template) and learns nothing useful at this size.

Exit status: 0 written; 1 the directory cannot be written (the message says why).
"""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from hexrl.commands._inputs import EXIT_BAD_INPUT


def tiny_model_command(
    out: Path = typer.Option(..., "--out", help="Directory to write (created; existing files are replaced)."),
    layers: int = typer.Option(2, "--layers", min=1, max=64, help="Transformer layers."),
    hidden_size: int = typer.Option(64, "--hidden-size", min=8, max=4096, help="Residual width (a multiple of 4)."),
    vocab_size: int = typer.Option(512, "--vocab-size", min=259, max=65536, help="Tokenizer size."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights."),
) -> None:
    from hexrl_workers.tinymodel import TinyModelSettings, model_shape, write_tiny_model

    if hidden_size % 4:
        typer.echo(f"hexrl tiny-model: --hidden-size {hidden_size} must be a multiple of 4 (4 attention heads)",
                   err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    settings = TinyModelSettings(vocab_size=vocab_size, hidden_size=hidden_size, layers=layers,
                                 intermediate_size=2 * hidden_size, seed=seed)
    try:
        path = write_tiny_model(out, settings)
    except OSError as exc:
        typer.echo(f"hexrl tiny-model: cannot write {out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    typer.echo(f"wrote {path}; its model.shape:")
    typer.echo(yaml.safe_dump({"shape": model_shape(path)}, sort_keys=False).rstrip())
