"""Drift and completeness: generated chart files are current, every value is documented, every metric a
dashboard or rule uses is exported by the operator or the workers, and every exported metric is documented.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from chartlib import CHART, ROOT, by_kind

sys.path.insert(0, str(ROOT / "scripts"))
import dashboards
import gen_chart

METRIC = re.compile(r"\b(hexrl_[a-z0-9_]+)\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exported_names() -> dict[str, str]:
    """Series names a scrape can contain -> the documented family (histograms expand to three series)."""
    out: dict[str, str] = {}
    for m in gen_chart.all_metrics():
        out[m.name] = m.name
        if m.kind == "histogram":
            for suffix in HISTOGRAM_SUFFIXES:
                out[m.name + suffix] = m.name
    return out


def used_metrics(expr: str) -> set[str]:
    return set(METRIC.findall(expr))


def test_generated_files_are_current() -> None:
    stale = [str(p.relative_to(ROOT)) for p in gen_chart.stale_files()]
    assert not stale, f"stale generated files {stale}: run `make chart` and commit the result"


def test_undocumented_value_is_an_error() -> None:
    text = (CHART / "values.yaml").read_text() + "\nsneaky:\n  knob: 3\n"
    with pytest.raises(gen_chart.GenError, match=r"sneaky\.knob"):
        gen_chart.value_docs(text)


def test_values_table_lists_every_documented_value() -> None:
    docs = gen_chart.value_docs((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    assert len(docs) > 40
    for d in docs:
        assert f"| `{d.key}` |" in readme, d.key


def test_metrics_doc_lists_every_exported_metric() -> None:
    doc = (ROOT / "docs" / "metrics.md").read_text()
    names = [m.name for m in gen_chart.all_metrics()]
    assert len(names) == len(set(names)), "two modules export the same metric name"
    for name in names:
        assert name.startswith("hexrl_"), name
        assert f"`{name}`" in doc, name


def test_every_exported_operator_metric_is_registered() -> None:
    """The operator's documented metrics are exactly what its registry exposes on /metrics."""
    from prometheus_client import REGISTRY, generate_latest

    from hexrl.k8s import metrics as om

    text = generate_latest(REGISTRY).decode()
    for metric in om.ALL:
        (family,) = metric.describe()
        exposed = f"{family.name}_total" if family.type == "counter" else family.name
        assert f"# TYPE {exposed} {family.type}" in text


@pytest.mark.parametrize("uid", sorted(dashboards.all_dashboards()))
def test_dashboard_metrics_are_exported(uid: str) -> None:
    model = json.loads((CHART / "dashboards" / f"{uid}.json").read_text())
    exported = exported_names()
    exprs = dashboards.expressions(model)
    assert exprs, uid
    for title, expr in exprs:
        unknown = used_metrics(expr) - set(exported)
        assert not unknown, f"{uid} / {title}: {sorted(unknown)} not exported by the operator or the workers"


def test_dashboards_cover_the_issue() -> None:
    """The four dashboards exist with the panels issue 6 asks for."""
    titles = {uid: {p["title"] for p in m["panels"]} for uid, m in dashboards.all_dashboards().items()}
    assert {"Reconciles by result", "Errors by reason", "Plan solve time"} <= titles["hexrl-operator"]
    assert {"Tokens/s: planned vs observed", "Cost", "$ per million tokens", "Policy version",
            "Staleness of trained samples vs η", "Staleness distribution", "Trainer idle fraction",
            "Buffer depth"} <= titles["hexrl-job"]
    assert {"Preemptions handled", "Re-plans by trigger", "Rollout replicas per pool"} <= titles["hexrl-pools"]
    assert {"Weight pull duration", "Weight bytes/s", "Version lag per worker"} <= titles["hexrl-weights"]


def test_rule_metrics_are_exported(render: object) -> None:
    objs = render({"prometheusRule": {"enabled": True}}, extra=["--kube-version", "1.34.4"])  # type: ignore[operator]
    (rule,) = by_kind(objs, "PrometheusRule")
    exported = exported_names()
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            unknown = used_metrics(r["expr"]) - set(exported)
            assert not unknown, f"{r.get('alert') or r.get('record')}: {sorted(unknown)} not exported"


def test_crd_copy_is_the_generated_crd() -> None:
    assert (CHART / "crds" / "rljobs.hexrl.dev.yaml").read_text() == (ROOT / "crds" / "rljobs.hexrl.dev.yaml").read_text()
    peering = [d for d in yaml.safe_load_all((CHART / "crds" / "peering.kopf.dev.yaml").read_text()) if d]
    assert {d["metadata"]["name"] for d in peering} == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}


def test_generator_detects_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hand edit to a generated file is reported as stale."""
    fake_doc = tmp_path / "metrics.md"
    fake_doc.write_text((ROOT / "docs" / "metrics.md").read_text().replace("hexrl_jobs", "hexrl_jobz"))
    monkeypatch.setattr(gen_chart, "METRICS_DOC", fake_doc)
    assert fake_doc in gen_chart.stale_files()
