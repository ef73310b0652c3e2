"""Bad inputs given to `hexrl` as a real process, where in-process tests cannot tell: a device as the file,
a named pipe, bytes that are not UTF-8, and what reaches stdout and stderr (a message on stderr, nothing on stdout,
no traceback) — with the exit status a script sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / "manifests" / "examples" / "rljob.yaml"
INVENTORY = ROOT / "manifests" / "clusters" / "small.yaml"


def hexrl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hexrl.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def assert_one_sentence(proc: subprocess.CompletedProcess[str], status: int, *fragments: str) -> None:
    assert proc.returncode == status, proc.stderr[-2000:]
    assert proc.stdout == "", f"stdout must stay empty on bad input: {proc.stdout[:500]!r}"
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def test_dev_zero_as_the_inventory_is_refused_at_once() -> None:
    """/dev/zero ran until memory ran out."""
    proc = hexrl("plan", "-i", "/dev/zero", "-j", str(JOB), "--format", "json")
    assert_one_sentence(proc, 1, "'/dev/zero'", "not a regular file")


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "job.fifo"
    os.mkfifo(fifo)
    proc = hexrl("plan", "-i", str(INVENTORY), "-j", str(fifo), "--format", "json")
    assert_one_sentence(proc, 1, "not a regular file")


def test_non_utf8_job_names_the_byte_offset() -> None:
    proc = hexrl("plan", "-i", str(INVENTORY), "-j", str(ROOT / "tests/corpus/job-not-utf8.yaml"), "--format", "json")
    assert_one_sentence(proc, 1, "is not UTF-8 text", "offset 152 (line 6)")


@pytest.mark.parametrize("command", ["plan", "simulate"])
def test_json_output_on_bad_input_leaves_stdout_empty(command: str) -> None:
    """`hexrl plan --format json | jq` must see no document at all, not a partial one, when the input is bad."""
    proc = hexrl(command, "-i", str(ROOT / "tests/corpus/inventory-price-inf.yaml"), "-j", str(JOB), "--format", "json")
    assert_one_sentence(proc, 1, "pools[1].pricePerGpuHour is .inf")


def test_deep_nesting_as_a_process(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("apiVersion: hexrl.dev/v1alpha1\nkind: RLJob\nspec: {a: " + "[" * 5_000 + "]" * 5_000 + "}\n")
    proc = hexrl("plan", "-i", str(INVENTORY), "-j", str(deep))
    assert_one_sentence(proc, 1, "more than 32 deep")


def test_usage_and_bad_input_and_infeasible_are_three_statuses(tmp_path: Path) -> None:
    usage = hexrl("plan", "--no-such-option")
    assert usage.returncode == 2 and "No such option" in usage.stderr
    poor = tmp_path / "poor.yaml"
    poor.write_text(JOB.read_text().replace("maxCostPerHour: 180", "maxCostPerHour: 0.5"))
    infeasible = hexrl("plan", "-i", str(INVENTORY), "-j", str(poor), "--format", "json")
    assert infeasible.returncode == 3, infeasible.stderr[-2000:]
    assert '"feasible": false' in infeasible.stdout
