"""Machine-readable reasons for conditions and Events (metav1.Condition.reason, CamelCase constants).

Every reason a user can see is declared here once, so dashboards, alerts, tests and docs agree on the
spelling. Add a constant before using a new reason anywhere.
"""

from __future__ import annotations

# Condition types
PLANNED = "Planned"
READY = "Ready"
DEGRADED = "Degraded"
STALENESS_WITHIN_BOUND = "StalenessWithinBound"

# Planned=True
PLAN_FOUND = "PlanFound"
REPLANNED = "Replanned"
# Planned=False (planner infeasibility; the user can act on these)
MODEL_DOES_NOT_FIT = "ModelDoesNotFit"
BUDGET_TOO_SMALL = "BudgetTooSmall"
NO_ELIGIBLE_GPUS = "NoEligibleGPUs"
TARGET_UNREACHABLE = "TargetUnreachable"
UNKNOWN_GPU_TYPE = "UnknownGPUType"
INVALID_SPEC = "InvalidSpec"
PROBLEM_TOO_LARGE = "ProblemTooLarge"
"""More pools or nodes than the planner takes (hexrl.sched.limits); the message names the limit."""
# Ready / Degraded
CHILDREN_READY = "ChildrenReady"
CHILDREN_PENDING = "ChildrenPending"
TRAINER_LOST = "TrainerLost"
ROLLOUT_PREEMPTED = "RolloutPreempted"
# Ready=False because a pod cannot start or serve (the message names the pod and the cause; also an Event)
POD_UNSCHEDULABLE = "PodUnschedulable"
IMAGE_PULL_FAILED = "ImagePullFailed"
CRASH_LOOP = "CrashLoopBackOff"
CONTAINER_FAILED = "ContainerFailed"
POD_NOT_READY = "PodNotReady"
# Ready=False because the coordinator cannot load the job's dataset (from its /v1/progress; also an Event)
DATASET_UNAVAILABLE = "DatasetUnavailable"
# Staleness
WITHIN_BOUND = "WithinBound"
NEAR_BOUND = "NearBound"
EXCEEDED_BOUND = "ExceededBound"
NO_PROGRESS_YET = "NoProgressYet"
# Events
SCALED_ROLLOUT = "ScaledRollout"
CALIBRATED = "Calibrated"
"""Online calibration moved a factor the job's plan uses: what was learned, and re-planned or not."""
REJECTED = "Rejected"
