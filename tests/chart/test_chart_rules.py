"""The alert rules: `promtool check rules` accepts them, and `promtool test rules` shows each alert firing on
the situation it is named after — and staying quiet on a healthy job — with the chart's default thresholds.

The rules are taken from the rendered PrometheusRule (`helm template`), so what is tested is what ships.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import by_kind, run

STALENESS_BUCKETS = ("0", "1", "2", "3", "4", "6", "8", "12", "16", "32", "64", "+Inf")


def rendered_rules(render: Any, tmp_path: Path, values: dict[str, Any] | None = None) -> Path:
    objs = render({"prometheusRule": {"enabled": True, **(values or {})}}, extra=["--kube-version", "1.34.4"])
    (rule,) = by_kind(objs, "PrometheusRule")
    path = tmp_path / "hexrl-rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return path


def staleness_series(job: str, lag: int, per_minute: int, minutes: int) -> list[dict[str, str]]:
    """Histogram buckets of a coordinator whose trained samples all have policy lag `lag`."""
    out = []
    for le in STALENESS_BUCKETS:
        inc = per_minute if le == "+Inf" or float(le) >= lag else 0
        out.append({
            "series": f'hexrl_observed_staleness_bucket{{namespace="ml", job="{job}", le="{le}"}}',
            "values": f"0+{inc}x{minutes}",
        })
    return out


def test_promtool_check_rules(render: Any, promtool: Path, tmp_path: Path) -> None:
    proc = run([promtool, "check", "rules", rendered_rules(render, tmp_path)])
    assert "SUCCESS" in proc.stdout + proc.stderr
    assert "12 rules found" in proc.stdout + proc.stderr


def test_promtool_rejects_a_broken_expression(promtool: Path, tmp_path: Path) -> None:
    """The check can fail: a rule with a PromQL syntax error is refused."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"alert": "Bad", "expr": "sum by (job (up)"}]}]}))
    proc = run([promtool, "check", "rules", bad], check=False)
    assert proc.returncode != 0


def test_alerts_fire_when_they_should(render: Any, promtool: Path, tmp_path: Path) -> None:
    rules = rendered_rules(render, tmp_path)
    minutes = 30
    series = [
        # Job "hot" trains on samples at lag 4 with η = 4; job "cool" at lag 1 with η = 4.
        *staleness_series("hot", 4, 60, minutes),
        *staleness_series("cool", 1, 60, minutes),
        {"series": 'hexrl_max_policy_lag{namespace="ml", job="hot"}', "values": f"4x{minutes}"},
        {"series": 'hexrl_max_policy_lag{namespace="ml", job="cool"}', "values": f"4x{minutes}"},
        # The trainer of "hot" waits 45 s of every minute (75 % idle), "cool" 6 s (10 %).
        {"series": 'hexrl_trainer_idle_seconds_total{namespace="ml", job="hot"}', "values": f"0+45x{minutes}"},
        {"series": 'hexrl_trainer_idle_seconds_total{namespace="ml", job="cool"}', "values": f"0+6x{minutes}"},
        # Spot reclaims: quiet for 11 minutes, then two rollout pods lost every minute (10 by minute 16).
        {"series": 'hexrl_preemptions_handled_total{role="rollout"}', "values": f"0x10 0+2x{minutes - 10}"},
        # One job Degraded from minute 5 on; three Running throughout.
        {"series": 'hexrl_jobs{phase="Degraded"}', "values": f"0x5 1x{minutes - 5}"},
        {"series": 'hexrl_jobs{phase="Running"}', "values": f"3x{minutes}"},
        # The planner reports an infeasible job once, at minute 20.
        {"series": 'hexrl_operator_reconciles_total{result="infeasible"}', "values": f"0x20 1x{minutes - 20}"},
        {"series": 'hexrl_operator_reconciles_total{result="ok"}', "values": f"0+5x{minutes}"},
    ]
    ml_hot = {"namespace": "ml", "job": "hot", "severity": "warning"}
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        # promtool evaluates groups in Go map order unless told: pinned, so the alerts always read this
        # evaluation's recording rules (annotations carry their values) and the test is deterministic.
        "group_eval_order": ["hexrl.signals", "hexrl.alerts"],
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [
                # p90 of lag-4 samples interpolates to 3.9 within the (3, 4] bucket; 3.9 / 4 = 0.975.
                {"expr": 'hexrl:job_staleness_bound:ratio{job="hot"}', "eval_time": "15m",
                 "exp_samples": [{"labels": 'hexrl:job_staleness_bound:ratio{namespace="ml", job="hot"}', "value": 0.975}]},
                {"expr": 'hexrl:job_trainer_idle:ratio{job="cool"}', "eval_time": "15m",
                 "exp_samples": [{"labels": 'hexrl:job_trainer_idle:ratio{namespace="ml", job="cool"}', "value": 0.1}]},
            ],
            "alert_rule_test": [
                # `for: 10m`: not yet at minute 8, firing for "hot" only at minute 15.
                {"eval_time": "8m", "alertname": "HexrlStalenessNearBound", "exp_alerts": []},
                {"eval_time": "15m", "alertname": "HexrlStalenessNearBound", "exp_alerts": [{
                    "exp_labels": ml_hot,
                    "exp_annotations": {
                        "summary": "RLJob ml/hot trains on samples close to its staleness bound η",
                        "description": "The 90th percentile policy lag is 97.5% of η. Rollout produces faster than the "
                                       "trainer consumes; the operator shrinks rollout near the bound. If this persists, "
                                       "raise spec.staleness.maxPolicyLag or give the trainer more GPUs.",
                    },
                }]},
                {"eval_time": "15m", "alertname": "HexrlTrainerStarving", "exp_alerts": [{
                    "exp_labels": ml_hot,
                    "exp_annotations": {
                        "summary": "The trainer of RLJob ml/hot waits for data 75% of the time",
                        "description": "Rollout is the bottleneck. Check for lost spot capacity (kubectl describe rlj), "
                                       "the budget (spec.budget.maxCostPerHour) and whether spot rollout is allowed "
                                       "(spec.placement.spot.rollout).",
                    },
                }]},
                {"eval_time": "9m", "alertname": "HexrlPreemptionStorm", "exp_alerts": []},
                {"eval_time": "16m", "alertname": "HexrlPreemptionStorm", "exp_alerts": [{
                    "exp_labels": {"severity": "warning"},
                    "exp_annotations": {
                        "summary": "RLJob pods preempted in the last 10 minutes - 10",
                        "description": "Spot capacity is being reclaimed quickly. Jobs keep progressing on the on-demand "
                                       "rollout floor (spec.placement.spot.onDemandRolloutFloor); consider raising it or "
                                       "moving rollout to another pool.",
                    },
                }]},
                {"eval_time": "10m", "alertname": "HexrlJobDegraded", "exp_alerts": []},
                {"eval_time": "16m", "alertname": "HexrlJobDegraded", "exp_alerts": [{
                    "exp_labels": {"severity": "critical"},
                    "exp_annotations": {
                        "summary": "RLJobs in phase Degraded - 1",
                        "description": "A trainer rank was lost or the job cannot get the capacity its plan needs. "
                                       "`kubectl get rlj -A` shows which; `kubectl describe rlj NAME` shows the Degraded "
                                       "condition and events.",
                    },
                }]},
                {"eval_time": "19m", "alertname": "HexrlPlanInfeasible", "exp_alerts": []},
                {"eval_time": "21m", "alertname": "HexrlPlanInfeasible", "exp_alerts": [{
                    "exp_labels": {"severity": "warning"},
                    "exp_annotations": {
                        "summary": "The planner found no feasible plan for an RLJob",
                        "description": "An RLJob is Planned=False (model does not fit any GPU, budget too small, no "
                                       "eligible GPUs…). `kubectl get rlj -A` and the Planned condition's reason and "
                                       "message say what to change.",
                    },
                }]},
            ],
        }],
    }
    test_file = tmp_path / "rules-test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False, allow_unicode=True))
    proc = run([promtool, "test", "rules", test_file], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("threshold", [0.99])
def test_threshold_values_change_the_rules(render: Any, promtool: Path, tmp_path: Path, threshold: float) -> None:
    """With stalenessFraction 0.99 the same lag-4-of-4 job (ratio 0.975) no longer alerts."""
    rules = rendered_rules(render, tmp_path, {"stalenessFraction": threshold})
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        # promtool evaluates groups in Go map order unless told: pinned, so the alerts always read this
        # evaluation's recording rules (annotations carry their values) and the test is deterministic.
        "group_eval_order": ["hexrl.signals", "hexrl.alerts"],
        "tests": [{
            "interval": "1m",
            "input_series": [*staleness_series("hot", 4, 60, 30),
                             {"series": 'hexrl_max_policy_lag{namespace="ml", job="hot"}', "values": "4x30"}],
            "alert_rule_test": [{"eval_time": "20m", "alertname": "HexrlStalenessNearBound", "exp_alerts": []}],
        }],
    }
    test_file = tmp_path / "rules-test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False, allow_unicode=True))
    proc = run([promtool, "test", "rules", test_file], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
