"""Export a trainer checkpoint (or the trainer's final weights) as a Hugging Face model directory.

The directory is the standard layout that `transformers.AutoModelForCausalLM.from_pretrained`,
`AutoTokenizer.from_pretrained` and vLLM's `LLM(dir)` load: config.json, model.safetensors (sharded with an
index when large), generation_config.json and the tokenizer files, plus `hexrl_export.json` saying which
checkpoint it came from.

How the model is rebuilt: the job's own way (`modeling.build_model` from the spec's model section), then
only the model's tensors are read from the checkpoint (`checkpoint.load_model`; the optimizer state is left
on disk). Checkpoints record the job spec in meta.json; an older one without it needs the RLJob (`job_spec`).
The tokenizer comes from the source model directory; the built-in `tiny-random` model's `CharTokenizer` is
written as an equivalent `PreTrainedTokenizerFast` (same ids for every text it accepts, BOS prepended,
specials skipped on decode), so the directory is self-contained.

The directory is written next to its destination under a temporary name and renamed into place, so a
reader never sees half an export; an existing destination is replaced only when it is itself an export.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from hexrl.api.models import ModelSource, RLJobSpec
from hexrl_workers.modeling import ModelSourceError, build_model, model_dir
from hexrl_workers.tasks import CHAR_ALPHABET, CharTokenizer
from hexrl_workers.trainer import checkpoint

PROVENANCE = "hexrl_export.json"
"""File in the export saying which checkpoint, step and model it came from (also marks a directory as an export)."""
CHAR_SPECIALS = ("<pad>", "<s>", "</s>")
"""Token strings of CharTokenizer's ids 0, 1, 2 in the exported tokenizer."""


class ExportError(ValueError):
    """The checkpoint cannot be exported or the destination cannot be written; the message says what to do."""


# ------------------------------------------------------------------------------------------ checkpoint


def resolve_checkpoint(path: str | Path) -> Path:
    """A step directory as given, or the newest intact one under a checkpoint root; refuses damaged ones."""
    p = Path(path)
    if not p.is_dir():
        raise ExportError(f"checkpoint {str(p)!r} does not exist or is not a directory; pass a step-* directory "
                          "or the checkpoint directory that holds them")
    if (p / checkpoint.META).is_file():
        found = checkpoint.problems(p)
        if found:
            raise ExportError(f"checkpoint {p} is damaged ({'; '.join(found)}); export an older step-* directory "
                              "or pass the checkpoint directory to take the newest intact one")
        return p
    chosen = checkpoint.latest_intact(p)
    if chosen is None:
        raise ExportError(f"{p} holds no intact checkpoint (no step-* directory with a meta.json whose files "
                          "all match); pass the directory the trainer wrote its checkpoints to")
    return chosen


def checkpoint_spec(ck: Path, job_spec: RLJobSpec | None) -> RLJobSpec:
    """The spec to rebuild the model from: `job_spec` if given, else the one recorded in meta.json."""
    if job_spec is not None:
        return job_spec
    recorded = checkpoint.read_meta(ck).get("spec")
    if recorded is None:
        raise ExportError(f"checkpoint {ck} was written before checkpoints recorded the job spec; pass the RLJob "
                          "that wrote it with --job FILE")
    try:
        return RLJobSpec.model_validate(recorded)
    except ValueError as exc:
        raise ExportError(f"the job spec recorded in {ck / checkpoint.META} does not validate with this version "
                          f"of hexrl ({str(exc).splitlines()[0]}); pass the RLJob with --job FILE") from None


def with_model_dir(spec: RLJobSpec, directory: str | None) -> RLJobSpec:
    """`spec` with its model read from `directory` (a PVC path such as /models/… is not mounted here)."""
    if directory is None:
        return spec
    out = spec.model_copy(deep=True)
    out.model.source = ModelSource(local_path=directory)
    return out


def load_checkpoint_model(ck: Path, spec: RLJobSpec) -> Any:
    """The job's model with the checkpoint's weights, in eval mode (what a resumed trainer would hold)."""
    model = build_model(spec)
    try:
        checkpoint.load_model(ck, model)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ExportError(f"checkpoint {ck} does not fit the model {spec.model.name!r} built from the spec "
                          f"({str(exc).splitlines()[0]}); pass the RLJob that wrote it with --job FILE") from None
    return model.eval()


# --------------------------------------------------------------------------------------------- writing


def char_tokenizer_fast() -> Any:
    """`CharTokenizer` as a `PreTrainedTokenizerFast`: one id per character, BOS prepended, same ids."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    char = CharTokenizer()
    vocab = {tok: i for i, tok in enumerate(CHAR_SPECIALS)}
    vocab.update({c: i + len(CHAR_SPECIALS) for i, c in enumerate(CHAR_ALPHABET)})
    assert vocab[CHAR_SPECIALS[char.bos_id]] == char.bos_id and len(vocab) == char.size
    core = Tokenizer(models.WordLevel(vocab, unk_token=CHAR_SPECIALS[char.pad_id]))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    bos = CHAR_SPECIALS[char.bos_id]
    core.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, char.bos_id)])
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=bos, eos_token=CHAR_SPECIALS[char.eos_id],
                                   pad_token=CHAR_SPECIALS[char.pad_id])


def _tokenizer(spec: RLJobSpec) -> Any:
    if spec.model.source.builtin is not None:
        return char_tokenizer_fast()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir(spec)), local_files_only=True)


def _generation_config(spec: RLJobSpec, model: Any) -> Any:
    """The source model's generation_config.json when it has one, else one derived from the model config."""
    from transformers import GenerationConfig

    source = model_dir(spec) if spec.model.source.builtin is None else None
    if source is not None and (Path(source) / "generation_config.json").is_file():
        return GenerationConfig.from_pretrained(source, local_files_only=True)
    config = GenerationConfig.from_model_config(model.config)
    if config.pad_token_id is None:
        config.pad_token_id = model.config.pad_token_id
    return config


def _replaceable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / PROVENANCE).is_file():
        raise ExportError(f"{out} exists, is not empty and is not a hexrl export; choose a new directory or empty it")


def save_hf(model: Any, spec: RLJobSpec, out: str | Path, provenance: dict[str, Any]) -> Path:
    """Write `model` (with the spec's tokenizer and a generation config) as a HF directory at `out`."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one "wrote DIR" line, not a shard progress bar per export
    out = Path(out).absolute()
    _replaceable(out)
    tmp = out.parent / f".tmp-{out.name}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        model.generation_config = _generation_config(spec, model)
        model.save_pretrained(tmp, safe_serialization=True)
        _tokenizer(spec).save_pretrained(tmp)
        (tmp / PROVENANCE).write_text(json.dumps({**provenance, "model": spec.model.name}, indent=1) + "\n")
        _swap_in(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"cannot write the export to {out}: {exc.strerror or exc}") from None
    return out


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename `tmp` to `out`; a previous export at `out` is moved aside first and removed after."""
    aside = out.parent / f".old-{out.name}"
    shutil.rmtree(aside, ignore_errors=True)
    if out.exists():
        os.rename(out, aside)
    os.rename(tmp, out)
    shutil.rmtree(aside, ignore_errors=True)


def export_checkpoint(path: str | Path, out: str | Path, job_spec: RLJobSpec | None = None,
                      source_dir: str | None = None) -> Path:
    """`hexrl export`: the checkpoint at `path` (step dir or root) as a HF directory at `out`."""
    ck = resolve_checkpoint(path)
    spec = with_model_dir(checkpoint_spec(ck, job_spec), source_dir)
    try:
        model = load_checkpoint_model(ck, spec)
    except ModelSourceError as exc:  # the source directory (tokenizer, config) is not on this machine
        raise ExportError(f"{exc}; or pass --model-dir with the source model directory") from None
    meta = checkpoint.read_meta(ck)
    return save_hf(model, spec, out, {"checkpoint": str(ck.absolute()), "step": meta.get("step"),
                                      "policyVersion": meta.get("policyVersion")})


def export_state(state: dict[str, Any], spec: RLJobSpec, out: str | Path, provenance: dict[str, Any]) -> Path:
    """The trainer's final export: a full state dict (rank 0's gather) into a fresh model, then `save_hf`."""
    model = build_model(spec)
    model.load_state_dict(state, strict=True)
    return save_hf(model.eval(), spec, out, provenance)
