"""Bad input files get one clear sentence and exit status 1 from the real CLI, never a traceback or a long run.

The committed corpus (tests/corpus/, expectations in tests/corpus/_expected.yaml) runs in-process through typer's
CliRunner; inputs too large to commit (deep nesting, a file over the size cap, 2,000 pools, a 5,000-digit number)
are built here. tests/unit/test_bad_inputs_process.py runs the cases that need a real process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hexrl.cli import app
from hexrl.commands._inputs import EXIT_BAD_INPUT, EXIT_INFEASIBLE, MAX_DEPTH, MAX_FILE_BYTES

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus"
EXPECTED: dict[str, dict] = yaml.safe_load((CORPUS / "_expected.yaml").read_text())
JOB = ROOT / "manifests" / "examples" / "rljob.yaml"
TINY_JOB = ROOT / "manifests" / "examples" / "rljob-tiny.yaml"
INVENTORY = ROOT / "manifests" / "clusters" / "small.yaml"


def invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    # An exception other than typer's exit is the traceback a user would have seen.
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args}: raised {type(result.exception).__name__}: {result.exception}")
    return result


def command_for(path: Path, role: str) -> list[str]:
    """The command line that gives `path` to the option `role` names, with good files for the other options."""
    return {
        "job": ["plan", "-i", str(INVENTORY), "-j", str(path)],
        "inventory": ["plan", "-i", str(path), "-j", str(JOB)],
        "gpu-catalog": ["operator", "--gpu-catalog", str(path)],
        "trace": ["simulate", "-i", str(INVENTORY), "-j", str(TINY_JOB), "--hours", "0.1", "-p", "hexrl-spot",
                  "--trace", str(path)],
        "profile": ["plan", "-i", str(INVENTORY), "-j", str(JOB), "--profile", str(path)],
    }[role]


def test_every_corpus_file_has_an_expectation_and_every_expectation_a_file() -> None:
    files = {p.name for p in CORPUS.iterdir() if not p.name.startswith("_") and p.suffix != ".md"}
    assert files == set(EXPECTED), f"only files: {files - set(EXPECTED)}; only expectations: {set(EXPECTED) - files}"
    assert len(files) >= 40


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_input_gets_a_sentence_and_exit_1(name: str) -> None:
    want = EXPECTED[name]
    result = invoke(command_for(CORPUS / name, want["as"]))
    assert result.exit_code == want["exit"], result.output
    for fragment in want["says"]:
        assert fragment in result.output, f"{name}: {fragment!r} not in {result.output!r}"
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 2, f"{name}: more than a sentence: {result.output!r}"


def test_the_good_files_the_corpus_is_built_from_plan() -> None:
    """The corpus files are the good examples with one thing broken: the good ones themselves must pass."""
    result = invoke(["plan", "-i", str(INVENTORY), "-j", str(JOB), "-o", "json"])
    assert result.exit_code in (0, EXIT_INFEASIBLE), result.output
    assert "feasible" in json.loads(result.stdout)


def _with_body(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 100_000])
@pytest.mark.parametrize("style", ["yaml-block", "flow", "json"])
def test_deep_nesting_is_refused_naming_the_limit(tmp_path: Path, depth: int, style: str) -> None:
    """`a: [[[[…]]]]` 5,000 deep was a RecursionError traceback."""
    if style == "yaml-block":
        text = "apiVersion: hexrl.dev/v1alpha1\nkind: RLJob\nspec:\n  extra:\n    " + "- " * depth + "1\n"
    elif style == "flow":
        text = "apiVersion: hexrl.dev/v1alpha1\nkind: RLJob\nspec: {a: " + "[" * depth + "1" + "]" * depth + "}\n"
    else:
        text = '{"apiVersion": "hexrl.dev/v1alpha1", "kind": "RLJob", "spec": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
    result = invoke(command_for(_with_body(tmp_path, "deep.yaml", text), "job"))
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "more than 32 deep" in result.output, result.output


def test_nesting_within_the_limit_is_read(tmp_path: Path) -> None:
    """Depth is not refused below the limit: the file then fails on its content, naming the field."""
    depth = MAX_DEPTH - 4
    text = JOB.read_text().replace("\nspec:\n", "\nspec:\n  nested: " + "[" * depth + "]" * depth + "\n", 1)
    result = invoke(command_for(_with_body(tmp_path, "ok-depth.yaml", text), "job"))
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "spec.nested" in result.output and "more than" not in result.output, result.output


def test_a_file_over_the_size_cap_is_refused_before_parsing(tmp_path: Path) -> None:
    """A 50 MB inventory took 40 s; anything above the cap is refused after reading at most cap + 1 bytes."""
    path = tmp_path / "huge.yaml"
    with path.open("w") as f:
        f.write("apiVersion: hexrl.dev/v1alpha1\nkind: ClusterInventory\n")
        line = "# " + "x" * 1022 + "\n"
        for _ in range(MAX_FILE_BYTES // len(line) + 1):
            f.write(line)
    result = invoke(command_for(path, "inventory"))
    assert result.exit_code == EXIT_BAD_INPUT and "larger than 8 MiB" in result.output, result.output


def test_a_directory_is_refused(tmp_path: Path) -> None:
    result = invoke(command_for(tmp_path, "job"))
    assert result.exit_code == EXIT_BAD_INPUT and "is a directory" in result.output, result.output


def test_a_missing_file_says_so() -> None:
    result = invoke(command_for(ROOT / "no-such-file.yaml", "inventory"))
    assert result.exit_code == EXIT_BAD_INPUT and "does not exist" in result.output, result.output


def test_2000_pools_are_refused_before_planning(tmp_path: Path) -> None:
    """2,000 pools did not finish planning in 60 s; the limit is named instead."""
    pools = [{"name": f"p{i}", "gpu": "H100", "gpusPerNode": 8, "nodes": 1} for i in range(2_000)]
    doc = {"apiVersion": "hexrl.dev/v1alpha1", "kind": "ClusterInventory", "pools": pools}
    result = invoke(command_for(_with_body(tmp_path, "pools.yaml", yaml.safe_dump(doc)), "inventory"))
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "2,000 node pools" in result.output and "at most 32" in result.output, result.output


def test_an_integer_of_5000_digits_is_refused(tmp_path: Path) -> None:
    text = JOB.read_text().replace("layers: 28", "layers: 1" + "0" * 5_000)
    result = invoke(command_for(_with_body(tmp_path, "digits.yaml", text), "job"))
    assert result.exit_code == EXIT_BAD_INPUT and "cannot be read" in result.output, result.output
    assert "set_int_max_str_digits" not in result.output


def test_an_infeasible_plan_exits_3_not_like_bad_input(tmp_path: Path) -> None:
    text = JOB.read_text().replace("maxCostPerHour: 180", "maxCostPerHour: 0.5")
    result = invoke(["plan", "-i", str(INVENTORY), "-j", str(_with_body(tmp_path, "poor.yaml", text)), "-o", "json"])
    assert result.exit_code == EXIT_INFEASIBLE, result.output
    assert json.loads(result.stdout)["feasible"] is False


def test_a_usage_error_is_clicks_2() -> None:
    result = CliRunner().invoke(app, ["plan", "--no-such-option"])
    assert result.exit_code == 2


def test_simulate_exit_codes_match_plan(tmp_path: Path) -> None:
    bad = invoke(["simulate", "-i", str(CORPUS / "inventory-price-inf.yaml"), "-j", str(TINY_JOB), "--hours", "0.1"])
    assert bad.exit_code == EXIT_BAD_INPUT and "pools[1].pricePerGpuHour is .inf" in bad.output, bad.output
    text = TINY_JOB.read_text()
    doc = yaml.safe_load(text)
    doc["spec"]["budget"] = {"maxCostPerHour": 0.001}
    poor = _with_body(tmp_path, "poor.yaml", yaml.safe_dump(doc))
    none_ran = invoke(["simulate", "-i", str(INVENTORY), "-j", str(poor), "--hours", "0.1", "-p", "hexrl"])
    assert none_ran.exit_code == EXIT_INFEASIBLE and "no policy could run" in none_ran.output, none_ran.output


def test_the_planner_itself_refuses_a_cluster_beyond_its_limits() -> None:
    """A cluster that does not come from a file (the operator's node snapshot) meets the same limits in plan() and
    replan(): Infeasible with reason ProblemTooLarge, before any MILP is built."""
    from hexrl.api import reasons
    from hexrl.api.models import RLJob
    from hexrl.sched import Infeasible, parse_inventory, plan, replan
    from hexrl.sched.limits import DEFAULT_LIMITS, ProblemLimits

    pools = [{"name": f"p{i}", "gpu": "H100", "gpusPerNode": 8, "nodes": 1} for i in range(DEFAULT_LIMITS.max_pools + 1)]
    cluster = parse_inventory({"pools": pools}, limits=ProblemLimits(max_pools=10_000))
    spec = RLJob.model_validate(yaml.safe_load(JOB.read_text())).spec
    result = plan(spec, cluster)
    assert isinstance(result, Infeasible) and result.reason == reasons.PROBLEM_TOO_LARGE, result
    assert f"{DEFAULT_LIMITS.max_pools + 1:,} node pools" in result.message
    job_7b = RLJob.model_validate(yaml.safe_load((ROOT / "manifests/examples/rljob-7b.yaml").read_text())).spec
    first = plan(job_7b, parse_inventory(yaml.safe_load((ROOT / "manifests/clusters/h800-h20.yaml").read_text())))
    assert not isinstance(first, Infeasible), first
    again = replan(job_7b, cluster, first)
    assert isinstance(again, Infeasible) and again.reason == reasons.PROBLEM_TOO_LARGE


def test_a_gpu_catalog_in_the_environment_nested_deeply_is_a_sentence() -> None:
    """The operator's HEXRL_OPERATOR_GPU_CATALOG (JSON) nested 50,000 deep was a RecursionError traceback."""
    result = CliRunner().invoke(app, ["operator"], env={"HEXRL_OPERATOR_GPU_CATALOG": "[" * 50_000 + "]" * 50_000})
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "HEXRL_OPERATOR_GPU_CATALOG is not valid" in result.output and "nested too deeply" in result.output
    assert not isinstance(result.exception, RecursionError)
