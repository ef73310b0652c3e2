"""The operator's settings in groups: every environment variable the chart and users set keeps its name,
lands in its group, and the flat names the CLI uses reach the same fields."""

from __future__ import annotations

from dataclasses import fields

import pytest

from hexrl.k8s.settings import GROUPS, OperatorSettings, env_name

pytestmark = pytest.mark.unit

ENV_NAMES = {f"HEXRL_OPERATOR_{n}" for n in (
    "NAMESPACE", "POOL_LABEL_KEYS", "SPOT_LABELS", "GOING_AWAY_TAINTS", "PRICE_OVERRIDES", "GPU_CATALOG",
    "WORKER_IMAGE", "WORKER_IMAGE_PULL_POLICY", "INTER_POOL_GBPS", "DEBOUNCE_SECONDS", "DEBOUNCE_MAX_SECONDS",
    "POD_DEBOUNCE_SECONDS", "NOT_READY_GRACE_SECONDS", "WORKER_LIMIT", "PLANNING", "HOMOGENEOUS_BASELINES",
    "FIELD_MANAGER", "KEY_SECRET", "KEY_NAMESPACE", "PROGRESS_URL_TEMPLATE", "METRICS_PORT", "HEALTH_PORT",
    "HEALTH_HOST", "PEERING", "STANDALONE", "PRIORITY", "PRIORITY_CLASS_PREFIX", "SCRAPER_NAMESPACE_LABELS",
    "SCRAPER_POD_LABELS", "SCALING_ENABLED", "SCALING_POLL_SECONDS", "SCALING_STARVE_IDLE_FRACTION",
    "SCALING_GROW_AFTER_POLLS", "SCALING_SHRINK_STALENESS_FRACTION", "SCALING_SHRINK_AFTER_POLLS",
    "SCALING_MAX_EXTRA_REPLICAS", "SCALING_COOLDOWN_SECONDS")}
"""The variables the operator read before its settings were grouped (the chart and users set these)."""
CALIBRATION_ENV_NAMES = {f"HEXRL_OPERATOR_CALIBRATION_{n}" for n in (
    "ENABLED", "MIN_OBSERVATION_SECONDS", "WINDOW", "EVENT_CHANGE", "REPLAN_MARGIN")}
"""Online calibration's variables (added after the grouping, in the same scheme as scaling's)."""


def test_every_grouped_field_keeps_the_environment_variable_it_had():
    names = {env_name(g, f) for g, group in GROUPS.items() for f in fields(group)}
    assert names | {"HEXRL_OPERATOR_LOG_LEVEL"} == ENV_NAMES | CALIBRATION_ENV_NAMES | {"HEXRL_OPERATOR_LOG_LEVEL"}
    assert len(names) == sum(len(fields(group)) for group in GROUPS.values())  # no two fields share a variable


def test_the_environment_reaches_each_group():
    s = OperatorSettings.from_env({
        "HEXRL_OPERATOR_NAMESPACE": "research", "HEXRL_OPERATOR_PLANNING": "concurrent",
        "HEXRL_OPERATOR_WORKER_IMAGE": "mirror/w:1", "HEXRL_OPERATOR_PRICE_OVERRIDES": '{"H800": 4}',
        "HEXRL_OPERATOR_KEY_NAMESPACE": "ops", "HEXRL_OPERATOR_HEALTH_PORT": "9", "HEXRL_OPERATOR_INTER_POOL_GBPS": "3",
        "HEXRL_OPERATOR_SCALING_POLL_SECONDS": "5", "HEXRL_OPERATOR_LOG_LEVEL": "DEBUG",
    })
    assert (s.watching.namespace, s.planning.mode, s.workloads.worker_image) == ("research", "concurrent", "mirror/w:1")
    assert (s.pricing.price_overrides, s.identity.key_namespace, s.endpoints.health_port) == ({"H800": 4.0}, "ops", 9)
    assert (s.discovery.inter_pool_gbps, s.scaling.poll_seconds, s.log_level) == (3.0, 5.0, "DEBUG")
    assert s.operator_namespace() == "ops"


def test_flat_names_set_the_same_fields_and_an_unknown_one_is_refused():
    s = OperatorSettings().with_values(planning="concurrent", standalone=True, metrics_port=0, log_level="ERROR")
    assert (s.planning.mode, s.identity.standalone, s.endpoints.metrics_port, s.log_level) == (
        "concurrent", True, 0, "ERROR")
    assert OperatorSettings().planning.mode == "serial"  # a copy: the original is untouched
    with pytest.raises(TypeError, match="no setting 'plannning'"):
        OperatorSettings().with_values(plannning="serial")


def test_a_bad_value_names_the_variable_to_fix():
    with pytest.raises(ValueError, match="HEXRL_OPERATOR_WORKER_LIMIT"):
        OperatorSettings.from_env({"HEXRL_OPERATOR_WORKER_LIMIT": "many"})
    with pytest.raises(ValueError, match="HEXRL_OPERATOR_WORKER_IMAGE_PULL_POLICY"):
        OperatorSettings().with_values(worker_image_pull_policy="Sometimes")
