"""`hexrl export`: checkpoints written by the real trainer (built-in tiny-random and a tiny HF model) become
Hugging Face directories that transformers loads and that generate the same greedy tokens as the checkpoint's
weights loaded the job's way; bad paths, damaged checkpoints and old checkpoints without a spec are refused
with a sentence."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import torch
import yaml
from workers_builders import CREDENTIALS, PYTHON, REPO, TINY_JOB, TOKENS, tiny_spec

from hexrl.api.models import RLJobSpec
from hexrl_workers.coordinator.server import ThreadedCoordinator
from hexrl_workers.export import char_tokenizer_fast
from hexrl_workers.modeling import build_model
from hexrl_workers.runtime import build_coordinator, build_rollout_worker
from hexrl_workers.tasks import CharTokenizer
from hexrl_workers.tinymodel import model_shape, write_tiny_model
from hexrl_workers.trainer import checkpoint
from hexrl_workers.trainer.loop import Trainer, TrainerSettings

pytestmark = pytest.mark.workers

STEPS = 2
PROMPTS = ["1+2=", "3+3=", "0+1=", "2+2= "]
"""Texts both tokenizers accept (the built-in one knows only digits, + - * = and space)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _train(spec: RLJobSpec, ckdir: Path) -> Trainer:
    """The real trainer, coordinator and one rollout worker in this process, for STEPS steps."""
    server = build_coordinator(spec, CREDENTIALS)
    coord = ThreadedCoordinator(server)
    port = _free_port()
    trainer = Trainer(spec, TrainerSettings(
        coordinator_url=coord.url, token=TOKENS["trainer"], credentials=CREDENTIALS, checkpoint_dir=str(ckdir),
        total_steps=STEPS, weights_port=port, torch_threads=1, batch_wait_seconds=1.0, job_name="export-test",
    ))
    worker, _ = build_rollout_worker(spec, coord.url, f"http://127.0.0.1:{port}", TOKENS["rollout"], "w0",
                                     relay_host="127.0.0.1", torch_threads=1, credentials=CREDENTIALS)
    wt = threading.Thread(target=worker.run, daemon=True)
    wt.start()
    try:
        trainer.run()
    finally:
        trainer.close()
        worker.stop()
        wt.join(30)
        coord.close()
    return trainer


def _small(spec_overrides: dict) -> RLJobSpec:
    return tiny_spec(**{"algorithm.promptsPerStep": 2, "algorithm.groupSize": 2, "checkpoint.everySteps": 1,
                        "export.atEnd": False, "tracking.tensorboard.enabled": False, **spec_overrides})


def _greedy(model, ids: list[int], new: int = 6) -> list[int]:
    x = torch.tensor([ids])
    out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new, do_sample=False,
                         pad_token_id=model.config.pad_token_id)
    return out[0, len(ids):].tolist()


def _export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "hexrl.cli", "export", *args], capture_output=True, text=True,
                          timeout=180, cwd=REPO)


def _assert_same_greedy_tokens(ck: Path, spec: RLJobSpec, out: Path, encode) -> None:
    """The export loads with the Auto classes and generates what the checkpoint loaded the job's way does."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    job_model = build_model(spec)
    optim = torch.optim.AdamW(job_model.parameters(), lr=1e-3)
    checkpoint.load_into(ck, job_model, optim)  # the trainer's own resume path
    job_model.eval()
    exported = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    for text in PROMPTS:
        ids = encode(text)
        assert tok(text)["input_ids"] == ids  # the exported tokenizer gives the job's ids
        assert _greedy(exported, ids) == _greedy(job_model, ids), text
    job_state = job_model.state_dict()
    for name, tensor in exported.state_dict().items():
        assert torch.equal(tensor, job_state[name]), name


def test_export_of_tiny_random_checkpoint_matches_the_job_model(tmp_path):
    spec = _small({})
    ckdir = tmp_path / "ck"
    _train(spec, ckdir)
    out = tmp_path / "hf"
    got = _export(str(ckdir), "--out", str(out))  # the checkpoint root: the newest intact step
    assert got.returncode == 0, got.stderr[-3000:]
    ck = checkpoint.latest(ckdir)
    assert ck is not None and ck.name == f"step-{STEPS:08d}"
    assert (out / "model.safetensors").is_file() and (out / "generation_config.json").is_file()
    assert json.loads((out / "hexrl_export.json").read_text())["step"] == STEPS
    _assert_same_greedy_tokens(ck, spec, out, CharTokenizer().encode)


def test_char_tokenizer_as_fast_tokenizer_gives_the_same_ids_and_text():
    fast, char = char_tokenizer_fast(), CharTokenizer()
    for text in ["", "0", "12+3=", "9 - 4 * 2 = 1", "  "]:
        ids = char.encode(text)
        assert fast(text)["input_ids"] == ids
        assert fast.decode([*ids, char.eos_id, char.pad_id], skip_special_tokens=True) == char.decode(ids)


def test_export_of_tiny_hf_checkpoint_matches_the_job_model(tmp_path):
    src = write_tiny_model(tmp_path / "tiny-qwen")
    spec = _small({"model.source": {"localPath": str(src)}, "model.shape": model_shape(src)})
    ckdir = tmp_path / "ck"
    _train(spec, ckdir)
    ck = checkpoint.latest(ckdir)
    out = tmp_path / "hf"
    got = _export(str(ck), "--out", str(out))  # a step directory
    assert got.returncode == 0, got.stderr[-3000:]
    from transformers import AutoTokenizer

    source_tok = AutoTokenizer.from_pretrained(src, local_files_only=True)
    exported_tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert exported_tok.chat_template == source_tok.chat_template and exported_tok.eos_token == "<|im_end|>"
    _assert_same_greedy_tokens(ck, spec, out, lambda t: source_tok(t)["input_ids"])


def test_export_carries_the_checkpoint_weights_not_the_initial_ones(tmp_path):
    """Two steps of a tiny job may not move the weights (a group with equal rewards has no gradient), so
    this checkpoint's weights are moved by hand: the export must follow them."""
    from transformers import AutoModelForCausalLM

    spec = _small({})
    model = build_model(spec)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    ck = checkpoint.save(tmp_path / "ck", 7, model, torch.optim.AdamW(model.parameters()),
                         lambda: {"policyVersion": 7, "coordinator": {}, "spec": spec.wire()})
    got = _export(str(ck), "--out", str(tmp_path / "hf"))
    assert got.returncode == 0, got.stderr[-3000:]
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", local_files_only=True).eval()
    initial = build_model(spec).eval()
    ids = CharTokenizer().encode("1+2=")
    assert _greedy(exported, ids, 8) == _greedy(model.eval(), ids, 8)
    logits = exported(torch.tensor([ids])).logits
    assert torch.allclose(logits, model(torch.tensor([ids])).logits)
    assert not torch.allclose(logits, initial(torch.tensor([ids])).logits)


def test_bad_paths_and_damaged_or_old_checkpoints_exit_1_with_a_sentence(tmp_path):
    got = _export(str(tmp_path / "missing"), "--out", str(tmp_path / "hf"))
    assert got.returncode == 1 and "does not exist" in got.stderr and "Traceback" not in got.stderr
    got = _export(str(tmp_path), "--out", str(tmp_path / "hf"))
    assert got.returncode == 1 and "no intact checkpoint" in got.stderr
    spec = _small({})
    ckdir = tmp_path / "ck"
    model = build_model(spec)
    optim = torch.optim.AdamW(model.parameters())
    ck = checkpoint.save(ckdir, 3, model, optim, lambda: {"policyVersion": 3, "coordinator": {}})  # no spec recorded
    got = _export(str(ck), "--out", str(tmp_path / "hf"))
    assert got.returncode == 1 and "--job FILE" in got.stderr, got.stderr
    job = tmp_path / "job.yaml"
    raw = yaml.safe_load(TINY_JOB.read_text())
    job.write_text(yaml.safe_dump(raw))
    got = _export(str(ck), "--out", str(tmp_path / "hf"), "--job", str(job))  # an old checkpoint + its RLJob
    assert got.returncode == 0, got.stderr[-2000:]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    got = _export(str(ck), "--out", str(tmp_path / "other"), "--job", str(job))
    assert got.returncode == 1 and "not a hexrl export" in got.stderr
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    shard = next(ck.glob("__0_*.distcp"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    got = _export(str(ck), "--out", str(tmp_path / "hf2"), "--job", str(job))
    assert got.returncode == 1 and "damaged" in got.stderr and "BLAKE3" in got.stderr
    assert not (tmp_path / "hf2").exists()
    got = _export("--out", str(tmp_path / "hf3"))
    assert got.returncode == 2  # usage: no CHECKPOINT
