"""The CPU example of a real workload runs end to end with `hexrl run`: a tiny local HF model (written by
`hexrl tiny-model`), the GSM8K-format sample through the column mapping and the chat template, the math-verify
reward, a held-out evaluation, checkpoints, TensorBoard curves and the final Hugging Face export (which loads)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from workers_builders import PYTHON, REPO

from hexrl_workers.tinymodel import write_tiny_model

pytestmark = [pytest.mark.workers, pytest.mark.slow]
EXAMPLE = REPO / "manifests" / "examples" / "rljob-gsm8k-tiny.yaml"


def test_the_gsm8k_cpu_example_runs_end_to_end(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = write_tiny_model(tmp_path / "tiny-qwen")
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["spec"]["model"]["source"] = {"localPath": str(model)}
    raw["spec"]["checkpoint"]["path"] = str(tmp_path / "ck")
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(raw))
    out = subprocess.run([PYTHON, "-m", "hexrl.cli", "run", str(job), "--quiet", "--workers", "1"],
                         capture_output=True, text=True, timeout=600, cwd=REPO,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    steps = raw["spec"]["algorithm"]["totalSteps"]
    assert summary["steps"] == steps and summary["trainedSamples"] >= steps * 16, summary
    assert [e["version"] for e in summary["evaluations"]] == [0, 5], summary.get("evaluations")
    assert summary["lastEvaluation"]["prompts"] == 8
    assert list((tmp_path / "ck" / "tensorboard").rglob("events.out.tfevents.*"))
    exported = Path(summary["exportedPath"])
    AutoModelForCausalLM.from_pretrained(exported, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(exported, local_files_only=True)
    assert tok.chat_template and "<|im_start|>" in tok.apply_chat_template(
        [{"role": "user", "content": "1+1?"}], tokenize=False, add_generation_prompt=True)
