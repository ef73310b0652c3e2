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
5. every `checkpoint.everySteps` steps: an atomic, sharded checkpoint (every rank writes its shards) with
   the coordinator's snapshot and the job spec (what `hexrl export` rebuilds the model from);
6. rank 0 logs the step's statistics to the experiment trackers (`hexrl_workers.tracking`, x = step).

After the final step (and its checkpoint), rank 0 writes the Hugging Face export (`spec.export`,
`hexrl_workers.export`); a failed export is logged with the command that retries it, never fails the job.

The proximal policy π_prox is the policy before this update. With one optimizer step per batch
(`ppo_minibatches = 1`) the weights do not move before every micro-batch has been evaluated, so the
detached log-probs of the same forward pass *are* π_prox's recomputed log-probs and the separate
no-grad pass is skipped; with several minibatches it is computed first, explicitly.

With more than one process the gang executes the planned layout (`hexrl.api.trainerlayout`) through
`trainer.parallel`: a device mesh over the ranks (gloo on CPU, NCCL on GPU, rendezvous through
torch.distributed's env:// variables set by the launcher), tensor parallelism inside each pod, FSDP2 across
the data-parallel ranks. Rows are split by data-parallel rank; the ranks of one TP group train on the same
rows.

Resume: the newest complete checkpoint gives model, optimizer, step and version; if the coordinator is
not at that version (it restarted, or the trainer ran ahead of the checkpoint) or holds an unacknowledged
batch, it is restored from the checkpoint's snapshot — cursor, buffer, re-queued prompts and partials —
so the pair is consistent again and no buffered trajectory is lost or trained twice.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hexrl.api.models import RLJobSpec
from hexrl.api.trainerlayout import TrainerLayout
from hexrl_workers.coordinator.core import empty_snapshot
from hexrl_workers.coordinator_client import CoordinatorClient
from hexrl_workers.export import PROVENANCE, ExportError, export_state
from hexrl_workers.httpcommon import Credentials
from hexrl_workers.metrics import Metrics
from hexrl_workers.modeling import build_model, build_tokenizer
from hexrl_workers.protocol import Batch, WorkReport
from hexrl_workers.statusserver import Readiness
from hexrl_workers.tracking import FanOut, build_trackers, flatten
from hexrl_workers.trainer import checkpoint
from hexrl_workers.trainer.algorithm import (
    LossSettings,
    PackedBatch,
    decoupled_ppo_loss,
    loss_normaliser,
    pack_batch,
    token_logprobs,
)
from hexrl_workers.trainer.parallel import ParallelModel, Ranks
from hexrl_workers.weights.server import ThreadedWeightServer, WeightServer, WeightServerSettings
from hexrl_workers.weights.store import pack

log = logging.getLogger(__name__)


def _exported_step(path: str) -> int | None:
    """The step of the export already at `path` (None: none, or unreadable)."""
    try:
        return int(json.loads((Path(path) / PROVENANCE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class TrainerSettings:
    """Process-level knobs of the trainer (the algorithm's come from the spec)."""

    coordinator_url: str
    """Base URL of the coordinator."""
    token: str | None = None
    """The job's trainer-role bearer token (what this process presents to the coordinator)."""
    credentials: Credentials | None = None
    """What rank 0's weight origin checks callers' tokens against (None: no auth, tests only)."""
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
    ppo_minibatches: int | None = None
    """Optimizer steps per batch (None: spec.algorithm.ppoMinibatches; 1 = AReaL's default)."""
    behaviour_weight_cap: float = 5.0
    """Cap of π_prox/π_behav (see `algorithm.LossSettings`)."""
    rank: int = 0
    """Global rank of this process (torch.distributed RANK)."""
    world_size: int = 1
    """Processes of the whole gang (WORLD_SIZE)."""
    local_rank: int = 0
    """Rank inside the pod (LOCAL_RANK): the GPU this process uses."""
    layout: TrainerLayout | None = None
    """The planned layout (None: plain data parallelism with FSDP over all `world_size` ranks)."""
    device: str = "cpu"
    """cpu or cuda (the process takes cuda:`local_rank`)."""
    activation_checkpointing: bool | None = None
    """Recompute each decoder layer's activations in backward (None: on GPUs and in multi-process gangs,
    as the cost model assumes; off for a single CPU process, where memory is not the limit)."""
    torch_threads: int | None = None
    """torch intra-op threads (None: leave torch's default). The local runner sets 1 to share 2 cores."""
    coordinator_retry_seconds: float = 120.0
    """Give up on an unreachable coordinator after this long, seconds (pods: never — Kubernetes brings the
    coordinator back, and a trainer that exits would restart the whole gang)."""
    job_name: str | None = None
    """The RLJob's name: the default run name in W&B and MLflow (None: the trackers' own defaults)."""
    gpu_type: str | None = None
    """GPU type of the gang (HEXRL_GPU_TYPE, from the plan): rank 0 then reports each step's work (tokens,
    GPU-seconds = step seconds × world size) with the new version, for the operator's calibration."""


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
        self._warned_unshared = False
        self.tracker = FanOut([])
        self.exported_path: str | None = None
        self.data_done = False
        """The coordinator reported the job done before totalSteps (a finite dataset ran out): no batch follows."""
        self.device = torch.device(f"cuda:{settings.local_rank}" if settings.device == "cuda" else settings.device)
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
            self.ref_model = build_model(self.spec).to(self.device).eval().requires_grad_(False)
        self.parallel: ParallelModel | None = None
        if self.distributed:
            self.model = self._distribute(model).train()
        else:
            self.model = model.to(self.device).train()
            if self._activation_checkpointing():
                self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.optim = torch.optim.AdamW(self.model.parameters(), lr=self.alg.learning_rate, weight_decay=0.0)
        ck = checkpoint.latest_intact(self.s.checkpoint_dir, on_skip=self._skip_checkpoint)
        meta: dict[str, Any] | None = None
        if ck is not None:
            self.readiness.waiting(f"loading checkpoint {ck.name}")
            meta = checkpoint.load_into(ck, self.model, self.optim)
            self.version = int(meta["policyVersion"])
            log.info("resuming from %s at policy version %d", ck, self.version)
        if self.s.rank == 0:
            ws = self.spec.weight_sync
            self.weights = ThreadedWeightServer(
                WeightServer(WeightServerSettings(credentials=self.s.credentials, origin=True, relay=ws.relay),
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
        if self.s.rank == 0:
            self._start_tracking()
        self.readiness.waiting(f"publishing policy version {self.version}")
        self._publish()
        self.metrics["hexrl_policy_version"].set(self.version)
        self.readiness.set_ready()

    def _start_tracking(self) -> None:
        """Rank 0: open the configured trackers and record the job spec as hyper-parameters once."""
        self.tracker = build_trackers(self.spec, self.s.checkpoint_dir, self.s.job_name, first_step=self.version + 1)
        self.tracker.start({**flatten(self.spec.wire()), "resumedAtStep": self.version})

    def _skip_checkpoint(self, path: Any, problems: list[str]) -> None:
        log.error("checkpoint %s is damaged (%s); resuming from an older one", path, "; ".join(problems))
        self.metrics["hexrl_checkpoints_damaged"].inc()

    def _activation_checkpointing(self) -> bool:
        if self.s.activation_checkpointing is not None:
            return self.s.activation_checkpointing
        return self.distributed or self.device.type == "cuda"

    def _distribute(self, model: Any) -> Any:
        """Join the gang and lay the model out as planned; returns the module to train."""
        import torch.distributed as dist

        layout = self.s.layout or TrainerLayout(procs_per_node=(self.s.world_size,), data_parallel=self.s.world_size)
        layout.check(self.spec.model.shape)
        if layout.world_size != self.s.world_size:
            raise ValueError(f"WORLD_SIZE={self.s.world_size} but the layout {layout.describe()} has "
                             f"{layout.world_size} processes")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            self.readiness.waiting(f"waiting for the other {self.s.world_size - 1} rank(s) to join")
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.parallel = ParallelModel(model, layout, Ranks(self.s.rank, self.s.local_rank, self.s.world_size),
                                      self.device, self._activation_checkpointing())
        log.info("rank %d: %s, mesh %s", self.s.rank, layout.describe(), layout.mesh_shape)
        return self.parallel.module

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
        if self.parallel is None:
            return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        sd = self.parallel.full_state_dict()
        return sd if self.s.rank == 0 else None

    def _publish(self) -> None:
        state = self._full_state()
        if self.s.rank != 0 or state is None or self.weights is None:
            return
        chunk = self.spec.weight_sync.chunk_mb * (1 << 20)
        manifest, blob = pack(state, self.version, chunk)
        self.weights.publish(manifest, blob)

    def _checkpoint(self) -> None:
        """Every rank writes its shards; rank 0 adds the coordinator's snapshot and commits. A gang whose
        pods do not share the checkpoint directory cannot resume from any checkpoint: it says so (once)
        and trains on without them, rather than failing and restarting from nothing again and again."""
        t0 = time.monotonic()
        try:
            path = checkpoint.save(
                self.s.checkpoint_dir, self.version, self.model, self.optim,
                lambda: {"policyVersion": self.version, "coordinator": self.coord.state(), "spec": self.spec.wire()},
                keep=self.spec.checkpoint.keep, rank=self.s.rank,
            )
        except checkpoint.CheckpointNotShared as exc:
            if not self._warned_unshared:
                log.error("%s; training continues without checkpoints", exc)
                self._warned_unshared = True
            return
        if self.s.rank == 0:
            self.metrics["hexrl_checkpoint_seconds"].observe(time.monotonic() - t0)
            log.info("checkpoint %s", path)

    # --------------------------------------------------------------------------------------- step

    def _get_batch(self, stop: threading.Event) -> Batch | None:
        """The next batch, or None when stopping or when the coordinator says no batch will come (its dataset's
        epochs ran out: `data_done`, which every rank learns with the batch)."""
        batch: Batch | None = None
        if self.s.rank == 0:
            while batch is None and not stop.is_set() and not self.data_done:
                batch = self.coord.batch(self.version, wait_seconds=self.s.batch_wait_seconds)
                if batch is None:
                    self.data_done = bool(self.coord.version().get("done"))
        if self.distributed:
            import torch.distributed as dist

            box: list[Any] = [batch.model_dump_json(by_alias=True) if batch is not None else None, self.data_done]
            dist.broadcast_object_list(box, src=0)
            batch = Batch.model_validate_json(box[0]) if box[0] is not None else None
            self.data_done = bool(box[1])
        return batch

    @property
    def _dp(self) -> tuple[int, int]:
        """(data-parallel rank, data-parallel size): rows are split over these, not over all ranks."""
        if self.parallel is None:
            return 0, 1
        return self.parallel.data_parallel_rank, self.parallel.data_parallel_size

    def _rows(self, n: int) -> slice:
        rank, size = self._dp
        per = -(-n // size)
        return slice(rank * per, min(n, (rank + 1) * per))

    def _micro_batches(self, n_rows: int, parts: int) -> list[list[slice | None]]:
        """Per optimizer step (`parts` of them), the micro-batch slices of this rank's rows.

        Every rank runs the same number of forward/backward passes (FSDP's and TP's collectives must
        match), so the count follows the largest share; `None` marks a pass over no rows of its own (a
        zero-loss pass) on a rank whose share is shorter."""
        _, size = self._dp
        mb = self.alg.micro_batch_size
        per_rank = -(-n_rows // size)
        per_part = -(-per_rank // parts)
        mine = self._rows(n_rows)
        n_local = mine.stop - mine.start
        out = []
        for part in range(parts):
            lo, hi = part * per_part, (part + 1) * per_part
            out.append([slice(a, min(hi, a + mb, n_local)) if a < min(hi, n_local) else None
                        for a in range(lo, hi, mb)])
        return out

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One update on `batch` (all ranks); returns statistics."""
        t0 = time.monotonic()
        n = len(batch.trajectories)
        packed = pack_batch(batch.trajectories, self.alg.group_size, self.pad_id, self.alg.name)
        mine = packed.rows(self._rows(n))
        normaliser = loss_normaliser(self.alg.name, float(packed.response_mask.sum()), n,
                                     self.spec.generation.max_new_tokens)
        global_tokens = float(packed.response_mask.sum().clamp(min=1))
        scale = float(self._dp[1])  # FSDP averages gradients over the data-parallel ranks; we want the sum
        parts = max(1, self.s.ppo_minibatches or self.alg.ppo_minibatches)
        plan = self._micro_batches(n, parts)
        prox = self._proximal_logprobs(packed, mine, plan) if parts > 1 else None
        loss_total, clip, kl, grad_norm = 0.0, 0.0, 0.0, 0.0
        lr = self.learning_rate(self.version)
        for part, passes in enumerate(plan):
            self.optim.zero_grad(set_to_none=True)
            for group in self.optim.param_groups:
                group["lr"] = lr
            for k, rows in enumerate(passes):
                if rows is None:
                    (self._logp(packed.rows(slice(0, 1))).sum() * 0.0).backward()
                    continue
                sub = mine.rows(rows)
                logp = self._logp(sub)
                prox_sub = prox[part][k] if prox is not None else logp.detach()
                assert prox_sub is not None  # _proximal_logprobs ran every real pass of this same plan
                ref = self._ref_logp(sub)
                loss, st = decoupled_ppo_loss(
                    logp, prox_sub, sub.behaviour_logp.to(logp.device), sub.advantages.to(logp.device),
                    sub.response_mask.to(logp.device), self.loss_settings, ref, normaliser=normaliser / parts,
                )
                (loss * scale).backward()
                loss_total += float(loss.detach())
                clip += st["clip_fraction"] * float(sub.response_mask.sum()) / global_tokens
                kl += st.get("kl", 0.0) * float(sub.response_mask.sum()) / global_tokens
            grad_norm = self._clip_gradients()
            self.optim.step()
        self.version += 1
        lags = [batch.trainer_version - t.oldest_version for t in batch.trajectories]
        seconds = time.monotonic() - t0
        stats = {
            "version": float(self.version),
            "loss": loss_total,
            "reward": float(packed.rewards.mean()),
            "clip_fraction": clip,
            "grad_norm": grad_norm,
            "learning_rate": lr,
            "staleness_mean": sum(lags) / len(lags),
            "staleness_max": float(max(lags)),
            "seconds": seconds,
            # the whole batch's tokens (every rank trains on its share of them in the same time)
            "tokens_per_second": float(packed.attention_mask.sum()) / max(seconds, 1e-9),
        }
        if self.ref_model is not None:
            stats["kl"] = kl  # this rank's share: exact with one data-parallel rank, rank 0's rows otherwise
        return stats

    def _proximal_logprobs(self, packed: PackedBatch, mine: PackedBatch,
                           plan: list[list[slice | None]]) -> list[list[torch.Tensor | None]]:
        """π_prox's log-probs of every micro-batch, before the first optimizer step, in exactly the passes
        (real or padding) the update will run, so every rank issues the same collectives."""
        out: list[list[torch.Tensor | None]] = []
        with torch.no_grad():
            for passes in plan:
                row: list[torch.Tensor | None] = []
                for rows in passes:
                    if rows is None:
                        self._logp(packed.rows(slice(0, 1)))
                        row.append(None)
                    else:
                        row.append(self._logp(mine.rows(rows)))
                out.append(row)
        return out

    def _ref_logp(self, sub: PackedBatch) -> torch.Tensor | None:
        if self.ref_model is None:
            return None
        with torch.no_grad():
            return token_logprobs(self.ref_model, sub.input_ids.to(self.device), sub.attention_mask.to(self.device),
                                  self.loss_settings.temperature)

    def _clip_gradients(self) -> float:
        if self.parallel is not None:
            return self.parallel.clip_grad_norm(self.s.max_grad_norm)
        return float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.s.max_grad_norm))

    def learning_rate(self, step: int) -> float:
        """lr at optimizer step `step`: constant, or lr·½(1 + cos(π·step/T)) with T = total steps.

        A function of the step alone (not scheduler state), so a resumed trainer continues exactly."""
        lr = self.alg.learning_rate
        if str(self.alg.lr_schedule) != "cosine" or not self.total_steps:
            return lr
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps))

    def _logp(self, sub: PackedBatch) -> torch.Tensor:
        return token_logprobs(self.model, sub.input_ids.to(self.device), sub.attention_mask.to(self.device),
                              self.loss_settings.temperature)

    # ---------------------------------------------------------------------------------------- run

    def done(self) -> bool:
        """totalSteps trained, or the data ran out (the coordinator will hand out no further batch)."""
        return self.data_done or (self.total_steps is not None and self.version >= self.total_steps)

    def run(self, stop: threading.Event | None = None) -> list[dict[str, float]]:
        if stop is not None and stop is not self.stop_event:
            self.stop_event = self.coord.abort = stop
        stop = self.stop_event
        every = self.spec.checkpoint.every_steps
        while not self.done() and not stop.is_set():
            batch = self._get_batch(stop)
            if batch is None:
                break
            took = time.monotonic()
            stats = self.train_step(batch)
            self._publish()
            if self.s.rank == 0:
                work = self._work_report(stats, time.monotonic() - took)  # the step and publishing its version
                self.coord.new_version(self.version, batch.batch_id, stats["loss"], work=work)
                self.metrics["hexrl_trainer_step_seconds"].observe(stats["seconds"])
                self.metrics["hexrl_trainer_loss"].set(stats["loss"])
            self.metrics["hexrl_policy_version"].set(self.version)
            self.step_stats.append(stats)
            log.info("step %d reward %.3f loss %.4f staleness %.2f", self.version, stats["reward"],
                     stats["loss"], stats["staleness_mean"])
            if self.s.rank == 0:
                self.tracker.log(self.version, stats)
            if self.version % every == 0 or self.done():
                self._checkpoint()
        if self.data_done and self.version % every != 0 and self.step_stats:
            log.info("the dataset's epochs ran out at step %d: final checkpoint", self.version)
            self._checkpoint()
        if self.done() and self.spec.export.at_end:
            self._export()
        return self.step_stats

    def _work_report(self, stats: dict[str, float], busy_seconds: float) -> list[WorkReport]:
        """The step as train work of the gang's GPU type: the batch's tokens over the GPU-seconds of the step and
        of publishing its version (`busy_seconds`; every rank spends that wall time on its share)."""
        if not self.s.gpu_type or busy_seconds <= 0:
            return []
        tokens = round(stats["tokens_per_second"] * stats["seconds"])
        return [WorkReport(gpu=self.s.gpu_type, phase="train", tokens=tokens,
                           seconds=busy_seconds * max(1, self.s.world_size))]

    def _export(self) -> None:
        """The final Hugging Face directory (a collective when distributed: every rank gives its shards)."""
        state = self._full_state()
        if self.s.rank != 0 or state is None:
            return
        out = self.spec.export.resolved_path(self.s.checkpoint_dir)
        if _exported_step(out) == self.version:  # a rerun of a finished job: nothing new to write
            self.exported_path = out
            return
        try:
            self.exported_path = str(export_state(state, self.spec, out, {"step": self.version,
                                                                          "policyVersion": self.version}))
        except (ExportError, OSError, RuntimeError) as exc:
            log.error("the final export to %s failed (%s); the checkpoints are intact: run `hexrl export %s "
                      "--out DIR`", out, exc, self.s.checkpoint_dir)
            return
        log.info("exported the final model to %s", self.exported_path)

    def close(self) -> None:
        self.tracker.close()
        if self.weights is not None:
            self.weights.close()
            self.weights = None
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
