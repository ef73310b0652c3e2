"""The planner's cost model: first-principles throughput and memory estimates for rollout and training.

Everything the planner (and the simulator) predicts comes from the functions here; every constant is a
named, documented field of `CostModelSettings`. Notation: N parameters, L layers, H hidden size,
b = bytes per weight element (2 for bf16), P prompt tokens, R response tokens (mean R̄, max R_max),
G group size, B_step = promptsPerStep × G samples per training step.

Response lengths
    lognormal (default): ln R ~ Normal(μ, σ²) with σ = `response_length_sigma` and μ = ln R̄ − σ²/2 (so
    E[R] = R̄), truncated at R_max. The expected maximum of n draws uses Blom's plotting position,
    E[max_n] ≈ F⁻¹((n − 0.375)/(n + 0.25)), clipped to R_max. `fixed`: every response is R̄.
    `uniform`: R ~ U[a, b] with b = min(R_max, 2R̄), a = 2R̄ − b; E[max_n] = a + (b − a)·n/(n + 1).
    A running sequence sampled at a random time is in a length-biased response and uniformly through it,
    so the mean resident context per sequence is c̄ = P + E[R²]/(2E[R]) (lognormal: P + R̄·e^{σ²}/2).

Rollout replica (TP t × PP p GPUs of one type, HBM bandwidth β, peak F)
    KV bytes per token   k = 2·L·kv_heads·head_dim·b
    KV budget            M_kv = t·p·(HBM·u_mem − overhead) − N·b; it must hold one full sequence
                         k·(P + R_max), and bounds the concurrent sequences B = min(max_seqs, ⌊M_kv/(k·c̄)⌋).
    Decode step (one token for each of B sequences): every stage reads its weights once per micro-batch
    (p micro-batches in flight) and the KV cache of its layers:
        t_mem = (N·b + B·c̄·k/p) / (t·β·η_hbm)        t_cmp = B·(2N + 4·L·H·c̄) / (t·p·F·η_dec)
        t_step = max(t_mem, t_cmp) + TP all-reduces (2 per layer, ring 2(t−1)/t·B·H·b bytes over the
                 intra-node link) + PP hand-offs (B·H·b bytes over the inter-node link per boundary)
    A worker refills its slots a group at a time, so a wave of B sequences lasts the expected longest
    response of a group, S = E[max_G R]:
        T_wave = S·t_step + prefill + reward,  prefill = (B/G)·(2N·P + 2·L·H·P²)/(t·p·F·MFU_prefill)
        (prompts shared by a group are prefilled once: prefix caching), reward = B·r_s / reward_workers.
    Samples/s = B / T_wave; tokens/s consumed by training = samples/s · (P + R̄).

RL-specific losses (each its own term, not folded into an efficiency)
    Response-length tail: a group holds its G slots until its longest response ends, so a wave lasts
        E[max_G R] decode steps, not R̄ (above); the slots of the shorter responses sit idle for the
        rest of the wave (batch occupancy R̄ / E[max_G R]).
    Weight-update pause: the worker swaps a new version in between waves, pausing generation while each
        GPU copies its shard host→device: t_wu = N·b/(t·p) / (β_h2d·10⁹). A wave then lasts
        T_wave + t_wu. Exact when a version is out at every wave boundary (step interval Δ ≤ T_wave,
        the usual case of asynchronous RL with long responses); with slower steps the loss is
        t_wu/Δ < t_wu/T_wave, so the estimate is pessimistic by at most that difference.
    Interruption and re-prefill (spot): a reclaim interrupts the replica's B resident sequences, which
        migrate token-level to survivors; a survivor re-prefills each one's context c̄ = P + E[R²]/(2E[R])
        with the new owner's weights: t_rp = B·(2N·c̄ + 2·L·H·c̄²)/(t·p·F·MFU_prefill) (compute-bound: this
        term costs a low-FLOPs GPU the most). Reclaims arrive n·λ per replica-hour, so a serving replica
        spends a share ρ = n·λ·t_rp/3600 of its time re-prefilling others' partials (below).

Group latency
    A group holds its G slots for one wave, so its expected latency is T_wave (above). At η = 0 the whole
    batch is requested at once and the step waits for its slowest group, so the batch latency is the
    expected longest of B_step responses instead: Q = E[max_B R]·t_step + prefill + reward.

Training strategy (DP d × TP t × PP p GPUs of one type; FSDP shards states over d)
    FLOPs per token  f = (6 + 2·recompute)·N + 12·L·H·(P + R̄)·(1 + recompute/3)
    compute          C = tokens_step·f / (d·t·p·F·MFU_train), stretched by the 1F1B bubble (p − 1)/m with
                     m = micro-batches per DP rank
    gradient sync    ring all-reduce 2(d−1)/d·(2N/(t·p)) bytes per GPU (FSDP: all-gather ×2 + reduce-scatter,
                     3(d−1)/d), over the intra-node link when the DP group is inside one node, else over the
                     node's NIC share inter_node_GBps / GPUs used per node; a fraction `grad_comm_overlap`
                     hides behind backward.
    TP               6 all-reduces per layer per token (fwd, bwd, recompute) of H·b bytes, ring, intra-node.
    optimizer        reads and writes the fp32 states once: 2·16N/(t·p·(d if FSDP)) bytes over HBM.
    memory per GPU   states 16N/(t·p·(d if FSDP)) + activations (checkpointed layer inputs 2·H·L/p per token
                     for p micro-batches in flight, plus one layer's working set 34·H per token, plus the
                     bf16 logits V·b per token, all /t with sequence parallelism) + overhead ≤ HBM·u_mem.
    tokens/s         tokens_step / (C·(1 + bubble) + (1 − overlap)·grad + TP + PP + optimizer)

Weight sync
    bytes N·b from the trainer to the first worker of a pool over the link between them (same pool:
    the pool's node-to-node bandwidth; different pools: the cluster's inter-pool bandwidth), plus one
    pipelined relay hop inside the rollout pool: t_ws = N·b/(link·η_ws) + N·b/(pool_link·η_ws).
    A version cannot be published faster than it can leave: throughput ≤ tokens_step / t_ws.

Calibration (calibration.py)
    `CostModelSettings.calibration` holds measured factors f per (GPU type, phase); with one, decode
    divides max(t_mem, t_cmp) by f_decode, prefill divides its time by f_prefill, and training divides C
    and the optimizer's time (what runs on the GPU) by f_train, so each phase's predicted rate is
    multiplied by f. Collectives, pipeline hand-offs and weight sync are link-bound and not corrected;
    batch sizes and memory are unchanged. No profile: every f is 1 and nothing changes.

Spot availability
    A spot node is reclaimed λ times per node-hour and its replacement (new node, image pull, weight
    pull) takes `spot_recovery_hours` h; a replica spanning n nodes is up a fraction
    a = 1 / (1 + n·λ·h) of the time (renewal process: mean up time 1/(nλ), mean down time h), so its
    rate counts a·(1 − ρ)·tokens/s: in-flight responses migrate to survivors (token-level), which pay the
    re-prefill share ρ above; nothing else is lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

from hexrl.api.models import RLJobSpec
from hexrl.sched.calibration import CalibrationProfile
from hexrl.sched.catalog import GPUSpec

__all__ = [
    "CostModelSettings",
    "DecodeEstimate",
    "PhaseRates",
    "TrainEstimate",
    "Workload",
    "decode_tokens_per_second",
    "expected_max_response",
    "group_latency_seconds",
    "mean_resident_response",
    "phase_rates",
    "reprefill_seconds",
    "spot_availability",
    "training_tokens_per_second",
    "weight_sync_seconds",
    "weight_update_seconds",
]

_DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
_NORMAL = NormalDist()


@dataclass(frozen=True)
class CostModelSettings:
    """Constants of the cost model. Each is a plain physical or empirical number, not a fitted knob; only
    `calibration` is measured (per GPU type and phase, see calibration.py)."""

    hbm_efficiency: float = 0.75
    """Fraction of peak HBM bandwidth reached by decode kernels (0–1; default 0.75: paged-attention and
    GEMV kernels reach 70–85 % of peak on H100-class parts)."""
    decode_flops_efficiency: float = 0.5
    """Fraction of peak tensor FLOPS reached when decode becomes compute-bound at large batch (0–1)."""
    prefill_mfu: float = 0.5
    """Model FLOPs utilisation of prefill (large GEMMs; 0–1; default 0.5) on GPU types whose catalog entry
    has no measured `prefillMfu`."""
    train_mfu: float = 0.40
    """Model FLOPs utilisation of the training step, excluding communication modelled separately
    (0–1; default 0.40, typical for Megatron/FSDP dense models at this scale) on GPU types whose catalog
    entry has no measured `trainMfu` (docs/calibration-sources.md shows both against published runs)."""
    memory_utilization: float = 0.90
    """Fraction of HBM the engines may allocate (vLLM's gpu_memory_utilization; 0–1; default 0.90)."""
    runtime_overhead_gb: float = 2.0
    """Per-GPU memory for the CUDA context, NCCL buffers and workspaces, GB (default 2)."""
    max_sequences_per_replica: int = 256
    """Upper bound on concurrent sequences of one inference engine (vLLM max_num_seqs; default 256)."""
    response_length_sigma: float = 0.8
    """σ of the lognormal response-length distribution (dimensionless; default 0.8: reasoning traces
    have a long tail, the 99th percentile near 4–5× the median)."""
    reward_seconds_per_sample: float = 0.005
    """CPU seconds to score one response (a verifiable math/code check; default 5 ms)."""
    reward_workers_per_replica: int = 8
    """Reward scoring processes per rollout replica (they run in parallel; default 8)."""
    recompute: bool = True
    """Full activation checkpointing in training: one extra forward (8N instead of 6N FLOPs per token)
    in exchange for storing only each layer's input (default on: RL sequences are long)."""
    train_tokens_per_micro_batch: int = 16384
    """Tokens packed into one training micro-batch (dynamic batching; at least one full sequence)."""
    activation_working_bytes_per_token_hidden: float = 34.0
    """Bytes per token per hidden unit of one transformer layer's activations in bf16 (Korthikanti
    et al. 2022, 34·s·b·h with flash attention); only one layer is live under full recompute."""
    optimizer_bytes_per_param: float = 12.0
    """Adam in mixed precision: fp32 master weights, m and v (4 + 4 + 4 bytes per parameter)."""
    gradient_bytes_per_param: float = 2.0
    """bf16 gradients (bytes per parameter)."""
    grad_comm_overlap: float = 0.5
    """Fraction of the gradient collective hidden behind the backward pass (0–1; default 0.5)."""
    collective_latency_seconds: float = 10e-6
    """Fixed latency of one small collective (NCCL launch + hop), seconds (default 10 µs)."""
    weight_sync_efficiency: float = 0.8
    """Fraction of link bandwidth a chunked, parallel weight pull reaches (0–1; default 0.8)."""
    weight_load_gbps: float = 20.0
    """Host-to-device bandwidth at which each rollout GPU copies its shard of a new version into the engine,
    GB/s (default 20: pinned copies over PCIe Gen4 ×16 reach 20–25 GB/s). Generation pauses for the copy;
    the download before it overlaps generation (module docstring, "Weight-update pause")."""
    spot_recovery_hours: float = 0.25
    """Hours from a spot reclaim until a replacement replica serves again (node + image + weights)."""
    surplus_per_policy_lag: float = 0.05
    """Rollout capacity the planner may buy beyond the trainer's rate, per unit of η, as a fraction of
    the throughput (plus one replica for integrality). A larger η lets the buffer absorb preemption and
    length jitter, so a little surplus keeps the trainer busy; beyond that it only costs money."""
    migration_cost_per_gpu: float = 0.002
    """replan(): throughput-equivalent cost of moving one GPU's worth of work, as a fraction of the
    current plan's throughput (a restart loses a few minutes of that GPU's output)."""
    trainer_move_threshold: float = 0.10
    """replan(): a running trainer moves (a restart from its last checkpoint) only when it no longer fits
    or the best plan with it moved is more than this fraction faster than the best plan keeping it."""
    calibration: CalibrationProfile = field(default_factory=CalibrationProfile)
    """Measured factors per (GPU type, phase) multiplying the predicted decode, prefill and on-device
    training rates (module docstring, "Calibration"). Default: empty, every factor 1 (the catalog alone)."""


@dataclass(frozen=True)
class Workload:
    """The numbers of an RLJob the cost model reads (derived once from the spec; immutable)."""

    parameters: float
    layers: int
    hidden: int
    kv_heads: int
    head_dim: int
    vocab: int
    dtype_bytes: int
    prompt_tokens: int
    mean_new_tokens: int
    max_new_tokens: int
    distribution: str
    group_size: int
    prompts_per_step: int
    max_policy_lag: int

    @classmethod
    def from_spec(cls, spec: RLJobSpec) -> Workload:
        s, g, a = spec.model.shape, spec.generation, spec.algorithm
        return cls(
            parameters=float(s.parameters),
            layers=s.layers,
            hidden=s.hidden_size,
            kv_heads=s.kv_heads,
            head_dim=s.head_dim,
            vocab=s.vocab,
            dtype_bytes=_DTYPE_BYTES[str(s.dtype)],
            prompt_tokens=g.prompt_tokens,
            mean_new_tokens=g.mean_new_tokens,
            max_new_tokens=g.max_new_tokens,
            distribution=str(g.length_distribution),
            group_size=a.group_size,
            prompts_per_step=a.prompts_per_step,
            max_policy_lag=spec.staleness.max_policy_lag,
        )

    @property
    def weight_bytes(self) -> float:
        return self.parameters * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> float:
        return 2.0 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes

    @property
    def tokens_per_sample(self) -> float:
        """Prompt + mean response: what training consumes per trajectory."""
        return float(self.prompt_tokens + self.mean_new_tokens)

    @property
    def samples_per_step(self) -> int:
        return self.prompts_per_step * self.group_size

    @property
    def tokens_per_step(self) -> float:
        return self.samples_per_step * self.tokens_per_sample

    @property
    def max_sequence_tokens(self) -> int:
        return self.prompt_tokens + self.max_new_tokens


# ------------------------------------------------------------------------------------- lengths


def _lognormal_mu(mean: float, sigma: float) -> float:
    return math.log(mean) - sigma * sigma / 2


def _uniform_bounds(w: Workload) -> tuple[float, float]:
    b = float(min(w.max_new_tokens, 2 * w.mean_new_tokens))
    return 2.0 * w.mean_new_tokens - b, b


def expected_max_response(w: Workload, n: int, settings: CostModelSettings) -> float:
    """Expected longest of n responses (tokens), ≤ maxNewTokens (see the module docstring)."""
    n = max(1, n)
    if w.distribution == "fixed" or w.mean_new_tokens >= w.max_new_tokens:
        return float(w.mean_new_tokens)
    if w.distribution == "uniform":
        a, b = _uniform_bounds(w)
        return a + (b - a) * n / (n + 1)
    sigma = settings.response_length_sigma
    q = (n - 0.375) / (n + 0.25)
    value = math.exp(_lognormal_mu(w.mean_new_tokens, sigma) + sigma * _NORMAL.inv_cdf(q))
    return float(min(w.max_new_tokens, max(value, w.mean_new_tokens)))


def mean_resident_response(w: Workload, settings: CostModelSettings) -> float:
    """E[R²]/(2E[R]): mean generated tokens held in the KV cache by a running sequence."""
    m = float(w.mean_new_tokens)
    if w.distribution == "fixed":
        return m / 2
    if w.distribution == "uniform":
        a, b = _uniform_bounds(w)
        return (a * a + a * b + b * b) / 3 / (2 * m)
    return min(float(w.max_new_tokens), m * math.exp(settings.response_length_sigma**2) / 2)


# -------------------------------------------------------------------------------------- rollout


@dataclass(frozen=True)
class DecodeEstimate:
    """Predicted behaviour of one rollout replica."""

    batch: int
    """Concurrent sequences (KV-cache and engine bound)."""
    step_seconds: float
    """One decode step for the whole batch."""
    bound: str
    """hbm | compute: what limits a decode step."""
    wave_seconds: float
    """A wave of `batch` sequences: expected longest response of a group + prefill + reward + the
    weight-update pause."""
    weight_update_seconds: float
    """Generation paused per version swapped in (each GPU copies its shard host→device)."""
    samples_per_second: float
    tokens_per_second: float
    """Prompt + response tokens per second, as consumed by training."""
    generated_tokens_per_second: float
    kv_cache_gb: float


def decode_tokens_per_second(
    gpu: GPUSpec,
    w: Workload,
    tensor_parallel: int,
    pipeline_parallel: int,
    settings: CostModelSettings,
    inter_node_gbps: float | None = None,
    memory_gb: float | None = None,
) -> DecodeEstimate | None:
    """Throughput of a TP×PP replica of `gpu`, or None when the weights plus one full sequence do not fit."""
    t, p, s = tensor_parallel, pipeline_parallel, settings
    hbm_gb = memory_gb or gpu.hbm_gb
    usable = t * p * (hbm_gb * s.memory_utilization - s.runtime_overhead_gb) * 1e9
    kv_budget = usable - w.weight_bytes
    k = w.kv_bytes_per_token
    if kv_budget < k * w.max_sequence_tokens:
        return None
    ctx = w.prompt_tokens + mean_resident_response(w, s)
    batch = int(min(s.max_sequences_per_replica, kv_budget // (k * ctx)))
    if batch < 1:
        return None
    t_mem, t_cmp = _decode_roofline(gpu, w, batch, ctx, t, p, s)
    msg = batch * w.hidden * w.dtype_bytes
    t_tp = 0.0
    if t > 1:
        t_tp = 2 * w.layers * (2 * (t - 1) / t * msg / (gpu.intra_node_gbps * 1e9) + s.collective_latency_seconds)
    t_pp = 0.0
    if p > 1:
        link = (inter_node_gbps or gpu.inter_node_gbps) * 1e9
        t_pp = (p - 1) * (msg / link + s.collective_latency_seconds)
    step = max(t_mem, t_cmp) / s.calibration.factor(gpu.name, "decode") + t_tp + t_pp
    longest = expected_max_response(w, w.group_size, s)
    prefill = _prefill_seconds(gpu, w, batch / w.group_size, t * p, s)
    reward = batch * s.reward_seconds_per_sample / max(1, s.reward_workers_per_replica)
    pause = weight_update_seconds(w, t * p, s)
    wave = longest * step + prefill + reward + pause
    sps = batch / wave
    return DecodeEstimate(
        batch=batch,
        step_seconds=step,
        bound="hbm" if t_mem >= t_cmp else "compute",
        wave_seconds=wave,
        weight_update_seconds=pause,
        samples_per_second=sps,
        tokens_per_second=sps * w.tokens_per_sample,
        generated_tokens_per_second=sps * w.mean_new_tokens,
        kv_cache_gb=kv_budget / 1e9,
    )


def _decode_roofline(
    gpu: GPUSpec, w: Workload, batch: int, ctx: float, t: int, p: int, s: CostModelSettings
) -> tuple[float, float]:
    """(t_mem, t_cmp) of one decode step of `batch` sequences at mean context `ctx` (uncalibrated)."""
    bw = gpu.hbm_tbps * 1e12 * s.hbm_efficiency
    t_mem = (w.weight_bytes + batch * ctx * w.kv_bytes_per_token / p) / (t * bw)
    flops = batch * (2 * w.parameters + 4 * w.layers * w.hidden * ctx)
    t_cmp = flops / (t * p * gpu.tflops_bf16 * 1e12 * s.decode_flops_efficiency)
    return t_mem, t_cmp


def train_mfu(gpu: GPUSpec, s: CostModelSettings) -> float:
    """The training FLOPs utilisation on `gpu`: the catalog's measured one for its type, else the default."""
    return gpu.train_mfu if gpu.train_mfu is not None else s.train_mfu


def prefill_mfu(gpu: GPUSpec, s: CostModelSettings) -> float:
    """The prefill FLOPs utilisation on `gpu`: the catalog's measured one for its type, else the default."""
    return gpu.prefill_mfu if gpu.prefill_mfu is not None else s.prefill_mfu


def _prefill_seconds(gpu: GPUSpec, w: Workload, prompts: float, gpus: int, s: CostModelSettings) -> float:
    """Seconds to prefill `prompts` prompts of P tokens on `gpus` GPUs (calibrated)."""
    prompt_flops = 2 * w.parameters * w.prompt_tokens + 2 * w.layers * w.hidden * w.prompt_tokens**2
    seconds = prompts * prompt_flops / (gpus * gpu.tflops_bf16 * 1e12 * prefill_mfu(gpu, s))
    return seconds / s.calibration.factor(gpu.name, "prefill")


def weight_update_seconds(w: Workload, gpus: int, s: CostModelSettings) -> float:
    """t_wu = N·b/gpus / β_h2d: seconds a replica of `gpus` GPUs pauses to swap one version in."""
    return w.weight_bytes / max(1, gpus) / (s.weight_load_gbps * 1e9)


def reprefill_seconds(gpu: GPUSpec, w: Workload, sequences: float, gpus: int, s: CostModelSettings) -> float:
    """t_rp: seconds `gpus` GPUs of `gpu` take to re-prefill `sequences` migrated partial responses, each at
    the mean resident context c̄ = P + E[R²]/(2E[R]) (2N·c̄ + 2·L·H·c̄² FLOPs each; calibrated as prefill)."""
    ctx = w.prompt_tokens + mean_resident_response(w, s)
    flops = sequences * (2 * w.parameters * ctx + 2 * w.layers * w.hidden * ctx * ctx)
    seconds = flops / (gpus * gpu.tflops_bf16 * 1e12 * prefill_mfu(gpu, s))
    return seconds / s.calibration.factor(gpu.name, "prefill")


def group_latency_seconds(e: DecodeEstimate, w: Workload, settings: CostModelSettings, responses: int) -> float:
    """Expected seconds until the longest of `responses` responses, all started together on a replica with
    estimate `e`, has finished (prefill and reward included): the wave with E[max_n R] for E[max_G R]."""
    extra = expected_max_response(w, responses, settings) - expected_max_response(w, w.group_size, settings)
    return e.wave_seconds + extra * e.step_seconds


# ------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainEstimate:
    """Predicted behaviour of one training strategy."""

    tokens_per_second: float
    step_seconds: float
    compute_seconds: float
    communication_seconds: float
    memory_gb_per_gpu: float


def _train_flops_per_token(w: Workload, s: CostModelSettings) -> float:
    """f = (6 + 2·recompute)·N + 12·L·H·(P + R̄)·(1 + recompute/3)."""
    return (6 + 2 * s.recompute) * w.parameters + 12 * w.layers * w.hidden * w.tokens_per_sample * (
        1 + s.recompute / 3
    )


def training_memory_gb(
    w: Workload, dp: int, tp: int, pp: int, fsdp: bool, settings: CostModelSettings
) -> float:
    """Peak memory per GPU of a DP×TP×PP (FSDP) training strategy, GB (see the module docstring)."""
    s = settings
    per_param = w.dtype_bytes + s.gradient_bytes_per_param + s.optimizer_bytes_per_param
    shards = tp * pp * (dp if fsdp else 1)
    states = w.parameters * per_param / shards
    if fsdp and dp > 1:
        # one gathered layer's bf16 weights (the unit FSDP materialises at a time)
        states += w.parameters / w.layers * w.dtype_bytes / tp
    tokens = max(w.max_sequence_tokens, s.train_tokens_per_micro_batch)
    checkpoints = pp * tokens * 2.0 * w.hidden * (w.layers / pp) if s.recompute else 0.0
    layer_acts = tokens * w.hidden * s.activation_working_bytes_per_token_hidden
    if not s.recompute:
        layer_acts *= w.layers / pp
    logits = tokens * w.vocab * w.dtype_bytes  # bf16 logits of one micro-batch (loss computed in chunks)
    acts = (checkpoints + layer_acts + logits) / tp
    return (states + acts) / 1e9 + s.runtime_overhead_gb


def training_tokens_per_second(
    gpu: GPUSpec,
    w: Workload,
    dp: int,
    tp: int,
    pp: int,
    fsdp: bool,
    settings: CostModelSettings,
    gpus_per_node: int,
    inter_node_gbps: float | None = None,
    memory_gb: float | None = None,
) -> TrainEstimate | None:
    """Training throughput (tokens consumed/s) of DP×TP×PP on `gpu`, or None when it does not fit."""
    s = settings
    mem = training_memory_gb(w, dp, tp, pp, fsdp, s)
    if mem > (memory_gb or gpu.hbm_gb) * s.memory_utilization:
        return None
    gpus = dp * tp * pp
    tokens = w.tokens_per_step
    f_train = s.calibration.factor(gpu.name, "train")
    compute = tokens * _train_flops_per_token(w, s) / (gpus * gpu.tflops_bf16 * 1e12 * train_mfu(gpu, s)) / f_train
    micro_tokens = max(w.max_sequence_tokens, s.train_tokens_per_micro_batch)
    micro_batches = max(1, math.ceil(tokens / (dp * micro_tokens)))
    bubble = (pp - 1) / micro_batches
    inter = (inter_node_gbps or gpu.inter_node_gbps) * 1e9
    intra = gpu.intra_node_gbps * 1e9
    single_node = gpus <= gpus_per_node
    grad = 0.0
    if dp > 1:
        shard = w.parameters * w.dtype_bytes / (tp * pp)
        factor = 3.0 if fsdp else 2.0
        link = intra if single_node else inter / min(gpus, gpus_per_node)
        grad = factor * (dp - 1) / dp * shard / link + s.collective_latency_seconds * math.log2(dp)
    tp_comm = 0.0
    if tp > 1:
        per_rank_tokens = tokens / dp
        calls = (6 if s.recompute else 4) * w.layers / pp
        tp_comm = calls * (2 * (tp - 1) / tp * per_rank_tokens * w.hidden * w.dtype_bytes / intra)
        tp_comm += calls * micro_batches * s.collective_latency_seconds
    pp_comm = 0.0
    if pp > 1:
        link = intra if single_node else inter / min(gpus, gpus_per_node)
        pp_comm = 2 * micro_batches * (micro_tokens * w.hidden * w.dtype_bytes / link + s.collective_latency_seconds)
    state_shards = tp * pp * (dp if fsdp else 1)
    optimizer = 2 * w.parameters * (s.optimizer_bytes_per_param + 4) / state_shards / (gpu.hbm_tbps * 1e12) / f_train
    comm = (1 - s.grad_comm_overlap) * grad + tp_comm + pp_comm
    step = compute * (1 + bubble) + comm + optimizer
    return TrainEstimate(
        tokens_per_second=tokens / step,
        step_seconds=step,
        compute_seconds=compute * (1 + bubble),
        communication_seconds=comm,
        memory_gb_per_gpu=mem,
    )


# ---------------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class PhaseRates:
    """The phase rates a calibration measures, as the cost model predicts them on one GPU (TP = PP = 1)."""

    decode: float
    """Generated tokens/s of `batch` sequences decoding at the mean resident context P + E[R²]/(2E[R])
    (the roofline step alone: no prefill, reward or collectives)."""
    prefill: float
    """Prompt tokens/s of prefilling `batch` distinct prompts of P tokens."""
    train: float
    """Tokens/s of one training step over `batch` sequences of P + R̄ tokens (compute + optimizer)."""


def phase_rates(gpu: GPUSpec, w: Workload, batch: int, settings: CostModelSettings) -> PhaseRates:
    """Predicted decode, prefill and training rates of `batch` sequences of `w` on one `gpu`, with the same
    terms (and the same calibration) as `decode_tokens_per_second` and `training_tokens_per_second`."""
    s = settings
    ctx = w.prompt_tokens + mean_resident_response(w, s)
    t_mem, t_cmp = _decode_roofline(gpu, w, batch, ctx, 1, 1, s)
    decode = batch / (max(t_mem, t_cmp) / s.calibration.factor(gpu.name, "decode"))
    prefill = batch * w.prompt_tokens / _prefill_seconds(gpu, w, batch, 1, s)
    tokens = batch * w.tokens_per_sample
    compute = tokens * _train_flops_per_token(w, s) / (gpu.tflops_bf16 * 1e12 * train_mfu(gpu, s))
    optimizer = 2 * w.parameters * (s.optimizer_bytes_per_param + 4) / (gpu.hbm_tbps * 1e12)
    train = tokens / ((compute + optimizer) / s.calibration.factor(gpu.name, "train"))
    return PhaseRates(decode=decode, prefill=prefill, train=train)


# ---------------------------------------------------------------------------------- weight sync


def weight_sync_seconds(w: Workload, link_gbps: float, pool_link_gbps: float, settings: CostModelSettings) -> float:
    """Seconds to bring a new version from the trainer to a rollout pool (one hop + one relay hop)."""
    eff = settings.weight_sync_efficiency
    return w.weight_bytes / (link_gbps * 1e9 * eff) + w.weight_bytes / (pool_link_gbps * 1e9 * eff)


def spot_availability(
    preemptions_per_node_hour: float, nodes: int, settings: CostModelSettings, reprefill: float = 0.0
) -> float:
    """Expected share of time a replica spanning `nodes` spot nodes generates its own work: up a fraction
    1/(1 + n·λ·h), and while up it re-prefills partials migrated from reclaimed replicas a share
    ρ = n·λ·t_rp/3600 (`reprefill` = t_rp seconds, see `reprefill_seconds`): a·(1 − ρ)."""
    reclaims_per_hour = max(1, nodes) * max(0.0, preemptions_per_node_hour)
    up = 1.0 / (1.0 + reclaims_per_hour * settings.spot_recovery_hours)
    return up * max(0.0, 1.0 - reclaims_per_hour * max(0.0, reprefill) / 3600.0)
