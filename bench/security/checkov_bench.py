"""Checkov findings on what hexrl deploys: the Helm chart as `helm template` renders it (default values, no
CRDs) and the children the operator renders for manifests/examples/rljob-tiny.yaml (namespace `research`; Secret, ConfigMap,
ServiceAccount, NetworkPolicy, coordinator Deployment and Services, trainer PDB and pods, rollout pods).

Prints, per target, the passed and failed check counts and each failing check id with the objects it flags.
`--repo` points at another checkout (e.g. a `git worktree` of an older commit) to measure before/after with
the same script: its chart and its `hexrl.k8s.render` are used (the job is rendered in a child process whose
import path starts with that checkout).

checkov is not a project dependency: install it into a throwaway venv, e.g.
    python3 -m venv /root/checkov-venv && /root/checkov-venv/bin/pip install checkov==3.3.30
    .venv/bin/python bench/security/checkov_bench.py --checkov /root/checkov-venv/bin/checkov [--repo DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TINY = Path("manifests/examples/rljob-tiny.yaml")


@dataclass(frozen=True)
class BenchSettings:
    """What to measure and with which tools."""

    repo: Path = ROOT
    """Checkout whose chart and renderer are measured."""
    checkov: Path = Path("/root/checkov-venv/bin/checkov")
    """The checkov executable (kept outside the project's venv)."""
    kube_version: str = "1.34.4"
    """`helm template --kube-version` (the chart's kubeVersion constraint must admit it)."""


@dataclass
class Findings:
    """One target's checkov result."""

    target: str
    """`chart` or `job-tiny`."""
    passed: int = 0
    """Passed checks, counted per object."""
    failed: int = 0
    """Failed checks, counted per object."""
    failing: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """check id -> `Kind.namespace.name` of each flagged object."""
    names: dict[str, str] = field(default_factory=dict)
    """check id -> checkov's title of the check."""


def render_chart(settings: BenchSettings) -> str:
    """The chart's manifests for release `hexrl` in `hexrl-system` (default values; CRDs left out)."""
    from hexrl.devcluster.tools import ensure_tool

    helm = ensure_tool("helm")
    return subprocess.run([str(helm), "template", "hexrl", str(settings.repo / "charts" / "hexrl"),
                           "--namespace", "hexrl-system", "--kube-version", settings.kube_version],
                          capture_output=True, text=True, timeout=120, check=True).stdout


def render_job(settings: BenchSettings) -> str:
    """The tiny job's children, rendered by `settings.repo`'s own code in a child process."""
    return subprocess.run([sys.executable, __file__, "--emit-job", str(settings.repo)], capture_output=True,
                          text=True, timeout=300, check=True).stdout


def _emit_job(repo: Path) -> None:
    """(child process) Print the children of rljob-tiny as YAML, rendered by `repo`'s hexrl.k8s.render with the
    unit tests' plan (DP×8 trainer on H800, three H20 spot rollout replicas) and inventory."""
    for sub in ("operator", "tests", "tests/unit/k8s"):
        sys.path.insert(0, str(repo / sub))
    import inspect

    import yaml
    from k8s_helpers import hetero_nodes, make_plan

    import hexrl
    from hexrl.api.models import RLJobSpec
    from hexrl.k8s import render
    from hexrl.k8s.settings import OperatorSettings
    from hexrl.k8s.snapshot import build_cluster, node_view

    assert Path(hexrl.__file__).is_relative_to(repo), f"imported {hexrl.__file__}, not {repo}'s hexrl"
    s = OperatorSettings()
    doc = yaml.safe_load((repo / TINY).read_text())
    spec = RLJobSpec.model_validate(doc["spec"])
    job = render.JobRef(doc["metadata"]["name"], "research", "00000000-0000-4000-8000-000000000000", 1)
    plan = make_plan(trainer_nodes=("h800-ondemand-0",))
    snap = build_cluster([node_view(n, s) for n in hetero_nodes()], [], None, s)
    # The token argument changed from one string to one per role (issue #13); pass what this checkout takes.
    takes_roles = "tokens" in inspect.signature(render.render_static).parameters
    token: Any = {"trainer": "t", "rollout": "r", "operator": "o"} if takes_roles else "token"
    children = render.render_static(job, spec, plan, {"gpus": plan.gpus}, 4, {"trainerEpoch": 0}, token, s)
    children += render.render_trainer_pods(job, spec, plan, snap, 0, s)
    children += [render.render_rollout_pod(job, spec, slot, 0, snap, s) for slot in render.rollout_slots(plan)]
    sys.stdout.write(yaml.safe_dump_all(children, sort_keys=False))


def run_checkov(settings: BenchSettings, target: str, manifests: str) -> Findings:
    """checkov's kubernetes framework on one multi-document YAML text."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{target}.yaml").write_text(manifests)
        proc = subprocess.run([str(settings.checkov), "-d", tmp, "--framework", "kubernetes", "-o", "json",
                               "--compact", "--skip-download"],
                              capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode not in (0, 1):  # 1 = some check failed
        raise SystemExit(f"checkov exited {proc.returncode}: {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    reports = report if isinstance(report, list) else [report]
    out = Findings(target)
    for r in reports:
        results = r.get("results") or {}
        out.passed += len(results.get("passed_checks") or [])
        for check in results.get("failed_checks") or []:
            out.failed += 1
            out.failing[check["check_id"]].add(check.get("resource", "?"))
            out.names[check["check_id"]] = check.get("check_name", "")
    return out


def _print(f: Findings) -> None:
    print(f"{f.target}: {f.failed} failed, {f.passed} passed ({len(f.failing)} distinct failing checks)")
    for cid in sorted(f.failing, key=lambda c: (-len(f.failing[c]), c)):
        objs = sorted(f.failing[cid])
        more = f" +{len(objs) - 3} more" if len(objs) > 3 else ""
        print(f"  {cid:<14} x{len(objs):<3} {f.names[cid][:70]}  [{', '.join(objs[:3])}{more}]")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, default=ROOT, help="checkout to measure (default: this one)")
    ap.add_argument("--checkov", type=Path, default=BenchSettings.checkov, help="checkov executable")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--emit-job", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.emit_job:
        _emit_job(args.emit_job.resolve())
        return 0
    settings = BenchSettings(repo=args.repo.resolve(), checkov=args.checkov)
    if not settings.checkov.is_file():
        print(f"error: checkov not found at {settings.checkov}; install it into a venv outside the project "
              "(see this script's docstring) and pass --checkov PATH", file=sys.stderr)
        return 1
    results = [run_checkov(settings, "chart", render_chart(settings)),
               run_checkov(settings, "job-tiny", render_job(settings))]
    if args.json:
        print(json.dumps({f.target: {"passed": f.passed, "failed": f.failed,
                                     "failing": {k: sorted(v) for k, v in sorted(f.failing.items())}}
                          for f in results}, indent=1))
    else:
        print(f"checkov on {settings.repo}")
        for f in results:
            _print(f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
