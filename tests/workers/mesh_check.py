"""One rank of the mesh-equivalence check (tests/workers/test_parallel_layouts.py), started by torchrun.

Every rank builds the same tiny model, lays it out with `trainer.parallel.ParallelModel` for the layout
given on the command line (DP × TP, FSDP or replicated), computes the trainer's loss on its data-parallel
share of a fixed batch exactly as `Trainer.train_step` scales it, runs backward, and rank 0 writes the
global loss and the full gradients (gathered from their shards) to the output file.

    torchrun --nproc-per-node 4 mesh_check.py OUT.pt DP TP fsdp|replicate [CHECKPOINT_DIR]

With CHECKPOINT_DIR the ranks then take one AdamW step and write a sharded checkpoint there
(`trainer.checkpoint.save`), and rank 0 adds the full weights after the step to the output.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from mesh_batch import fixed_batch, loss_of, tiny_model

from hexrl.api.trainerlayout import TrainerLayout
from hexrl_workers.trainer.parallel import ParallelModel, Ranks


def main() -> None:
    out, dp, tp, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    layout = TrainerLayout(procs_per_node=(world,), data_parallel=dp, tensor_parallel=tp, fsdp=mode == "fsdp")
    layout.check()
    pm = ParallelModel(tiny_model(), layout, Ranks(rank, rank, world), torch.device("cpu"),
                       activation_checkpointing=True)
    batch, normaliser = fixed_batch()
    n = batch.input_ids.shape[0]
    per = -(-n // pm.data_parallel_size)
    mine = batch.rows(slice(pm.data_parallel_rank * per, (pm.data_parallel_rank + 1) * per))
    loss = loss_of(pm.module, mine, normaliser)
    (loss * pm.data_parallel_size).backward()
    total = loss.detach().clone()
    dist.all_reduce(total)  # every rank of a TP group holds the same share's loss: divide by TP
    grads = {}
    for name, p in pm.module.named_parameters():
        g = p.grad
        grads[name] = g.full_tensor() if hasattr(g, "full_tensor") else g
    norm = pm.clip_grad_norm(1e9)
    result = {"loss": float(total) / tp, "grads": grads, "norm": norm, "mesh": layout.mesh_shape}
    if len(sys.argv) > 5:
        from hexrl_workers.trainer import checkpoint

        optim = torch.optim.AdamW(pm.module.parameters(), lr=1e-2)
        optim.step()
        where = sys.argv[5].replace("{rank}", str(rank))  # a per-rank directory: pods without a shared volume
        try:
            checkpoint.save(where, 1, pm.module, optim, lambda: {"policyVersion": 1, "coordinator": {}}, rank=rank)
        except checkpoint.CheckpointNotShared as exc:
            result["not_shared"] = str(exc)
        result["params"] = pm.full_state_dict()
    if rank == 0:
        torch.save(result, out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
