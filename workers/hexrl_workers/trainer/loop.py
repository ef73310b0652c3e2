"""The trainer process: pull a batch, one decoupled-PPO/GRPO update, publish the version, checkpoint.

Per step, with the trainer at version i:

1. rank 0 pulls a batch for version i from the coordinator (long-poll; the wait is the trainer's idle
   time) and broadcasts it to the other ranks;
2. every rank packs the whole batch (advantages need whole groups), takes its contiguous share of rows,
   and accumulates gradients over micro-batches; each micro-batch loss is its token sum divided by the
   *global* number of response tokens (× world size, since FSDP averages gradients over ranks), so the
   update equals the single-process token-mean loss whatever the sharding;
3. clip the gradient norm, optimizer step → version i+1;
4. rank 0 gathers the full state dict, publishes version i+1 to the weight service, *then* tells the
   coordinator (workers that see version i+1 can always fetch it);
5. every `checkpoint.everySteps` steps: an atomic checkpoint including the coordinator's snapshot.

The proximal policy π_prox is the policy before this update. With one optimizer step per batch
(`ppo_minibatches = 1`) the weights do not move before every micro-batch has been evaluated, so the
detached log-probs of the same forward pass *are* π_prox's recomputed log-probs and the separate
no-grad pass is skipped; with several minibatches it is computed first, explicitly.

With WORLD_SIZE > 1 the model is wrapped in FSDP (gloo on CPU, NCCL on GPU) and the ranks rendezvous
through torch.distributed's env:// variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).

Resume: the newest complete checkpoint gives model, optimizer, step and version; if the coordinator is
not at that version (it restarted, or the trainer ran ahead of the checkpoint) or holds an unacknowledged
batch, it is restored from the checkpoint's snapshot — cursor, buffer, re-queued prompts and partials —
so the pair is consistent again and no buffered trajectory is lost or trained twice.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch

from hexrl.api.models import RLJobSpec
from hexrl_workers.client import CoordinatorClient
from hexrl_workers.coordinator.core import empty_snapshot
from hexrl_workers.metrics import Metrics
from hexrl_workers.modeling import build_model, build_tokenizer
from hexrl_workers.protocol import Batch
from hexrl_workers.statusserver import Readiness
from hexrl_workers.trainer import checkpoint
from hexrl_workers.trainer.algorithm import (
    LossSettings,
    PackedBatch,
    decoupled_ppo_loss,
    pack_batch,
    token_logprobs,
)
from hexrl_workers.weights.server import ThreadedWeightServer, WeightServer, WeightServerSettings
from hexrl_workers.weights.store import pack

log = logging.getLogger(__name__)


@dataclass
class TrainerSettings:
    """Process-level knobs of the trainer (the algorithm's come from the spec)."""

    coordinator_url: str
    """Base URL of the coordinator."""
    token: str | None = None
    """Per-job bearer token."""
    checkpoint_dir: str = "/checkpoints"
    """Where checkpoints go (a PVC in pods)."""
    total_steps: int | None = None
    """Stop after this many steps (None: spec.algorithm.totalSteps, else forever)."""
    weights_host: str = "0.0.0.0"
    """Bind address of the weight service (rank 0)."""
    weights_port: int = 0
    """Port of the weight service (pods: WEIGHTS_PORT; 0 = any free port)."""
    advertise_host: str = "127.0.0.1"
    """Host in the weight service URL reported by `weights_url` (local runs)."""
    batch_wait_seconds: float = 5.0
    """Long-poll per batch request, seconds (the loop re-asks; only bounds a single HTTP call)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip: keeps one unlucky batch from wrecking a tiny model."""
    ppo_minibatches: int = 1
    """Optimizer steps per batch (1 = AReaL's default; >1 makes the clip against π_prox bite)."""
    behaviour_weight_cap: float = 5.0
    """Cap of π_prox/π_behav (see `algorithm.LossSettings`)."""
    rank: int = 0
    world_size: int = 1
    device: str = "cpu"
    torch_threads: int | None = None
    """torch intra-op threads (None: leave torch's default). The local runner sets 1 to share 2 cores."""
    coordinator_retry_seconds: float = 120.0
    """Give up on an unreachable coordinator after this long, seconds (pods: never — Kubernetes brings the
    coordinator back, and a trainer that exits would restart the whole gang)."""


class Trainer:
    def __init__(self, spec: RLJobSpec, settings: TrainerSettings, stop: threading.Event | None = None,
                 metrics: Metrics | None = None, readiness: Readiness | None = None) -> None:
        """`stop`: set on SIGTERM; the trainer stops between steps, and coordinator calls stop retrying
        (so it exits promptly even when the coordinator is already gone). `metrics` and `readiness`: what
        the rank's status server exports (pods); readiness turns ready once the rank can train — model
        built, ranks joined, and on rank 0 the coordinator synced and version `self.version` published."""
        self.spec = spec
        self.s = settings
        self.alg = spec.algorithm
        self.stop_event = stop or threading.Event()
        self.metrics = metrics or Metrics("trainer")
        self.readiness = readiness or Readiness()
        self.coord = CoordinatorClient(settings.coordinator_url, settings.token,
                                       retry_seconds=settings.coordinator_retry_seconds, abort=self.stop_event)
        self.loss_settings = LossSettings(
            clip_epsilon=self.alg.clip_epsilon,
            decoupled=self.alg.decoupled,
            behaviour_weight_cap=settings.behaviour_weight_cap,
            kl_coef=self.alg.kl_coef,
            temperature=spec.generation.temperature,
        )
        self.total_steps = settings.total_steps if settings.total_steps is not None else self.alg.total_steps
        self.version = 0
        self.step_stats: list[dict[str, float]] = []
        self.weights: ThreadedWeightServer | None = None
        self.distributed = settings.world_size > 1
        self._setup()

    # ------------------------------------------------------------------------------------- set-up

    def _setup(self) -> None:
        if self.s.torch_threads:
            torch.set_num_threads(self.s.torch_threads)
        torch.manual_seed(self.alg.seed + 1000 * self.s.rank)
        self.readiness.waiting("building the model")
        self.pad_id = build_tokenizer(self.spec).pad_id
        model = build_model(self.spec)
        self.ref_model = None
        if self.alg.kl_coef > 0:
            self.ref_model = build_model(self.spec).eval().requires_grad_(False)
        ck = checkpoint.latest(self.s.checkpoint_dir)
        meta: dict[str, Any] | None = None
        optim_state = None
        if ck is not None:
            model_state, optim_state, meta = checkpoint.load(ck)
            model.load_state_dict(model_state)
            self.version = int(meta["policyVersion"])
            log.info("resuming from %s at policy version %d", ck, self.version)
        if self.distributed:
            import torch.distributed as dist
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            if not dist.is_initialized():
                self.readiness.waiting(f"waiting for the other {self.s.world_size - 1} rank(s) to join")
                dist.init_process_group("gloo" if self.s.device == "cpu" else "nccl")
            model = FSDP(model, device_id=torch.device(self.s.device), use_orig_params=True)
        self.model = model.to(self.s.device).train()
        self.optim = torch.optim.AdamW(self.model.parameters(), lr=self.alg.learning_rate, weight_decay=0.0)
        if optim_state is not None:
            if self.distributed:
                from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

                optim_state = FSDP.optim_state_dict_to_load(self.model, self.optim, optim_state)
            self.optim.load_state_dict(optim_state)
        if self.s.rank == 0:
            ws = self.spec.weight_sync
            self.weights = ThreadedWeightServer(
                WeightServer(WeightServerSettings(token=self.s.token, origin=True, relay=ws.relay),
                             metrics=self.metrics),
                host=self.s.weights_host, port=self.s.weights_port, advertise_host=self.s.advertise_host,
            )
            self.readiness.waiting(f"waiting for the coordinator at {self.s.coordinator_url}")
            need_first_checkpoint = self._sync_coordinator(meta)
        else:
            need_first_checkpoint = None
        if self.distributed:
            import torch.distributed as dist

            box = [need_first_checkpoint]
            dist.broadcast_object_list(box, src=0)  # checkpoints are collectives: every rank joins
            need_first_checkpoint = box[0]
        if need_first_checkpoint:
            self._checkpoint()
        self.readiness.waiting(f"publishing policy version {self.version}")
        self._publish()
        self.metrics["hexrl_policy_version"].set(self.version)
        self.readiness.set_ready()

    def _sync_coordinator(self, meta: dict[str, Any] | None) -> bool:
        """Make the coordinator consistent with the resumed state; True when a first checkpoint is due."""
        state = self.coord.version()
        if meta is None:
            if state["version"] != 0 or state.get("pendingBatches"):
                log.warning(
                    "no checkpoint in %s but the coordinator is at version %d: restarting the job from scratch",
                    self.s.checkpoint_dir, state["version"],
                )
                self.coord.restore(empty_snapshot())
            return True  # step 0: a resume point always exists
        if state["version"] != self.version or state.get("pendingBatches"):
            log.info("restoring the coordinator (version %d) to the checkpoint's (version %d)",
                     state["version"], self.version)
            self.coord.restore(meta["coordinator"])
        return False

    @property
    def weights_url(self) -> str:
        assert self.weights is not None
        return self.weights.url

    # ------------------------------------------------------------------------------------- state

    def _full_state(self) -> dict[str, Any] | None:
        """Full model state dict on rank 0 (None elsewhere); a collective when distributed."""
        if not self.distributed:
            return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        cfg = FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
        with FSDP.state_dict_type(self.model, StateDictType.FULL_STATE_DICT, cfg):
            sd = self.model.state_dict()
        return sd if self.s.rank == 0 else None

    def _full_optim_state(self) -> dict[str, Any] | None:
        if not self.distributed:
            return self.optim.state_dict()
        from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with FSDP.state_dict_type(
            self.model, StateDictType.FULL_STATE_DICT,
            FullStateDictConfig(offload_to_cpu=True, rank0_only=False),
            FullOptimStateDictConfig(offload_to_cpu=True, rank0_only=False),
        ):
            osd = FSDP.optim_state_dict(self.model, self.optim)
        return osd if self.s.rank == 0 else None

    def _publish(self) -> None:
        state = self._full_state()
        if self.s.rank != 0 or state is None or self.weights is None:
            return
        chunk = self.spec.weight_sync.chunk_mb * (1 << 20)
        manifest, blob = pack(state, self.version, chunk)
        self.weights.publish(manifest, blob)

    def _checkpoint(self) -> None:
        model_state = self._full_state()
        optim_state = self._full_optim_state()
        if self.s.rank != 0:
            return
        t0 = time.monotonic()
        assert model_state is not None and optim_state is not None
        snapshot = self.coord.state()
        path = checkpoint.save(
            self.s.checkpoint_dir, self.version, model_state, optim_state,
            {"policyVersion": self.version, "coordinator": snapshot}, keep=self.spec.checkpoint.keep,
        )
        self.metrics["hexrl_checkpoint_seconds"].observe(time.monotonic() - t0)
        log.info("checkpoint %s", path)

    # --------------------------------------------------------------------------------------- step

    def _get_batch(self, stop: threading.Event) -> Batch | None:
        batch: Batch | None = None
        if self.s.rank == 0:
            while batch is None and not stop.is_set():
                batch = self.coord.batch(self.version, wait_seconds=self.s.batch_wait_seconds)
        if self.distributed:
            import torch.distributed as dist

            box = [batch.model_dump_json(by_alias=True) if batch is not None else None]
            dist.broadcast_object_list(box, src=0)
            batch = Batch.model_validate_json(box[0]) if box[0] is not None else None
        return batch

    def _rows(self, n: int) -> slice:
        per = -(-n // self.s.world_size)
        return slice(self.s.rank * per, min(n, (self.s.rank + 1) * per))

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One update on `batch` (all ranks); returns statistics."""
        t0 = time.monotonic()
        packed = pack_batch(batch.trajectories, self.alg.group_size, self.pad_id)
        mine = packed.rows(self._rows(len(batch.trajectories)))
        global_tokens = float(packed.response_mask.sum().clamp(min=1))
        scale = float(self.s.world_size)  # FSDP averages gradients over ranks; we want the global sum
        mb = self.alg.micro_batch_size
        n_local = mine.input_ids.shape[0]
        prox_all = None
        if self.s.ppo_minibatches > 1:
            with torch.no_grad():
                prox_all = torch.cat(
                    [self._logp(mine.rows(slice(a, a + mb))) for a in range(0, max(n_local, 1), mb)]
                ) if n_local else None
        loss_total = 0.0
        clip = 0.0
        parts = max(1, self.s.ppo_minibatches)
        # every rank runs the same number of forward/backward passes (FSDP's collectives must match):
        # the count follows the largest share; a rank whose share is shorter runs zero-loss passes
        per_rank = -(-len(batch.trajectories) // self.s.world_size)
        per_part = -(-per_rank // parts)
        for part in range(parts):
            lo, hi = part * per_part, (part + 1) * per_part
            part_tokens = global_tokens / parts
            self.optim.zero_grad(set_to_none=True)
            for group in self.optim.param_groups:
                group["lr"] = self.learning_rate(self.version)
            for a in range(lo, hi, mb):
                a_end = min(hi, a + mb, n_local)
                if a >= a_end:
                    dummy = packed.rows(slice(0, 1))
                    (self._logp(dummy).sum() * 0.0).backward()
                    continue
                sub = mine.rows(slice(a, a_end))
                logp = self._logp(sub)
                prox = prox_all[a : a + sub.input_ids.shape[0]] if prox_all is not None else logp.detach()
                ref = None
                if self.ref_model is not None:
                    with torch.no_grad():
                        ref = token_logprobs(self.ref_model, sub.input_ids.to(self.s.device),
                                             sub.attention_mask.to(self.s.device), self.loss_settings.temperature)
                loss, st = decoupled_ppo_loss(
                    logp, prox, sub.behaviour_logp.to(logp.device), sub.advantages.to(logp.device),
                    sub.response_mask.to(logp.device), self.loss_settings, ref, normaliser=part_tokens,
                )
                (loss * scale).backward()
                loss_total += float(loss.detach())
                clip += st["clip_fraction"] * float(sub.response_mask.sum()) / global_tokens
            if self.distributed:
                grad_norm = float(self.model.clip_grad_norm_(self.s.max_grad_norm))
            else:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.s.max_grad_norm))
            self.optim.step()
        self.version += 1
        lags = [batch.trainer_version - t.oldest_version for t in batch.trajectories]
        stats = {
            "version": float(self.version),
            "loss": loss_total,
            "reward": float(packed.rewards.mean()),
            "clip_fraction": clip,
            "grad_norm": grad_norm,
            "staleness_mean": sum(lags) / len(lags),
            "staleness_max": float(max(lags)),
            "seconds": time.monotonic() - t0,
        }
        return stats

    def learning_rate(self, step: int) -> float:
        """lr at optimizer step `step`: constant, or lr·½(1 + cos(π·step/T)) with T = total steps.

        A function of the step alone (not scheduler state), so a resumed trainer continues exactly."""
        lr = self.alg.learning_rate
        if str(self.alg.lr_schedule) != "cosine" or not self.total_steps:
            return lr
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps))

    def _logp(self, sub: PackedBatch) -> torch.Tensor:
        return token_logprobs(self.model, sub.input_ids.to(self.s.device), sub.attention_mask.to(self.s.device),
                              self.loss_settings.temperature)

    # ---------------------------------------------------------------------------------------- run

    def done(self) -> bool:
        return self.total_steps is not None and self.version >= self.total_steps

    def run(self, stop: threading.Event | None = None) -> list[dict[str, float]]:
        if stop is not None and stop is not self.stop_event:
            self.stop_event = self.coord.abort = stop
        stop = self.stop_event
        every = self.spec.checkpoint.every_steps
        while not self.done() and not stop.is_set():
            batch = self._get_batch(stop)
            if batch is None:
                break
            stats = self.train_step(batch)
            self._publish()
            if self.s.rank == 0:
                self.coord.new_version(self.version, batch.batch_id, stats["loss"])
                self.metrics["hexrl_trainer_step_seconds"].observe(stats["seconds"])
                self.metrics["hexrl_trainer_loss"].set(stats["loss"])
            self.metrics["hexrl_policy_version"].set(self.version)
            self.step_stats.append(stats)
            log.info("step %d reward %.3f loss %.4f staleness %.2f", self.version, stats["reward"],
                     stats["loss"], stats["staleness_mean"])
            if self.version % every == 0 or self.done():
                self._checkpoint()
        return self.step_stats

    def close(self) -> None:
        if self.weights is not None:
            self.weights.close()
            self.weights = None
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
