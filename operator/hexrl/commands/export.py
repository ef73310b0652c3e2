"""Export a trainer checkpoint as a Hugging Face model directory (safetensors, tokenizer, generation config).

Example: `hexrl export /tmp/hexrl-tiny-arith/checkpoints --out /tmp/tiny-arith-hf`. CHECKPOINT is a `step-*`
directory, or the checkpoint directory itself (then its newest intact step). The model is rebuilt from the job
spec recorded in the checkpoint (`--job FILE` for checkpoints written before hexrl recorded it); the tokenizer
is copied from the source model directory (`--model-dir` when the job's model lived on a PVC that is not
mounted here). The result loads with `AutoModelForCausalLM.from_pretrained(DIR)` and `vllm.LLM(DIR)`.

Exit status: 0 written; 1 bad input (a missing or damaged checkpoint, a destination that is not an export, a
model that does not fit; the message says what to do); 2 usage.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from hexrl.commands._inputs import EXIT_BAD_INPUT, InputError, load_job


def export_command(
    checkpoint_path: Path = typer.Argument(..., metavar="CHECKPOINT",
                                           help="A step-* directory, or the checkpoint directory (newest intact)."),
    out: Path = typer.Option(..., "--out", help="Directory to write (replaced only if it is an earlier export)."),
    job_file: Path | None = typer.Option(
        None, "--job", help="The RLJob that wrote the checkpoint (default: the spec recorded in the checkpoint).",
    ),
    model_dir: Path | None = typer.Option(
        None, "--model-dir", help="The source HF model directory (default: the job's model.source).",
    ),
) -> None:
    job_spec = None
    if job_file is not None:
        try:
            job_spec = load_job(job_file).spec
        except InputError as exc:
            typer.echo(f"hexrl export: {exc}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from hexrl_workers.export import ExportError, export_checkpoint

    try:
        path = export_checkpoint(checkpoint_path, out, job_spec, str(model_dir) if model_dir else None)
    except ExportError as exc:
        typer.echo(f"hexrl export: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    typer.echo(f"wrote {path}")
