"""Measure this node and write a calibration profile: the cost model's decode, prefill and training rates corrected.

A short benchmark (hexrl_workers.calibrate: a random Llama-style model of the given shape, built here, no
download) times prefill, decode and training tokens/s on --device; the GPU catalog's numbers for --gpu give
the cost model's predictions of the same work (hexrl.sched.costmodel.phase_rates); the fit
(hexrl.sched.calibration) turns each repetition into an observation and writes, per phase, the factor (with
its interval and confidence), the measured and predicted rates. `hexrl plan --profile FILE` and
`hexrl simulate --profile FILE` then plan with the corrected rates.

Example: `hexrl calibrate --gpu L4 --out l4.yaml` on an L4 node (add --device cuda --dtype bf16 there); on a
CPU-only machine the profile says how far this CPU, standing in for --gpu, is from the catalog.

Exit status: 0 written; 1 bad input or the file cannot be written (the message says why).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import typer

from hexrl.commands._inputs import EXIT_BAD_INPUT

_DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def _fail(msg: str) -> NoReturn:
    typer.echo(f"hexrl calibrate: {msg}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def _check_shape(hidden_size: int, heads: int, kv_heads: int, dtype: str, device: str) -> None:
    if hidden_size % heads:
        _fail(f"--hidden-size {hidden_size} must be a multiple of --heads {heads}")
    if heads % kv_heads:
        _fail(f"--kv-heads {kv_heads} must divide --heads {heads}")
    if dtype not in _DTYPE_BYTES:
        _fail(f"--dtype must be one of {', '.join(_DTYPE_BYTES)}, not {dtype!r}")
    if device != "cpu" and not device.startswith("cuda"):
        _fail(f"--device must be cpu or cuda[:N], not {device!r}")


def _workload(shape: Any, bench: Any, parameters: int) -> Any:
    """The cost model's view of the benchmark: `batch` sequences, fixed lengths, one GPU."""
    from hexrl.sched.costmodel import Workload

    return Workload(
        parameters=float(parameters), layers=shape.layers, hidden=shape.hidden_size, kv_heads=shape.kv_heads,
        head_dim=shape.head_dim, vocab=shape.vocab, dtype_bytes=_DTYPE_BYTES[bench.dtype],
        prompt_tokens=bench.prompt_tokens, mean_new_tokens=bench.new_tokens, max_new_tokens=bench.new_tokens,
        distribution="fixed", group_size=1, prompts_per_step=bench.batch, max_policy_lag=0,
    )


def _document(gpu: str, shape: Any, bench: Any, result: Any) -> tuple[dict[str, Any], Any]:
    """The profile document and the fit, from the benchmark's measurements and the catalog's predictions."""
    from dataclasses import asdict

    from pydantic.alias_generators import to_camel

    from hexrl.sched import DEFAULT_CATALOG, CostModelSettings
    from hexrl.sched.calibration import Observation, fit_calibration, profile_document
    from hexrl.sched.costmodel import phase_rates

    rates = phase_rates(DEFAULT_CATALOG.get(gpu), _workload(shape, bench, result.parameters), bench.batch,
                        CostModelSettings())
    predicted = {"decode": rates.decode, "prefill": rates.prefill, "train": rates.train}
    fit = fit_calibration(
        Observation(gpu, m.phase, predicted[m.phase], m.tokens_per_second, m.seconds) for m in result.measurements
    )
    benchmark = {
        "device": result.device, "dtype": result.dtype, "threads": result.threads, "torch": result.torch_version,
        "parameters": result.parameters, "shape": {to_camel(k): v for k, v in asdict(shape).items()}, "batch": bench.batch,
        "promptTokens": bench.prompt_tokens, "newTokens": bench.new_tokens, "recompute": bench.recompute,
        "measurements": [{"phase": m.phase, "tokens": m.tokens, "seconds": m.seconds} for m in result.measurements],
    }
    doc = profile_document(fit, benchmark)
    for entry, est in zip(doc["factors"], fit.estimates, strict=True):
        entry["predictedTokensPerSecond"] = predicted[est.phase]
        # the kept observations' mean log rate, weighted as in the fit: predicted × ratio
        entry["measuredTokensPerSecond"] = predicted[est.phase] * est.ratio
    return doc, fit


def _write(out: Path, doc: dict[str, Any]) -> None:
    import yaml

    text = json.dumps(doc, indent=2) + "\n" if out.suffix.lower() == ".json" else yaml.safe_dump(doc, sort_keys=False)
    try:
        out.write_text(text)
    except OSError as exc:
        _fail(f"cannot write {str(out)!r}: {exc.strerror or exc}")


def _summary(doc: dict[str, Any], out: Path) -> None:
    for e in doc["factors"]:
        typer.echo(
            f"{e['gpu']} {e['phase']:7}: measured {e['measuredTokensPerSecond']:,.1f} tokens/s, predicted "
            f"{e['predictedTokensPerSecond']:,.1f}; factor {e['factor']:.4g} "
            f"[{e['interval'][0]:.4g}, {e['interval'][1]:.4g}], confidence {e['confidence']:.2f}, "
            f"{e['observations']} runs ({e['rejected']} rejected)"
        )
    typer.echo(f"wrote {out}")


def calibrate_command(
    gpu: str = typer.Option(..., "--gpu", help="GPU catalog type this node is (or stands in for), e.g. L4."),
    out: Path = typer.Option(..., "--out", "-o", help="Profile file to write (.yaml, or .json for JSON)."),
    layers: int = typer.Option(2, "--layers", min=1, max=64, help="Transformer layers of the measured shape."),
    hidden_size: int = typer.Option(64, "--hidden-size", min=8, max=8192, help="Residual width."),
    heads: int = typer.Option(4, "--heads", min=1, max=128, help="Attention (query) heads."),
    kv_heads: int = typer.Option(2, "--kv-heads", min=1, max=128, help="Key/value heads (divide --heads)."),
    intermediate_size: int = typer.Option(128, "--intermediate-size", min=8, max=65536, help="MLP width."),
    vocab: int = typer.Option(512, "--vocab", min=16, max=262144, help="Vocabulary size."),
    batch: int = typer.Option(8, "--batch", min=1, max=1024, help="Sequences decoded and trained together."),
    prompt_tokens: int = typer.Option(64, "--prompt-tokens", min=1, max=32768, help="Prompt length."),
    new_tokens: int = typer.Option(64, "--new-tokens", min=1, max=32768, help="Tokens generated per sequence."),
    seconds: float = typer.Option(1.0, "--seconds", min=0.0, max=600.0, help="Timed seconds per phase."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 | bf16 | fp16 (fp32 on CPU)."),
    device: str = typer.Option("cpu", "--device", help="cpu, or cuda[:N] on a GPU node."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the weights and token ids."),
) -> None:
    from hexrl.sched import DEFAULT_CATALOG, CostModelSettings

    name = DEFAULT_CATALOG.canonical(gpu)
    if name is None:
        _fail(f"--gpu {gpu!r} is not in the GPU catalog; known types: {', '.join(DEFAULT_CATALOG.names)}")
    _check_shape(hidden_size, heads, kv_heads, dtype, device)
    from hexrl_workers.calibrate import BenchSettings, BenchShape, run_benchmark

    shape = BenchShape(layers=layers, hidden_size=hidden_size, attention_heads=heads, kv_heads=kv_heads,
                       intermediate_size=intermediate_size, vocab=vocab)
    bench = BenchSettings(batch=batch, prompt_tokens=prompt_tokens, new_tokens=new_tokens, seconds=seconds,
                          dtype=dtype, device=device, seed=seed, recompute=CostModelSettings().recompute)
    try:
        result = run_benchmark(shape, bench)
    except (RuntimeError, MemoryError) as exc:  # out of memory, no CUDA device, …
        _fail(f"the benchmark failed on {device}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
              "choose a smaller shape or another --device")
    doc, _ = _document(name, shape, bench, result)
    _write(out, doc)
    _summary(doc, out)
