"""User paths of the local runner and the pod entry points, run for real.

- `hexrl run` interrupted like Ctrl-C in a terminal (SIGINT to its whole process group): it exits
  promptly with a clear line and status 130, writes the promised summary (marked interrupted), and
  leaves no process behind (Ray's raylet/GCS/actors included);
- `hexrl run --ray-address` joins a Ray head started with the `ray` CLI on 127.0.0.1;
- `model.source.localPath` pointing at a Hugging Face model directory (tiny Llama + a fast tokenizer
  built offline and saved with `save_pretrained`);
- trainer and rollout processes exit on SIGTERM when their coordinator is already gone.

Every wait is bounded; limits are generous for a loaded 2-core machine but keep a hang short.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from workers_builders import PYTHON, REPO, TINY_JOB, auth, subprocess_env, tiny_spec, write_config

pytestmark = [pytest.mark.workers, pytest.mark.slow]
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) from /proc, None when the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = raw.rsplit(")", 1)[1].split()[:2]
    return int(ppid), state


def _descendants(pid: int) -> dict[int, str]:
    """pid -> command line of every live descendant of `pid`."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (st := _stat(int(d.name))) is not None:
            parents[int(d.name)] = st[0]
    out, frontier = {}, {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier and c not in out}
        for c in frontier:
            with contextlib.suppress(OSError):
                out[c] = Path(f"/proc/{c}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return out


def _alive(pids) -> list[int]:
    return [p for p in pids if (st := _stat(p)) is not None and st[1] != "Z"]


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _run_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEXRL_", "RAY_ADDRESS"))}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    return env


# ------------------------------------------------------------------------------------------ Ctrl-C


def test_ctrl_c_stops_cleanly_and_writes_the_summary(tmp_path):
    summary = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [PYTHON, "-m", "hexrl.cli", "run", str(TINY_JOB), "--steps", "5000", "--quiet", "--summary", str(summary),
         "--checkpoint-dir", str(tmp_path / "ck")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=_run_env(),
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    try:
        # running for real: the rollout actors exist and some steps were trained (checkpoints appear
        # every 50 steps; step 0 is written before training starts, so wait for a later one)
        def trained_50() -> bool:
            return proc.poll() is not None or any(p.name != "step-00000000" for p in (tmp_path / "ck").glob("step-*"))

        _wait(trained_50, 300, "the run to train its first 50 steps", interval=0.5)
        assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
        family = _descendants(proc.pid)
        assert any("RolloutActor" in cmd for cmd in family.values()), family
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group gets SIGINT
        out, err = proc.communicate(timeout=120)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            _kill_group(proc.pid)
            proc.wait(10)
    print(f"Ctrl-C: exited {proc.returncode} after {took:.1f}s; stderr tail: {err[-300:]!r}")
    assert proc.returncode == 130, err[-3000:]
    assert took < 60
    assert "Traceback" not in err, err[-3000:]
    assert f"interrupted after {json.loads(summary.read_text())['steps']} steps" in err  # the clear line
    result = json.loads(summary.read_text())
    assert result == json.loads(out.strip().splitlines()[-1])
    assert result["interrupted"] is True and 50 <= result["steps"] < 5000
    # nothing left behind: every process the run started is gone
    _wait(lambda: not _alive(family), 30, f"the run's child processes to exit: {family}")


# -------------------------------------------------------------------------------------- --ray-address


def test_ray_address_joins_an_existing_cluster(tmp_path):
    port = _free_port()
    # Ray's token authentication: the head and every driver share the cluster's token (here via the
    # environment, leaving ~/.ray/auth_token — which other local Ray runs use — untouched)
    ray_env = {**_run_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    head_env = ray_env
    ray_tmp = Path(tempfile.mkdtemp(prefix="hxr-", dir="/tmp"))  # Ray's socket paths must stay < 108 bytes
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={ray_tmp}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=head_env, start_new_session=True,
    )
    try:
        address = f"127.0.0.1:{port}"

        def head_up() -> bool:
            if head.poll() is not None:
                raise AssertionError(f"ray head exited: {head.stdout.read()[-3000:] if head.stdout else ''}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        _wait(head_up, 120, "the Ray head to listen")
        summary = tmp_path / "summary.json"
        out = subprocess.run(
            [PYTHON, "-m", "hexrl.cli", "run", str(TINY_JOB), "--steps", "3", "--quiet", "--summary", str(summary),
             "--ray-address", address, "--checkpoint-dir", str(tmp_path / "ck")],
            capture_output=True, text=True, timeout=300, cwd=REPO, env=ray_env,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        result = json.loads(summary.read_text())
        print("ray-address summary:", result)
        assert result["steps"] == 3 and result["trainedSamples"] == 3 * 32 * 8
        assert head.poll() is None  # the job left the cluster running: it is not ours to stop
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(60)
        _kill_group(head.pid)
        head.wait(10)
        shutil.rmtree(ray_tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------ model.source


def _save_tiny_hf_model(path: Path) -> None:
    """A tiny Llama and a character-level fast tokenizer, built offline, saved like a hub download."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = list("0123456789+-*= ")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{c: i + 4 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.save_pretrained(path)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=64,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    LlamaForCausalLM(cfg).save_pretrained(path)


def test_model_source_local_hf_directory(tmp_path):
    model_dir = tmp_path / "tiny-hf"
    _save_tiny_hf_model(model_dir)
    raw = yaml.safe_load(TINY_JOB.read_text())
    raw["spec"]["model"]["source"] = {"localPath": str(model_dir)}
    raw["spec"]["algorithm"].update({"promptsPerStep": 4, "groupSize": 4})
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(raw))
    summary = tmp_path / "summary.json"
    out = subprocess.run(
        [PYTHON, "-m", "hexrl.cli", "run", str(job), "--steps", "3", "--quiet", "--summary", str(summary),
         "--checkpoint-dir", str(tmp_path / "ck")],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=_run_env(),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(summary.read_text())
    print("local model summary:", result)
    assert result["steps"] == 3 and result["trainedSamples"] == 3 * 4 * 4
    # the trainer saved the local model's weights, not the built-in tiny model's

    from hexrl_workers.trainer import checkpoint

    ck = sorted((tmp_path / "ck").glob("step-*"))[-1]
    state, _, _ = checkpoint.load_full(ck)
    assert state["model.embed_tokens.weight"].shape == (19, 32)


def test_missing_local_model_directory_is_a_clear_error(tmp_path):
    raw = yaml.safe_load(TINY_JOB.read_text())
    raw["spec"]["model"]["source"] = {"localPath": str(tmp_path / "nowhere")}
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(raw))
    out = subprocess.run([PYTHON, "-m", "hexrl.cli", "run", str(job), "--steps", "1", "--quiet"],
                         capture_output=True, text=True, timeout=120, cwd=REPO, env=_run_env())
    assert out.returncode == 1 and "does not exist" in out.stderr and "Traceback" not in out.stderr


# ------------------------------------------------------------------------- SIGTERM, coordinator gone


def test_trainer_and_rollout_exit_on_sigterm_when_the_coordinator_is_gone(tmp_path):
    spec = tiny_spec(**{"algorithm.promptsPerStep": 4, "algorithm.totalSteps": 100000})
    cport, wport = _free_port(), _free_port()
    config = write_config(tmp_path, spec, f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{wport}",
                          checkpoint_dir=str(tmp_path / "ck"))
    extra = {"HEXRL_PORT": str(cport), "HEXRL_WEIGHTS_PORT": str(wport), "HEXRL_RELAY_PORT": str(_free_port()),
             "HOSTNAME": "rollout-a", "HEXRL_POD_IP": "127.0.0.1"}
    procs: dict[str, subprocess.Popen] = {}
    try:
        for role in ("coordinator", "trainer", "rollout"):
            procs[role] = subprocess.Popen([PYTHON, "-m", "hexrl_workers", role], env=subprocess_env(config, role, **extra),
                                           stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE, text=True)
        import requests

        def trained() -> bool:
            for role, p in procs.items():
                if p.poll() is not None:
                    raise AssertionError(f"{role} exited early: {p.stderr.read()[-3000:] if p.stderr else ''}")
            try:
                r = requests.get(f"http://127.0.0.1:{cport}/v1/progress", headers=auth("operator"),
                                 timeout=5)
                return r.ok and r.json()["trainedSteps"] >= 2
            except requests.RequestException:
                return False

        _wait(trained, 240, "two trained steps")
        procs["coordinator"].kill()
        procs["coordinator"].wait(30)
        time.sleep(1.0)  # both are now talking to nobody (retrying with backoff)
        t0 = time.monotonic()
        for role in ("trainer", "rollout"):
            procs[role].send_signal(signal.SIGTERM)
        codes = {role: procs[role].wait(45) for role in ("trainer", "rollout")}
        took = time.monotonic() - t0
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)
    errs = {role: procs[role].stderr.read() if procs[role].stderr else "" for role in ("trainer", "rollout")}
    print(f"SIGTERM without coordinator: exit codes {codes} after {took:.1f}s")
    assert codes == {"trainer": 0, "rollout": 0}, errs
    assert took < 30  # well inside Kubernetes' default 30 s grace period (the retry budget is 60-120 s)
    assert all("Traceback" not in e for e in errs.values()), errs
