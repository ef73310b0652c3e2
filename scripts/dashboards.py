"""hexrl's Grafana dashboards as code: four dashboards built from small panel helpers.

`scripts/gen_chart.py` writes them as plain JSON to `charts/hexrl/dashboards/<uid>.json` (the chart ships
them in ConfigMaps for Grafana's sidecar; a test fails when the JSON is stale). Writing them as code keeps
the PromQL in one readable place and the JSON layout consistent; tests/chart checks every expression
against a real Prometheus that scrapes the operator and the workers.

Label conventions the queries rely on: per-job series carry `namespace` and `job` (the RLJob's name —
the operator exports them; worker pods get `job` from the PodMonitor's `jobLabel: hexrl.dev/job`, and
`role`/`pool` from its relabelings). Template variables: `$datasource`, `$namespace`, `$job`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 39
"""Grafana dashboard schema version (Grafana 10.4+/11 read it natively)."""

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'namespace=~"$namespace", job=~"$job"'
"""Selector of the chosen RLJobs, used inside every per-job query."""
RI = "$__rate_interval"


@dataclass
class Target:
    expr: str
    legend: str = ""


@dataclass
class Panel:
    """One panel; `kind` is a Grafana panel type (timeseries, stat, heatmap)."""

    title: str
    targets: list[Target]
    description: str
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    extra: dict[str, Any] = field(default_factory=dict)


def _variables(per_job: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        }
    ]
    if per_job:
        out += [
            {
                "name": "namespace",
                "label": "Namespace",
                "type": "query",
                "datasource": DS,
                "query": {"query": "label_values(hexrl_job_planned_gpus, namespace)", "refId": "namespace"},
                "definition": "label_values(hexrl_job_planned_gpus, namespace)",
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "refresh": 2,
                "current": {"text": "All", "value": "$__all"},
                "hide": 0,
                "sort": 1,
            },
            {
                "name": "job",
                "label": "RLJob",
                "type": "query",
                "datasource": DS,
                "query": {
                    "query": 'label_values(hexrl_job_planned_gpus{namespace=~"$namespace"}, job)',
                    "refId": "job",
                },
                "definition": 'label_values(hexrl_job_planned_gpus{namespace=~"$namespace"}, job)',
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "refresh": 2,
                "current": {"text": "All", "value": "$__all"},
                "hide": 0,
                "sort": 1,
            },
        ]
    return out


def _panel_json(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    refs = "ABCDEFGHIJ"
    out: dict[str, Any] = {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DS,
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "targets": [
            {"refId": refs[i], "datasource": DS, "expr": t.expr, "legendFormat": t.legend or "__auto", "range": True}
            for i, t in enumerate(p.targets)
        ],
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
    }
    if p.kind == "stat":
        out["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value"}
    if p.kind == "heatmap":
        for t in out["targets"]:
            t["format"] = "heatmap"
        out["options"] = {"calculate": False, "yAxis": {"unit": p.unit}, "cellGap": 1, "color": {"scheme": "Oranges"}}
    out.update(p.extra)
    return out


def dashboard(uid: str, title: str, description: str, rows: list[tuple[str, list[Panel]]], per_job: bool) -> dict:
    """A dashboard with collapsed-free rows; panels flow left to right, 24 columns wide."""
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row_title, row_panels in rows:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        x, row_h = 0, 0
        for p in row_panels:
            if x + p.width > 24:
                x, y = 0, y + row_h
                row_h = 0
            panels.append(_panel_json(p, pid, x, y))
            pid, x, row_h = pid + 1, x + p.width, max(row_h, p.height)
        y += row_h
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["hexrl"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": _variables(per_job)},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["hexrl"], "asDropdown": True, "title": "hexrl"}],
        "panels": panels,
    }


def _q(quantile: float, metric: str, by: str, sel: str = "", window: str = RI) -> str:
    inner = f"{{{sel}}}" if sel else ""
    return f"histogram_quantile({quantile}, sum by ({by}) (rate({metric}_bucket{inner}[{window}])))"


# ------------------------------------------------------------------------------------- dashboards


def operator_health() -> dict:
    rows = [
        (
            "Reconciles",
            [
                Panel("Reconciles by result", [Target(f"sum by (result) (rate(hexrl_operator_reconciles_total[{RI}]))", "{{result}}")],
                      "Reconcile passes per second over RLJobs: ok, infeasible (Planned=False), invalid spec, error.", "ops"),
                Panel("Reconcile duration", [
                    Target(_q(0.5, "hexrl_operator_reconcile_duration_seconds", "le"), "p50"),
                    Target(_q(0.99, "hexrl_operator_reconcile_duration_seconds", "le"), "p99"),
                ], "Wall time of one reconcile pass (snapshot, plan, apply, one status write).", "s"),
                Panel("Errors by reason", [Target(
                    f"sum by (reason) (rate(hexrl_operator_errors_total[{RI}])) or on () vector(0)", "{{reason}}")],
                    "Reconcile errors per second by reason (API error reason, planner reason or exception class). "
                    "The counter has no series until the first error, hence the `or vector(0)`.", "ops"),
                Panel("API requests per reconcile", [Target(
                    f"sum(rate(hexrl_operator_api_requests_total[{RI}])) / sum(rate(hexrl_operator_reconciles_total[{RI}]))",
                    "requests / reconcile")],
                    "Requests the reconciler sends to the API server per reconcile pass (kopf's watches excluded).", "short"),
            ],
        ),
        (
            "Planner",
            [
                Panel("Plan solve time", [
                    Target("histogram_quantile(0.5, sum by (le, kind) (hexrl_plan_solve_seconds_bucket))", "p50 {{kind}}"),
                    Target("histogram_quantile(0.99, sum by (le, kind) (hexrl_plan_solve_seconds_bucket))", "p99 {{kind}}"),
                ], "Planner time per plan() / replan() call since the operator started (plans are rare events: a rate "
                   "window would mostly be empty); the planner must answer well under a second.", "s"),
                Panel("Re-plans by trigger", [Target(f"sum by (trigger) (rate(hexrl_replans_total[{RI}]))", "{{trigger}}")],
                      "Planner calls per second: first plan, spec change, or cluster change (nodes added, lost, tainted).", "ops"),
            ],
        ),
        (
            "Objects",
            [
                Panel("RLJobs by phase", [Target("sum by (phase) (hexrl_jobs)", "{{phase}}")],
                      "RLJobs this operator knows, by phase.", "short", width=8),
                Panel("Children applied by kind", [Target(f"sum by (kind) (rate(hexrl_children_created_total[{RI}]))", "{{kind}}")],
                      "Child objects created or changed by server-side apply per second.", "ops", width=8),
                Panel("Node events", [Target(f"sum by (kind) (rate(hexrl_operator_node_events_total[{RI}]))", "{{kind}}")],
                      "Node events per second, relevant (changed what the planner sees) or ignored; relevant ones are debounced into re-plans.",
                      "ops", width=8),
            ],
        ),
    ]
    return dashboard("hexrl-operator", "hexrl / Operator health",
                     "Is the hexrl operator reconciling, how fast, and is the planner quick?", rows, per_job=False)


def _job_throughput_row() -> tuple[str, list[Panel]]:
    """Throughput and cost: planned vs observed tokens/s, cost, $ per million tokens, GPUs, scaling, progress."""
    return (
        "Throughput and cost",
        [
            Panel("Tokens/s: planned vs observed", [
                Target(f"hexrl_job_planned_tokens_per_second{{{SEL}}}", "planned {{job}}"),
                Target(f"sum by (namespace, job) (rate(hexrl_trained_tokens_total{{{SEL}}}[{RI}]))", "observed {{job}}"),
            ], "Training-consumed tokens/s (prompt + response tokens of trained trajectories): the plan's prediction vs what the coordinator served to the trainer.",
                "short", width=12),
            Panel("Cost", [Target(f"hexrl_job_planned_cost_dollars_per_hour{{{SEL}}}", "{{job}}")],
                  "Dollars per hour of all GPUs in the job's current plan.", "currencyUSD", width=6),
            Panel("$ per million tokens", [Target(
                f"hexrl_job_planned_cost_dollars_per_hour{{{SEL}}} / on (namespace, job) "
                f"(3600 * sum by (namespace, job) (rate(hexrl_trained_tokens_total{{{SEL}}}[{RI}]))) * 1e6", "{{job}}")],
                "Cost of the plan divided by the observed training throughput, per million tokens.", "currencyUSD", width=6),
            Panel("GPUs planned", [Target(f"hexrl_job_planned_gpus{{{SEL}}}", "{{job}}")],
                  "GPUs in the job's current plan (trainer + rollout).", "short", kind="stat", width=6, height=5),
            Panel("Extra rollout replicas", [Target(
                f"hexrl_job_extra_rollout_replicas{{{SEL}}} or on (namespace, job) (0 * hexrl_job_planned_gpus{{{SEL}}})",
                "{{job}}")],
                "Replicas added beyond the plan by live scaling because the trainer starved (0 until the first scaling step).",
                "short", kind="stat", width=6, height=5),
            Panel("Policy version", [Target(f"max by (namespace, job) (hexrl_policy_version{{{SEL}, role=\"coordinator\"}})", "{{job}}")],
                  "Current policy version (trainer optimizer steps) as the coordinator tracks it.", "short", kind="stat", width=6, height=5),
            Panel("Trained steps/min", [Target(f"60 * sum by (namespace, job) (rate(hexrl_trained_steps_total{{{SEL}}}[{RI}]))", "{{job}}")],
                  "Trainer steps acknowledged per minute.", "short", kind="stat", width=6, height=5),
        ]
    )

def _job_staleness_row() -> tuple[str, list[Panel]]:
    """Staleness (η): the policy lag of trained samples against the bound in force, and its distribution."""
    return (
        "Staleness (η)",
        [
            Panel("Staleness of trained samples vs η", [
                Target(_q(0.5, "hexrl_observed_staleness", "namespace, job, le", SEL), "p50 {{job}}"),
                Target(_q(0.9, "hexrl_observed_staleness", "namespace, job, le", SEL), "p90 {{job}}"),
                Target(f"max by (namespace, job) (hexrl_max_policy_lag{{{SEL}}})", "η {{job}}"),
                Target(f"hexrl_job_observed_staleness{{{SEL}}}", "reported {{job}}"),
            ], "Policy lag (trainer version minus behaviour version) of trained samples against the bound η in force.",
                "short", width=12),
            Panel("Staleness distribution", [Target(
                f"sum by (le) (increase(hexrl_observed_staleness_bucket{{{SEL}}}[{RI}]))", "{{le}}")],
                "Trained samples per policy-lag bucket (versions); everything should sit at or below η.",
                "short", kind="heatmap", width=12),
        ]
    )

def _job_trainer_row() -> tuple[str, list[Panel]]:
    """Trainer and buffer: idle time, buffer, reward and loss, the gate and migration, step time, evaluation."""
    return (
        "Trainer and buffer",
        [
            Panel("Trainer idle fraction", [Target(
                f"sum by (namespace, job) (rate(hexrl_trainer_idle_seconds_total{{{SEL}}}[{RI}]))", "{{job}}")],
                "Fraction of wall time the trainer waited for a batch; high means rollout is the bottleneck.",
                "percentunit", width=8),
            Panel("Buffer depth", [
                Target(f"sum by (namespace, job) (hexrl_buffer_depth{{{SEL}}})", "buffered {{job}}"),
                Target(f"sum by (namespace, job) (hexrl_buffer_ready_groups{{{SEL}}})", "ready groups {{job}}"),
                Target(f"sum by (namespace, job) (hexrl_inflight_trajectories{{{SEL}}})", "in flight {{job}}"),
            ], "Trajectories received and not yet trained, complete groups ready, and work handed to rollout workers.",
                "short", width=8),
            Panel("Reward and loss", [
                Target(f"max by (namespace, job) (hexrl_reward_mean{{{SEL}}})", "reward {{job}}"),
                Target(f"max by (namespace, job) (hexrl_trainer_loss{{{SEL}}})", "loss {{job}}"),
            ], "Mean reward of the last trained batch and the trainer's last loss.", "short", width=8),
            Panel("Staleness gate and migration", [
                Target(f"sum by (namespace, job) (rate(hexrl_gate_blocked_total{{{SEL}}}[{RI}]))", "gate blocked {{job}}"),
                Target(f"sum by (namespace, job) (rate(hexrl_dropped_stale_total{{{SEL}}}[{RI}]))", "dropped stale {{job}}"),
                Target(f"sum by (namespace, job) (rate(hexrl_partials_migrated_total{{{SEL}}}[{RI}]))", "partials migrated {{job}}"),
            ], "Work requests refused by the staleness gate, trajectories dropped for exceeding η, and partial responses re-dispatched after a preemption.",
                "ops", width=12),
            Panel("Trainer step time", [
                Target(_q(0.5, "hexrl_trainer_step_seconds", "namespace, job, le", SEL), "p50 {{job}}"),
                Target(_q(0.99, "hexrl_trainer_step_seconds", "namespace, job, le", SEL), "p99 {{job}}"),
            ], "Wall time of one optimizer step, excluding the wait for data.", "s", width=12),
            Panel("Held-out evaluation", [
                Target(f"max by (namespace, job) (hexrl_eval_greedy_accuracy{{{SEL}}})", "greedy accuracy {{job}}"),
                Target(f"max by (namespace, job, k) (hexrl_eval_pass_at_k{{{SEL}}})", "pass@{{k}} {{job}}"),
            ], "The latest held-out evaluation (spec.evaluation): share of prompts whose greedy answer is correct "
               "(reward ≥ 0.5) and unbiased pass@k; a step in the line is a new evaluated version "
               "(hexrl_eval_version).", "percentunit", width=24),
        ]
    )

def job_overview() -> dict:
    rows = [_job_throughput_row(), _job_staleness_row(), _job_trainer_row()]
    return dashboard("hexrl-job", "hexrl / Job overview",
                     "One or more RLJobs: planned vs observed throughput, cost, staleness against η, trainer and buffer.",
                     rows, per_job=True)


def _stacked(unit: str) -> dict[str, Any]:
    """Panel `extra` for a stacked time series (areas add up to the total)."""
    return {"fieldConfig": {"defaults": {"unit": unit, "custom": {"stacking": {"mode": "normal", "group": "A"},
                                                                   "fillOpacity": 40, "lineWidth": 1}},
                            "overrides": []}}


def pools() -> dict:
    rows = [
        (
            "Cluster GPUs",
            [
                Panel("GPUs by type and capacity type", [Target(
                    "sum by (gpu, capacity_type) (hexrl_cluster_gpus)", "{{gpu}} {{capacity_type}}")],
                    "Allocatable GPUs in the operator's cluster snapshot (nodes with a known GPU type), stacked by "
                    "GPU type and capacity type (spot, on-demand).", "short", width=12, extra=_stacked("short")),
                Panel("GPUs going away", [Target(
                    "sum by (gpu, capacity_type) (hexrl_cluster_gpus_going_away)", "{{gpu}} {{capacity_type}}")],
                    "GPUs on nodes that are being deleted, cordoned, tainted for reclaim or NotReady: the planner "
                    "gives them no new work and moves the jobs' pods off them.", "short", width=12,
                    extra=_stacked("short")),
            ],
        ),
        (
            "Capacity",
            [
                Panel("Rollout replicas per pool", [Target(
                    f"count by (pool) (hexrl_rollout_generated_tokens_total{{{SEL}, role=\"rollout\"}})", "{{pool}}")],
                    "Rollout worker pods that report metrics, per node pool.", "short", width=8),
                Panel("Rollout tokens/s per pool", [Target(
                    f"sum by (pool) (rate(hexrl_rollout_generated_tokens_total{{{SEL}, role=\"rollout\"}}[{RI}]))", "{{pool}}")],
                    "Response tokens generated per second, per node pool.", "short", width=8),
                Panel("GPUs planned per job", [Target(f"hexrl_job_planned_gpus{{{SEL}}}", "{{namespace}}/{{job}}")],
                      "GPUs in each job's current plan.", "short", width=8),
            ],
        ),
        (
            "Churn",
            [
                Panel("Preemptions handled", [Target(
                    f"sum by (role) (increase(hexrl_preemptions_handled_total[{RI}]))", "{{role}}")],
                    "Pods of RLJobs replaced because their node went away (spot reclaim, termination taint, NotReady) or they carried DisruptionTarget.",
                    "short", width=8),
                Panel("Re-plans by trigger", [Target(f"sum by (trigger) (increase(hexrl_replans_total[{RI}]))", "{{trigger}}")],
                      "Planner calls, by what triggered them.", "short", width=8),
                Panel("Rollout scaling decisions", [Target(
                    f"sum by (direction) (increase(hexrl_rollout_scaling_total[{RI}])) or on () vector(0)", "{{direction}}")],
                    "Live scaling: grow onto spot when the trainer starves, shrink near η. No series until the first decision, hence `or vector(0)`.",
                    "short", width=8),
            ],
        ),
    ]
    return dashboard("hexrl-pools", "hexrl / Pools",
                     "GPU pools: the cluster's GPUs by type and capacity type, where rollout runs, how fast each pool generates, "
                     "preemptions and re-plans.",
                     rows, per_job=True)


def weight_sync() -> dict:
    lag = (
        f"max by (namespace, job) (hexrl_policy_version{{{SEL}, role=\"coordinator\"}}) - on (namespace, job) group_right "
        f"hexrl_policy_version{{{SEL}, role=\"rollout\"}}"
    )
    rows = [
        (
            "Weight sync",
            [
                Panel("Weight pull duration", [
                    Target(_q(0.5, "hexrl_weight_pull_seconds", "namespace, job, le", SEL), "p50 {{job}}"),
                    Target(_q(0.99, "hexrl_weight_pull_seconds", "namespace, job, le", SEL), "p99 {{job}}"),
                ], "Wall time for a rollout worker to pull and verify one weight version.", "s", width=12),
                Panel("Weight bytes/s", [
                    Target(f"sum by (namespace, job, source) (rate(hexrl_weight_fetched_bytes_total{{{SEL}}}[{RI}]))", "fetched from {{source}}"),
                    Target(f"sum by (namespace, job, role) (rate(hexrl_weight_served_bytes_total{{{SEL}}}[{RI}]))", "served by {{role}}"),
                ], "Weight traffic: downloads by source (trainer or relay peer) and egress by role; relays keep the trainer's egress flat.",
                    "Bps", width=12),
                Panel("Version lag per worker", [Target(lag, "{{pod}}")],
                      "Policy versions a rollout worker is behind the coordinator's current version.", "short", width=12),
                Panel("Weight updates and rejected chunks", [
                    Target(f"sum by (namespace, job) (rate(hexrl_rollout_weight_updates_total{{{SEL}}}[{RI}]))", "updates {{job}}"),
                    Target(f"sum by (namespace, job) (rate(hexrl_weight_chunk_rejected_total{{{SEL}}}[{RI}]))", "rejected chunks {{job}}"),
                ], "Weight versions loaded per second, and chunks that failed the digest check (re-fetched).", "ops", width=12),
                Panel("Checkpoint duration", [
                    Target(_q(0.5, "hexrl_checkpoint_seconds", "namespace, job, le", SEL), "p50 {{job}}"),
                ], "Wall time to write one complete checkpoint (model, optimizer, coordinator cursor).", "s", width=12),
            ],
        ),
    ]
    return dashboard("hexrl-weights", "hexrl / Weight sync",
                     "Pull-based weight distribution: duration, bandwidth, per-worker version lag.", rows, per_job=True)


def all_dashboards() -> dict[str, dict]:
    """uid -> dashboard JSON model."""
    return {d["uid"]: d for d in (operator_health(), job_overview(), pools(), weight_sync())}


def expressions(model: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target and variable query of a dashboard JSON model."""
    out = []
    for panel in model.get("panels", []):
        for t in panel.get("targets", []):
            out.append((panel["title"], t["expr"]))
    return out
