"""The wire protocol between coordinator, rollout workers, trainer and weight service.

Every request and response body is JSON of one of these pydantic models (camelCase on the wire). Each
message carries `wireVersion`; a receiver that does not speak that version answers 400 with
`{"error": "...", "field": "wireVersion"}` instead of guessing. Malformed bodies get 400/422 with the
offending field. `ErrorBody` is the shape of every error answer.

Units: token ids are integers of the job's tokenizer; log-probs are natural logs of the *tempered,
untruncated* sampling distribution `softmax(logits / T)` (see `rollout.engine`); policy versions count
trainer optimizer steps (version 0 = the initial weights).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from hexrl.api.evalspec import EvalSummary

WIRE_VERSION = 1
"""The protocol version this build speaks."""


class Msg(BaseModel):
    """Base of all messages: camelCase aliases, unknown fields rejected, a wire version check."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    wire_version: int = Field(WIRE_VERSION, description="Protocol version of the sender.")

    @model_validator(mode="after")
    def _known_version(self) -> Msg:
        if self.wire_version != WIRE_VERSION:
            raise ValueError(
                f"unsupported wireVersion {self.wire_version}; this service speaks {WIRE_VERSION} "
                "(run the same hexrl version on every pod of the job)"
            )
        return self

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: what is wrong and (when known) which field."""

    error: str
    field: str | None = None


# --------------------------------------------------------------------------------------- generation


class Prompt(Msg):
    """One task instance from the dataset."""

    prompt_id: int = Field(..., ge=0, description="Position in the dataset stream (unique per job).")
    text: str = Field(..., description="Prompt text given to the model.")
    answer: str = Field("", description="Reference answer for the reward function.")
    metadata: dict[str, str | int | float | bool | None] | None = Field(
        None, description="The record's metadata columns (spec.dataset.columns: id, metadata), for the prompt "
        "template; None when the dataset has none.",
    )


class SampleSpec(Msg):
    """One response to generate: fresh (empty prefix) or the continuation of a migrated partial."""

    sample_index: int = Field(..., ge=0, description="Index of the response within its GRPO group.")
    prefix_tokens: list[int] = Field(default_factory=list, description="Response tokens already generated.")
    prefix_logprobs: list[float] = Field(default_factory=list, description="Behaviour log-probs of prefix_tokens.")
    prefix_versions: list[int] = Field(default_factory=list, description="Policy version of each prefix token.")

    @model_validator(mode="after")
    def _aligned(self) -> SampleSpec:
        if not (len(self.prefix_tokens) == len(self.prefix_logprobs) == len(self.prefix_versions)):
            raise ValueError("prefixTokens, prefixLogprobs and prefixVersions must have the same length")
        return self


class EvalTag(Msg):
    """Marks a work item as held-out evaluation (`coordinator.evaluation`): scored, never trained on."""

    version: int = Field(..., ge=0, description="The policy version evaluated; results of another version are refused.")
    greedy: bool = Field(..., description="The greedy response (temperature 0) rather than one of the k samples.")
    temperature: float = Field(..., ge=0, description="Sampling temperature of this item's responses (0 = greedy).")


class WorkItem(Msg):
    """What the coordinator hands a rollout worker: a prompt and the samples of its group to produce."""

    item_id: int = Field(..., ge=0, description="Unique per dispatch; echoed back with the results.")
    epoch: int = Field(0, ge=0, description="Coordinator epoch (bumped on restore); results of old epochs are dropped.")
    group_id: int = Field(..., ge=0, description="GRPO group (one per prompt dispatch).")
    group_size: int = Field(..., ge=1)
    prompt: Prompt
    samples: list[SampleSpec]
    policy_version: int = Field(..., ge=0, description="Coordinator's policy version at dispatch.")
    evaluation: EvalTag | None = Field(
        None, description="Set on held-out evaluation items: answer with EvalResults, not trajectories.")


class WorkRequest(Msg):
    worker_id: str = Field(..., min_length=1)
    max_items: int = Field(1, ge=1, le=1024)
    wait_seconds: float = Field(0.0, ge=0, le=60, description="Long-poll: wait this long for admissible work.")


class WorkResponse(Msg):
    items: list[WorkItem] = Field(default_factory=list)
    policy_version: int = 0
    reason: str = Field("", description="Why no work was given (e.g. 'staleness-gate', 'dataset-exhausted').")


class Trajectory(Msg):
    """One complete response with everything the trainer needs."""

    item_id: int = Field(..., ge=0)
    epoch: int = Field(0, ge=0)
    group_id: int = Field(..., ge=0)
    group_size: int = Field(..., ge=1)
    sample_index: int = Field(..., ge=0)
    prompt_id: int = Field(..., ge=0)
    prompt_tokens: list[int] = Field(..., min_length=1)
    tokens: list[int] = Field(..., description="Response token ids (including EOS when generated).")
    logprobs: list[float] = Field(..., description="Behaviour log-prob of each response token.")
    versions: list[int] = Field(..., description="Policy version that generated each response token.")
    reward: float
    worker_id: str = ""
    finished: bool = Field(True, description="False when cut at maxNewTokens without EOS.")

    @model_validator(mode="after")
    def _aligned(self) -> Trajectory:
        if not (len(self.tokens) == len(self.logprobs) == len(self.versions)):
            raise ValueError("tokens, logprobs and versions must have the same length")
        if self.sample_index >= self.group_size:
            raise ValueError("sampleIndex must be smaller than groupSize")
        return self

    @property
    def oldest_version(self) -> int:
        """The version whose lag bounds this sample: its oldest token's (the prompt's when empty)."""
        return min(self.versions) if self.versions else 0


class PartialResponse(Msg):
    """An unfinished response handed in by a worker that is stopping (preemption)."""

    item_id: int = Field(..., ge=0)
    epoch: int = Field(0, ge=0)
    group_id: int = Field(..., ge=0)
    sample_index: int = Field(..., ge=0)
    prompt_id: int = Field(..., ge=0)
    tokens: list[int]
    logprobs: list[float]
    versions: list[int]
    worker_id: str = ""

    @model_validator(mode="after")
    def _aligned(self) -> PartialResponse:
        if not (len(self.tokens) == len(self.logprobs) == len(self.versions)):
            raise ValueError("tokens, logprobs and versions must have the same length")
        return self


DiscardReason = Literal["prompt-too-long", "prompt-template-error", "reward-error", "reward-not-finite", "reward-timeout"]
"""Why a rollout worker gives up on a whole group: a prompt longer than the job allows cannot be generated
from, and a reward that raised, timed out or returned NaN/∞ cannot be trained on."""


class DiscardedSample(Msg):
    """A sample the rollout worker cannot turn into a trajectory. The coordinator abandons the sample's whole
    group (its other samples are void too: a GRPO group's advantages need every member's reward), counts it
    by `reason` and does not queue the prompt again (the same prompt would fail the same way)."""

    item_id: int = Field(..., ge=0)
    epoch: int = Field(0, ge=0)
    group_id: int = Field(..., ge=0)
    sample_index: int = Field(..., ge=0)
    prompt_id: int = Field(..., ge=0)
    reason: DiscardReason
    detail: str = Field("", max_length=2000, description="One sentence for the coordinator's log.")


class EvalResult(Msg):
    """The scored response to one sample of an evaluation item (no tokens: nothing is trained on it)."""

    item_id: int = Field(..., ge=0)
    epoch: int = Field(0, ge=0)
    evaluation: EvalTag = Field(..., description="The item's tag, echoed.")
    prompt_id: int = Field(..., ge=0, description="Position of the prompt in the held-out set.")
    sample_index: int = Field(..., ge=0)
    reward: float = Field(..., description="The job's reward of the response (0 when the reward function failed).")
    generated_version: int = Field(..., ge=0, description="Policy version of the weights that generated it.")
    response_tokens: int = Field(0, ge=0)
    worker_id: str = ""


WorkPhase = Literal["decode", "prefill", "train"]
"""The phases of the cost model that work is reported for (hexrl.sched.calibration's phases)."""


class WorkReport(Msg):
    """Work done on one GPU type in one phase: what the operator's online calibration compares with the cost
    model. Workers send increments (the work since their last report); the coordinator serves the sums."""

    gpu: str = Field(..., min_length=1, max_length=63, description="GPU type of the pod (HEXRL_GPU_TYPE).")
    phase: WorkPhase
    tokens: int = Field(..., ge=0, description="Tokens processed: generated (decode), prefilled, or trained on.")
    seconds: float = Field(..., ge=0, description="GPU-seconds it took: busy wall seconds × GPUs the work ran on.")


class TrajectoryBatchIn(Msg):
    """Rollout → coordinator: finished trajectories and/or partials (one POST, many records)."""

    trajectories: list[Trajectory] = Field(default_factory=list)
    partials: list[PartialResponse] = Field(default_factory=list)
    discarded: list[DiscardedSample] = Field(
        default_factory=list, description="Samples given up on (their groups are abandoned, see DiscardedSample)."
    )
    evaluations: list[EvalResult] = Field(
        default_factory=list, description="Scored responses to held-out evaluation items (never trained on).")
    worker_id: str = ""
    released_item_ids: list[int] = Field(
        default_factory=list, description="Items the worker gives back untouched (e.g. stopping before starting)."
    )
    work: list[WorkReport] = Field(
        default_factory=list, max_length=16, description="Engine work since the worker's last push (calibration).")


class IngestResult(Msg):
    accepted: int = 0
    dropped: int = 0
    partials: int = 0
    evaluations: int = Field(0, description="Evaluation results accepted.")


# ----------------------------------------------------------------------------------------- training


class BatchRequest(Msg):
    trainer_version: int = Field(..., ge=0, description="The policy version the batch will be trained from.")
    wait_seconds: float = Field(0.0, ge=0, le=600)


class Batch(Msg):
    """B = promptsPerStep × groupSize trajectories, grouped, each within the staleness bound."""

    batch_id: int = Field(..., ge=0)
    trainer_version: int = Field(..., ge=0)
    trajectories: list[Trajectory]


class VersionUpdate(Msg):
    """Trainer → coordinator after an optimizer step: the new version exists (and is published)."""

    version: int = Field(..., ge=0)
    batch_id: int | None = Field(None, description="The batch this step consumed.")
    loss: float | None = None
    work: list[WorkReport] = Field(
        default_factory=list, max_length=16, description="The step's on-device work (calibration).")


class StalenessUpdate(BaseModel):
    """PUT /v1/staleness body (no wire version: operators and humans call it with curl)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    max_policy_lag: int = Field(..., ge=0, le=64)


class Progress(Msg):
    """GET /v1/progress: what the operator copies into RLJob.status.progress (a superset of it)."""

    policy_version: int = 0
    trained_steps: int = 0
    trained_samples: int = 0
    buffer_depth: int = Field(0, description="Trajectories received and not yet trained.")
    observed_staleness: float = Field(0.0, description="Mean policy lag of the samples in the last batch.")
    max_observed_staleness: int = 0
    max_policy_lag: int = Field(0, description="The η in force.")
    trainer_idle_fraction: float = Field(0.0, description="Share of wall time the trainer waited for data.")
    tokens_per_second: float = Field(0.0, description="Prompt+response tokens trained per second (recent window).")
    generated_tokens_per_second: float = 0.0
    reward_mean: float | None = Field(None, description="Mean reward of the last trained batch.")
    mean_reward: float | None = Field(
        None, description="Mean reward of the last few trained batches (CoordinatorSettings.reward_window); the "
        "RLJob's status.progress.meanReward."
    )
    initial_reward: float | None = Field(None, description="Mean reward of the first trained batch.")
    dropped_stale: int = 0
    discarded_groups: dict[str, int] = Field(
        default_factory=dict, description="Groups abandoned by a rollout worker, by DiscardReason."
    )
    partials_migrated: int = 0
    dataset_exhausted: bool = False
    evaluation: EvalSummary | None = Field(None, description="The latest finished held-out evaluation.")
    evaluations: list[EvalSummary] = Field(
        default_factory=list, description="The last few finished evaluations, oldest first.")
    done: bool = False
    observed_work: list[WorkReport] = Field(
        default_factory=list, description="Cumulative work per (GPU type, phase) since the coordinator started: "
        "the operator's online calibration takes differences between two reads.")
    data_error: str | None = Field(
        None, description="Why the job's dataset cannot be loaded (the coordinator serves no work until fixed)."
    )


# ------------------------------------------------------------------------------------------ weights


class TensorInfo(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    name: str
    shape: list[int]
    dtype: str = Field(..., description="torch dtype name without the prefix, e.g. float32, bfloat16.")
    offset: int = Field(..., ge=0, description="Byte offset in the version's blob.")
    nbytes: int = Field(..., ge=0)


class WeightManifest(Msg):
    """A published weight version: the tensors' layout in one blob, split into verified chunks."""

    version: int = Field(..., ge=0)
    total_bytes: int = Field(..., ge=0)
    chunk_bytes: int = Field(..., ge=1)
    digest: Literal["blake3", "sha256"] = Field("blake3", description="Hash of each chunk in chunkDigests.")
    chunk_digests: list[str] = Field(..., description="Hex digest of each chunk, in order.")
    tensors: list[TensorInfo]
    peers: list[str] = Field(default_factory=list, description="Base URLs of relays holding this version.")
    source: str | None = Field(None, description="Where this client should download from (None = here).")
    retry_after_seconds: float | None = Field(
        None, description="Set when the client should wait and ask again (origin busy, no relay yet)."
    )

    @model_validator(mode="after")
    def _chunks_cover_blob(self) -> WeightManifest:
        expected = -(-self.total_bytes // self.chunk_bytes)
        if len(self.chunk_digests) != expected:
            raise ValueError(f"chunkDigests has {len(self.chunk_digests)} entries; {expected} chunks expected")
        return self


class HolderAnnouncement(Msg):
    url: str = Field(..., min_length=1, description="Base URL of the relay that now holds the version.")
    version: int = Field(..., ge=0)
    state: Literal["complete", "released"] = "complete"
