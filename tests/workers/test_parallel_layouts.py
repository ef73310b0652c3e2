"""The trainer executes the layouts the planner emits: DP+TP meshes match one process, bad layouts are refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mesh_batch import fixed_batch, loss_of, spec, tiny_model

from hexrl.api.trainerlayout import LayoutError, TrainerLayout

pytestmark = pytest.mark.workers
HERE = Path(__file__).parent


def _reference() -> tuple[float, dict[str, torch.Tensor]]:
    model = tiny_model().float()
    batch, normaliser = fixed_batch()
    loss = loss_of(model, batch, normaliser)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}


def _run_mesh(tmp_path: Path, dp: int, tp: int, mode: str, checkpoint_dir: Path | None = None) -> dict:
    out = tmp_path / f"mesh-{dp}x{tp}-{mode}.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={dp * tp}",
           str(HERE / "mesh_check.py"), str(out), str(dp), str(tp), mode]
    if checkpoint_dir is not None:
        cmd.append(str(checkpoint_dir))
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE), "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return torch.load(out, weights_only=False)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fsdp", "replicate"])
def test_dp2_tp2_mesh_gives_the_single_process_loss_and_gradients(tmp_path, mode):
    """…and its sharded checkpoint (written by 4 ranks, 2-D sharded) resumes in one process."""
    from hexrl_workers.trainer import checkpoint

    ref_loss, ref_grads = _reference()
    got = _run_mesh(tmp_path, 2, 2, mode, checkpoint_dir=tmp_path / "ck")
    assert got["mesh"] == ((1, 2, 2) if mode == "fsdp" else (2, 1, 2))
    assert got["loss"] == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
    assert set(got["grads"]) == set(ref_grads)
    for name, g in ref_grads.items():
        assert torch.allclose(got["grads"][name], g, rtol=1e-4, atol=1e-6), name
    ref_norm = float(torch.sqrt(sum((g.float() ** 2).sum() for g in ref_grads.values())))
    assert got["norm"] == pytest.approx(ref_norm, rel=1e-4)
    # resume at world size 1: the weights after the gang's step, and AdamW's moments of the same step
    model = tiny_model().float()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-2)
    meta = checkpoint.load_into(checkpoint.latest(tmp_path / "ck"), model, optim)
    assert meta["policyVersion"] == 1
    for name, p in model.named_parameters():
        assert torch.allclose(p.detach(), got["params"][name], atol=1e-6), name
        assert not torch.equal(p.detach(), tiny_model().float().state_dict()[name]), name  # the step moved it
        assert torch.allclose(optim.state[p]["exp_avg"], 0.1 * ref_grads[name], rtol=1e-3, atol=1e-7), name


@pytest.mark.slow
def test_ranks_that_do_not_share_the_checkpoint_directory_are_told_so(tmp_path):
    """Each rank with its own directory (trainer pods on several nodes with emptyDir volumes): the save is
    refused on every rank with what to do, and no directory is left as if it were a checkpoint."""
    from hexrl_workers.trainer import checkpoint

    got = _run_mesh(tmp_path, 2, 1, "fsdp", checkpoint_dir=tmp_path / "ck-{rank}")
    assert "do not share the checkpoint directory" in got["not_shared"]
    assert "spec.checkpoint.pvc" in got["not_shared"]
    assert checkpoint.latest(tmp_path / "ck-0") is None and checkpoint.latest(tmp_path / "ck-1") is None


def test_layouts_the_runtime_cannot_execute_are_refused_with_the_reason():
    shape = spec().model.shape  # 4 query heads, 2 key/value heads, MLP 128
    TrainerLayout((4,), data_parallel=2, tensor_parallel=2).check(shape)
    cases = {
        TrainerLayout((4,), data_parallel=1, tensor_parallel=4): "key/value heads (2)",
        TrainerLayout((2, 2), data_parallel=1, tensor_parallel=2, pipeline_parallel=2): "pipeline parallelism",
        TrainerLayout((3, 1), data_parallel=2, tensor_parallel=2): "must stay inside one pod",
        TrainerLayout((4,), data_parallel=3, tensor_parallel=1): "DP3×TP1×PP1 = 3 processes",
    }
    for layout, why in cases.items():
        with pytest.raises(LayoutError, match=why.replace("(", r"\(").replace(")", r"\)")):
            layout.check(shape)


def test_layout_round_trips_through_the_pod_environment():
    layout = TrainerLayout((8, 4), data_parallel=6, tensor_parallel=2, fsdp=False)
    for node in (0, 1):
        env = dict(layout.pod_env(node))
        assert TrainerLayout.from_env(env) == (layout, node)
    with pytest.raises(LayoutError, match="HEXRL_TENSOR_PARALLEL='two'"):
        TrainerLayout.from_env({**dict(layout.pod_env(0)), "HEXRL_TENSOR_PARALLEL": "two"})
    with pytest.raises(LayoutError, match="inconsistent trainer pod environment"):
        TrainerLayout.from_env({**dict(layout.pod_env(0)), "LOCAL_WORLD_SIZE": "4"})
