"""The tiny local HF model: loads through transformers' own entry points, its chat template is ChatML, any
text round-trips through its tokenizer, the same seed gives the same weights, and the job's model loader and
torch engine run on it."""

from __future__ import annotations

import subprocess

import pytest
import torch
from workers_builders import PYTHON, tiny_spec

from hexrl_workers.modeling import build_model, build_tokenizer
from hexrl_workers.rollout.engine import GenRequest, SamplingParams
from hexrl_workers.rollout.torch_engine import TorchEngine
from hexrl_workers.tinymodel import TinyModelSettings, model_shape, write_tiny_model

pytestmark = pytest.mark.workers


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_loads_with_transformers_and_applies_chatml(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, local_files_only=True)
    text = tok.apply_chat_template([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
                                   tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>" and model.config.eos_token_id == tok.eos_token_id
    assert model.config.vocab_size == len(tok) == TinyModelSettings().vocab_size
    weird = "Ünïcode ✓ 数学 \\boxed{\\frac{3}{4}} #### 1,234\n\ttabs"
    assert tok.decode(tok.encode(weird, add_special_tokens=False)) == weird


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, tiny_dir):
    from safetensors.torch import load_file

    again = write_tiny_model(tmp_path / "again")
    other = write_tiny_model(tmp_path / "other", TinyModelSettings(seed=1))
    a, b, c = (load_file(str(d / "model.safetensors")) for d in (tiny_dir, again, other))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert (again / "tokenizer.json").read_text() == (tiny_dir / "tokenizer.json").read_text()


def test_the_jobs_loader_and_torch_engine_run_on_it(tiny_dir):
    spec = tiny_spec(**{"model.source": {"localPath": str(tiny_dir)}, "model.shape": model_shape(tiny_dir)})
    tok = build_tokenizer(spec)
    model = build_model(spec)
    engine = TorchEngine(model, SamplingParams(temperature=1.0, eos_id=tok.eos_id, pad_id=tok.pad_id), seed=3)
    [res] = engine.generate([GenRequest(tok.encode("What is 2+3?"), 8)])
    assert 1 <= len(res.tokens) <= 8 and len(res.logprobs) == len(res.tokens)
    assert all(0 <= t < spec.model.shape.vocab for t in res.tokens)


def test_cli_writes_a_directory_and_prints_its_shape(tmp_path):
    out = subprocess.run([PYTHON, "-m", "hexrl.cli", "tiny-model", "--out", str(tmp_path / "m"), "--layers", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "layers: 1" in out.stdout and (tmp_path / "m" / "model.safetensors").is_file()
    bad = subprocess.run([PYTHON, "-m", "hexrl.cli", "tiny-model", "--out", str(tmp_path / "n"), "--hidden-size", "30"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "multiple of 4" in bad.stderr
