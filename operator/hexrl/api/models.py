"""The RLJob API: pydantic v2 models of spec and status (group hexrl.dev, version v1alpha1).

These models are the single source of truth for the RLJob custom resource. The CRD in `crds/` is
generated from them (`make crds`, see `hexrl.api.crd`); the operator, the planner, the simulator and the
workers all read jobs through them. Field names are camelCase on the wire (the Kubernetes convention)
and snake_case in Python; `RLJob.model_validate(obj)` accepts either.

Rules that span fields are written twice on purpose: as CEL expressions (`x-kubernetes-validations`,
enforced by the API server) and as pydantic validators (enforced for files read by the CLI), so a bad
job is rejected with the same sentence wherever it enters.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from hexrl.api.quantity import QUANTITY_MAX_LENGTH, QUANTITY_PATTERN, parse_quantity, scale_quantity

GROUP = "hexrl.dev"
VERSION = "v1alpha1"
KIND = "RLJob"
PLURAL = "rljobs"
SINGULAR = "rljob"
SHORT_NAMES = ["rlj"]
API_VERSION = f"{GROUP}/{VERSION}"
MAX_NAME_LENGTH = 40
"""Longest RLJob name: children are named `<job>-coordinator`, `<job>-trainer-…` (DNS labels, ≤ 63)."""
MAX_SAMPLES_PER_STEP = 1_048_576
"""Largest promptsPerStep × groupSize (2^20): the coordinator, the trainer and the simulator hold a step's samples
in memory; typical steps are a few thousand."""
INT64_MAX = 2**63 - 1
"""Largest integer the API server stores (int64); Python would take any size and fail later in the cost model."""


class _Model(BaseModel):
    """Base: camelCase aliases, unknown fields rejected, populate by either name."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=False,
        use_enum_values=True,
        allow_inf_nan=False,  # "Infinity"/.nan is never a budget or a rate (and JSON cannot carry it to the API server)
    )
    # CEL rules for the CRD: list of (rule, message[, fieldPath]) attached to this object's schema.
    cel_rules: ClassVar[list[dict[str, str]]] = []

    def wire(self) -> dict[str, Any]:
        """The object as it appears in YAML/JSON on the wire (camelCase, no unset optionals)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """true/false is not a number (pydantic would read `layers: true` as 1, the API server refuses it), and an
        integer must fit the API server's int64."""
        if info.field_name is None or not isinstance(value, int):
            return value
        annotation = cls.model_fields[info.field_name].annotation
        types = get_args(annotation) or (annotation,)
        if isinstance(value, bool):
            if bool not in types and (int in types or float in types):
                raise ValueError("must be a number, not true or false")
        elif abs(value) > INT64_MAX:
            raise ValueError(f"must be at most {INT64_MAX:,} in size")
        return value


# The data and prompt fields live in their own module, which builds on `_Model` (hence imported here).
from hexrl.api.dataspec import DatasetSpec, PromptSpec  # noqa: E402

# ---------------------------------------------------------------------------------------------- model


class ModelSource(_Model):
    """Where the initial weights come from. Exactly one of pvc, uri, localPath or builtin."""

    pvc: str | None = Field(None, description="PersistentVolumeClaim holding the model directory.", min_length=1)
    path: str | None = Field(None, description="Path of the HF model directory inside the PVC or the local disk.")
    uri: str | None = Field(None, description="Object-store URI of the model directory (s3://, gs://, https://).")
    local_path: str | None = Field(None, description="A local HF model directory (for `hexrl run --local`).")
    builtin: str | None = Field(
        None,
        description="A model built from `shape` with random weights, no download (e.g. `tiny-random`).",
    )

    cel_rules: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "[has(self.pvc), has(self.uri), has(self.localPath), has(self.builtin)]"
            ".filter(x, x).size() == 1",
            "message": "model.source needs exactly one of pvc, uri, localPath or builtin",
        },
        {
            "rule": "!has(self.pvc) || has(self.path)",
            "message": "model.source.path is required when model.source.pvc is set",
        },
    ]

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        given = [x for x in (self.pvc, self.uri, self.local_path, self.builtin) if x is not None]
        if len(given) != 1:
            raise ValueError("model.source needs exactly one of pvc, uri, localPath or builtin")
        if self.pvc is not None and self.path is None:
            raise ValueError("model.source.path is required when model.source.pvc is set")
        return self


class DType(StrEnum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


class ModelShape(_Model):
    """Architecture numbers the cost model needs (dense decoder-only transformer)."""

    parameters: float = Field(..., gt=0, description="Total parameter count, e.g. 1.5e9.")
    layers: int = Field(..., ge=1, le=1024, description="Number of transformer layers.")
    hidden_size: int = Field(..., ge=1, description="Model (residual stream) width.")
    kv_heads: int = Field(..., ge=1, description="Key/value heads (GQA groups).")
    head_dim: int = Field(..., ge=1, description="Dimension of one attention head.")
    vocab: int = Field(..., ge=1, description="Vocabulary size.")
    attention_heads: int | None = Field(None, ge=1, description="Query heads; defaults to hiddenSize/headDim.")
    intermediate_size: int | None = Field(None, ge=1, description="MLP width; defaults to 4×hiddenSize.")
    dtype: DType = Field(DType.bf16, description="Weight and activation dtype for rollout and training.")


class ModelSpec(_Model):
    """The policy model: a name, where its weights come from, and its shape (for the cost model)."""

    name: str = Field(..., min_length=1, description="Informational name, e.g. Qwen/Qwen2.5-1.5B-Instruct.")
    source: ModelSource
    shape: ModelShape


# ------------------------------------------------------------------------------------------ algorithm


class AlgorithmName(StrEnum):
    """Critic-free advantage estimators the trainer implements (`hexrl_workers.trainer.algorithm`)."""

    grpo = "grpo"
    rloo = "rloo"
    dr_grpo = "dr_grpo"


class LRSchedule(StrEnum):
    constant = "constant"
    cosine = "cosine"


class AlgorithmSpec(_Model):
    """The RL algorithm; all variants train with the decoupled PPO objective (AReaL)."""

    name: AlgorithmName = Field(
        AlgorithmName.grpo,
        description="Advantage estimator: grpo (group-normalised), rloo (leave-one-out baseline) or dr_grpo "
        "(no std normalisation, token sum over a constant length). All are critic-free.",
    )
    group_size: int = Field(16, ge=1, le=1024, description="Responses sampled per prompt (GRPO group).")
    prompts_per_step: int = Field(64, ge=1, le=65536, description="Prompts per training step (B = this × groupSize).")
    learning_rate: float = Field(1.0e-6, gt=0, le=1.0, description="Optimizer learning rate.")
    lr_schedule: LRSchedule = Field(
        LRSchedule.constant,
        description="constant, or cosine decay from learningRate to 0 over totalSteps (constant when unset).",
    )
    clip_epsilon: float = Field(0.2, gt=0, le=1.0, description="PPO clip range against the proximal policy.")
    kl_coef: float = Field(0.0, ge=0, description="Weight of the KL penalty to the reference policy (0 = none).")
    decoupled: bool = Field(True, description="Decoupled PPO objective (behaviour vs proximal policy).")
    total_steps: int | None = Field(None, ge=1, description="Stop after this many trainer steps (unset = forever).")
    micro_batch_size: int = Field(8, ge=1, description="Sequences per forward/backward micro-batch.")
    ppo_minibatches: int = Field(
        1, ge=1, le=64,
        description="Optimizer steps per batch (1: one step, π_prox = the policy before it; more make the clip "
        "against π_prox bite, with π_prox's log-probs computed first).",
    )
    seed: int = Field(0, ge=0, description="Random seed for data order, sampling and init.")

    cel_rules: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "!has(self.groupSize) || self.groupSize >= 2",
            "message": "algorithm.groupSize must be at least 2 (advantages are relative to the group)",
            "fieldPath": ".groupSize",
        },
        {
            "rule": f"!has(self.groupSize) || !has(self.promptsPerStep) || "
            f"self.promptsPerStep * self.groupSize <= {MAX_SAMPLES_PER_STEP}",
            "message": f"algorithm.promptsPerStep × algorithm.groupSize must be at most {MAX_SAMPLES_PER_STEP:,} "
            "samples per step (use fewer prompts per step or a smaller group)",
        },
    ]

    @field_validator("name", mode="before")
    @classmethod
    def _no_critic(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() == "ppo":
            raise ValueError(
                "algorithm.name 'ppo' needs a value critic, which hexrl does not train; use grpo, rloo or dr_grpo "
                "(critic-free, trained with the same clipped PPO objective; groupSize >= 2)"
            )
        return value

    @model_validator(mode="after")
    def _group_for_relative_advantages(self) -> AlgorithmSpec:
        if self.group_size < 2:
            raise ValueError("algorithm.groupSize must be at least 2 (advantages are relative to the group)")
        if self.prompts_per_step * self.group_size > MAX_SAMPLES_PER_STEP:
            raise ValueError(
                f"algorithm.promptsPerStep × algorithm.groupSize must be at most {MAX_SAMPLES_PER_STEP:,} "
                "samples per step (use fewer prompts per step or a smaller group)"
            )
        return self


# ----------------------------------------------------------------------------------------- generation


class LengthDistribution(StrEnum):
    lognormal = "lognormal"
    fixed = "fixed"
    uniform = "uniform"


class GenerationSpec(_Model):
    """Rollout lengths and sampling; the planner sizes decoding from the length distribution."""

    prompt_tokens: int = Field(..., ge=1, le=1_048_576, description="Mean prompt length in tokens.")
    max_new_tokens: int = Field(..., ge=1, le=1_048_576, description="Maximum generated tokens per response.")
    mean_new_tokens: int = Field(..., ge=1, le=1_048_576, description="Mean generated tokens per response.")
    length_distribution: LengthDistribution = Field(
        LengthDistribution.lognormal,
        description="Shape of the response-length distribution (heavy-tailed lognormal by default).",
    )
    temperature: float = Field(1.0, ge=0, le=10, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    max_prompt_tokens: int | None = Field(
        None, ge=1, le=1_048_576,
        description="Longest prompt in tokens (after the chat template); a longer one is discarded "
        "(prompt-too-long, counted) instead of truncated. Unset: 8 × promptTokens, at least 8192.",
    )

    cel_rules: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "self.meanNewTokens <= self.maxNewTokens",
            "message": "generation.meanNewTokens must not exceed generation.maxNewTokens",
        }
    ]

    @model_validator(mode="after")
    def _mean_le_max(self) -> GenerationSpec:
        if self.mean_new_tokens > self.max_new_tokens:
            raise ValueError("generation.meanNewTokens must not exceed generation.maxNewTokens")
        return self


# ---------------------------------------------------------------------------------- staleness / budget


class StalenessSpec(_Model):
    """The staleness bound η of fully asynchronous RL (AReaL)."""

    max_policy_lag: int = Field(
        4, ge=0, le=64, description="η: a trajectory of policy version v is trained only while i - v <= η."
    )


class BudgetSpec(_Model):
    """Maximise throughput under maxCostPerHour, or minimise cost to reach targetTokensPerSecond."""

    max_cost_per_hour: float | None = Field(None, gt=0, description="Upper bound on $/h for all the job's GPUs.")
    target_tokens_per_second: float | None = Field(
        None, gt=0, description="Training-consumed tokens/s to reach at minimum cost."
    )

    cel_rules: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "has(self.maxCostPerHour) || has(self.targetTokensPerSecond)",
            "message": "budget needs maxCostPerHour or targetTokensPerSecond (or both)",
        }
    ]

    @model_validator(mode="after")
    def _one_present(self) -> BudgetSpec:
        if self.max_cost_per_hour is None and self.target_tokens_per_second is None:
            raise ValueError("budget needs maxCostPerHour or targetTokensPerSecond (or both)")
        return self


# ------------------------------------------------------------------------------------------ placement


class SpotUse(StrEnum):
    forbidden = "forbidden"
    allowed = "allowed"
    preferred = "preferred"


class SpotPolicy(_Model):
    """Which stages may run on preemptible (spot) capacity."""

    rollout: SpotUse = Field(SpotUse.allowed, description="May rollout replicas run on spot capacity?")
    trainer: SpotUse = Field(SpotUse.forbidden, description="May the trainer run on spot capacity?")
    on_demand_rollout_floor: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Fraction of planned rollout throughput kept on on-demand capacity (progress in spot droughts).",
    )


class PlacementSpec(_Model):
    """Where the job may run: GPU types, node pools, spot policy, extra node labels."""

    gpu_types: list[str] | None = Field(None, min_length=1, description="Allow-list of GPU catalog names (unset = any).")
    pools: list[str] | None = Field(None, min_length=1, description="Allow-list of node pool names (unset = any).")
    spot: SpotPolicy = Field(default_factory=SpotPolicy)
    node_selector: dict[str, str] | None = Field(None, description="Extra node labels every pod requires.")


# --------------------------------------------------------------------------------- images and services


class PullPolicy(StrEnum):
    always = "Always"
    if_not_present = "IfNotPresent"
    never = "Never"


DEFAULT_IMAGE = "ghcr.io/hexrl/hexrl-workers:0.1.0"


class ImagesSpec(_Model):
    """Container images of the job's pods."""

    rollout: str = Field(DEFAULT_IMAGE, min_length=1, description="Image of the rollout workers.")
    trainer: str = Field(DEFAULT_IMAGE, min_length=1, description="Image of the trainer ranks.")
    coordinator: str = Field(DEFAULT_IMAGE, min_length=1, description="Image of the coordinator.")
    pull_policy: PullPolicy = Field(PullPolicy.if_not_present, description="imagePullPolicy for all pods.")


class WeightSyncMode(StrEnum):
    pull = "pull"
    broadcast = "broadcast"


class WeightSyncSpec(_Model):
    """How rollout workers get new policy versions from the trainer."""

    mode: WeightSyncMode = Field(WeightSyncMode.pull, description="pull: workers fetch versions themselves.")
    chunk_mb: int = Field(64, ge=1, le=4096, description="Chunk size of the weight service, MiB.")
    relay: bool = Field(True, description="Workers serve versions they hold to peers.")
    parallel_chunks: int = Field(4, ge=1, le=64, description="Concurrent chunk downloads per worker.")


class CheckpointSpec(_Model):
    """Where and how often the trainer checkpoints (atomically; resumed from the last complete one)."""

    pvc: str | None = Field(
        None, min_length=1,
        description="PVC for checkpoints, mounted at `path` in the trainer pods (unset = an emptyDir: a restarted "
        "trainer gang starts from scratch). It must be writable by the workers' group (the pods set fsGroup 10001).",
    )
    path: str = Field(
        "/checkpoints", pattern=r"^/", description="Absolute directory in the trainer containers where the checkpoint "
        "volume is mounted and checkpoints are written.",
    )
    every_steps: int = Field(50, ge=1, description="Checkpoint after every N trainer steps.")
    keep: int = Field(3, ge=1, le=1000, description="Complete checkpoints kept.")


from hexrl.api.rewardspec import RewardSpec  # noqa: E402  (builds on _Model above)

# ------------------------------------------------------------------------------------------ resources

Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=QUANTITY_MAX_LENGTH)]

DEFAULT_REQUESTS = {"cpu": "1", "memory": "2Gi"}
"""What a worker container requests when the RLJob says nothing (per role, per resource)."""
DEFAULT_LIMIT_FACTOR = 4
"""An unset limit is this many times the request: every container has a CPU and a memory limit, so one
runaway process cannot take a node's cores or memory from its neighbours, while a pod may still burst
into idle capacity beyond what it reserved."""


class ResourceAmounts(_Model):
    """CPU and memory as Kubernetes quantities (GPUs come from the plan, never from here)."""

    cpu: Quantity | None = Field(None, description="CPU cores, e.g. `250m` or `2`.")
    memory: Quantity | None = Field(None, description="Memory in bytes, e.g. `512Mi` or `4Gi`.")


def _limit_rule(resource: str) -> dict[str, str]:
    return {
        "rule": f"!has(self.limits) || !has(self.limits.{resource}) || !has(self.requests) || "
                f"!has(self.requests.{resource}) || "
                f"quantity(self.requests.{resource}).compareTo(quantity(self.limits.{resource})) <= 0",
        "message": f"resources: requests.{resource} must not exceed limits.{resource}",
    }


class RoleResources(_Model):
    """Requests and limits of a role's container; an unset request is the limit if given, else cpu 1, memory 2Gi;
    an unset limit is 4 times the request."""

    requests: ResourceAmounts = Field(
        default_factory=ResourceAmounts,
        description="What the scheduler reserves; an unset request is the limit if given, else cpu 1, memory 2Gi.",
    )
    limits: ResourceAmounts | None = Field(
        None, description="Upper bounds; an unset limit is 4 times the request (every container has limits)."
    )

    cel_rules: ClassVar[list[dict[str, str]]] = [_limit_rule("cpu"), _limit_rule("memory")]

    @model_validator(mode="after")
    def _requests_within_limits(self) -> RoleResources:
        for resource in ("cpu", "memory"):
            req, lim = getattr(self.requests, resource), getattr(self.limits, resource, None)
            if req is not None and lim is not None and parse_quantity(req) > parse_quantity(lim):
                raise ValueError(f"resources: requests.{resource} must not exceed limits.{resource}")
        return self

    def container_resources(self) -> dict[str, dict[str, str]]:
        """`resources` of the container (CPU and memory only): the defaults filled in as documented — an unset
        request is the limit if given, else `DEFAULT_REQUESTS`; an unset limit `DEFAULT_LIMIT_FACTOR` × the
        request."""
        limits: dict[str, str] = self.limits.wire() if self.limits else {}
        requests: dict[str, str] = self.requests.wire()
        for resource, default in DEFAULT_REQUESTS.items():
            requests.setdefault(resource, limits.get(resource, default))
            limits.setdefault(resource, scale_quantity(requests[resource], DEFAULT_LIMIT_FACTOR))
        return {"requests": requests, "limits": limits}


class ResourcesSpec(_Model):
    """CPU and memory of each role's pods, sized by what the job's processes use (GPUs come from the plan)."""

    coordinator: RoleResources = Field(default_factory=RoleResources, description="The coordinator pod.")
    trainer: RoleResources = Field(default_factory=RoleResources, description="Each trainer rank's pod.")
    rollout: RoleResources = Field(default_factory=RoleResources, description="Each rollout replica's pod.")


# ------------------------------------------------------------------------------------------------ spec

from hexrl.api.evalspec import EvalSpec, EvalSummary  # noqa: E402  (builds on _Model and DatasetSpec above)
from hexrl.api.outputspec import ExportSpec, TrackingSpec  # noqa: E402  (builds on _Model above)


class RLJobSpec(_Model):
    """What to train, with which budget and placement policy; the operator plans the rest."""

    model: ModelSpec
    algorithm: AlgorithmSpec = Field(default_factory=AlgorithmSpec)
    generation: GenerationSpec
    staleness: StalenessSpec = Field(default_factory=StalenessSpec)
    budget: BudgetSpec
    placement: PlacementSpec = Field(default_factory=PlacementSpec)
    images: ImagesSpec = Field(default_factory=ImagesSpec)
    weight_sync: WeightSyncSpec = Field(default_factory=WeightSyncSpec)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    reward: RewardSpec = Field(default_factory=RewardSpec)
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    evaluation: EvalSpec | None = Field(None, description="A held-out set evaluated every N steps (unset: none).")
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    export: ExportSpec = Field(default_factory=ExportSpec, description="The Hugging Face directory written at the end.")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="Training curves: TensorBoard, W&B, MLflow.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    suspend: bool = Field(False, description="Scale the job to zero pods, keeping its checkpoints.")


# ---------------------------------------------------------------------------------------------- status


class Phase(StrEnum):
    pending = "Pending"
    planning = "Planning"
    running = "Running"
    degraded = "Degraded"
    succeeded = "Succeeded"
    failed = "Failed"


class ConditionStatus(StrEnum):
    true = "True"
    false = "False"
    unknown = "Unknown"


class Condition(_Model):
    """metav1.Condition."""

    type: str
    status: ConditionStatus
    reason: Annotated[str, Field(min_length=1)]
    message: str = ""
    observed_generation: int | None = None
    last_transition_time: str


class TrainerPlacement(_Model):
    """Where and how the trainer runs in the current plan."""

    gpu: str
    pool: str
    gpus: int = Field(..., ge=0)
    data_parallel: int = 1
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    fsdp: bool = False
    nodes: list[str] = Field(default_factory=list)
    tokens_per_second: float = 0.0


class RolloutGroup(_Model):
    """Rollout replicas of one configuration on one pool in the current plan."""

    gpu: str
    pool: str
    replicas: int = Field(..., ge=0)
    gpus_per_replica: int = Field(..., ge=1)
    spot: bool = False
    nodes: list[str] = Field(default_factory=list)
    tokens_per_second: float = 0.0


class PlanSummary(_Model):
    """The current plan and its predictions."""

    trainer: TrainerPlacement | None = None
    rollout: list[RolloutGroup] = Field(default_factory=list)
    gpus: int = 0
    predicted_tokens_per_second: float = 0.0
    cost_per_hour: float = 0.0
    solve_seconds: float = 0.0
    bottleneck: str = ""
    staleness_predicted: float = 0.0


class Progress(_Model):
    """Training progress reported by the job's coordinator."""

    policy_version: int = 0
    trained_steps: int = 0
    observed_staleness: float = 0.0
    tokens_per_second: float = 0.0
    buffer_depth: int = 0
    trainer_idle_fraction: float = 0.0
    mean_reward: float | None = Field(
        None, description="Mean reward of the last trained batches (printer column Reward): rises as the job learns."
    )
    evaluation: EvalSummary | None = Field(None, description="The latest held-out evaluation (spec.evaluation).")
    dataset_exhausted: bool = Field(
        False, description="Every prompt of spec.dataset's epochs has been handed out; no new prompts follow."
    )


class CalibratedFactor(_Model):
    """A factor of the cluster's GPUCalibration that the job's plan uses."""

    gpu: str
    phase: str
    factor: float = Field(..., description="Multiplies the catalog's predicted rate of the phase.")
    confidence: float = Field(0.0, description="Share of the fit's precision from data (1 when pinned).")
    pinned: bool = False


class CalibrationSummary(_Model):
    """The plan's prediction with the cluster's calibration next to the catalog's and to what is observed."""

    predicted_tokens_per_second: float = Field(
        0.0, description="The current plan's throughput under the calibration in force (the GPUCalibration).")
    catalog_tokens_per_second: float = Field(0.0, description="The same plan's throughput from the catalog alone.")
    observed_tokens_per_second: float | None = Field(None, description="What the coordinator measures (progress).")
    prediction_error: float | None = Field(
        None, description="observed / predicted − 1 (e.g. 0.1: the job runs 10 % faster than predicted).")
    factors: list[CalibratedFactor] = Field(default_factory=list)
    message: str = Field("", description="The last thing calibration learned for this job, and what it did.")


class RLJobStatus(_Model):
    """Observed state written by the operator: phase, conditions, the current plan, progress."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", use_enum_values=True)

    phase: Phase = Phase.pending
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    plan: PlanSummary | None = None
    progress: Progress | None = None
    gpus: int | None = Field(None, description="GPUs in the current plan (printer column).")
    tokens_per_second: float | None = Field(None, description="Observed (or planned) tokens/s (printer column).")
    cost_per_hour: float | None = Field(None, description="$/h of the current plan (printer column).")
    staleness: float | None = Field(None, description="Observed policy lag (printer column).")
    calibration: CalibrationSummary | None = Field(
        None, description="The plan's prediction under the cluster's GPUCalibration, next to what is observed.")
    message: str | None = None


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str | None = None
    namespace: str | None = None


class RLJob(_Model):
    """An asynchronous RL post-training job planned onto heterogeneous, preemptible GPU pools."""

    api_version: str = Field(API_VERSION, alias="apiVersion")
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RLJobSpec
    status: RLJobStatus | None = None

    cel_rules: ClassVar[list[dict[str, str]]] = [
        {
            "rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
            "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters "
            "(the job's pods and Services are named after it; Service names stop at 63)",
        }
    ]

    @field_validator("api_version")
    @classmethod
    def _our_api_version(cls, value: str) -> str:
        if value != API_VERSION:
            raise ValueError(f"apiVersion is {value!r}; an RLJob is {API_VERSION}")
        return value

    @field_validator("kind")
    @classmethod
    def _our_kind(cls, value: str) -> str:
        if value != KIND:
            raise ValueError(f"kind is {value!r}; expected {KIND}")
        return value

    @model_validator(mode="after")
    def _name_fits_children(self) -> RLJob:
        if self.metadata.name is not None and len(self.metadata.name) > MAX_NAME_LENGTH:
            raise ValueError(
                f"metadata.name must be at most {MAX_NAME_LENGTH} characters "
                "(the job's pods and Services are named after it; Service names stop at 63)"
            )
        return self
