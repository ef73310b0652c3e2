"""The code reward's sandbox: correct programs pass, wrong ones fail, and hostile ones (fork bomb, endless
loop, network, 10 GB allocation, output flood) end as a zero reward within the wall time, leaving no process."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from hexrl.api.rewardspec import CodeTestSpec
from hexrl_workers.reward.code import code_reward, extract_program, parse_io_cases, score_program
from hexrl_workers.reward.sandbox import BOOT, SandboxLimits, run_sandboxed

pytestmark = pytest.mark.workers

WALL = 3.0
MARGIN = 2.0
"""Slack over the wall time for starting and killing the process on a busy 2-core machine."""
LIMITS = SandboxLimits(cpu_seconds=10, memory_mib=512, wall_seconds=WALL)
ADD_TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add(2, 2) == 4\n"


def _sandbox_processes() -> list[int]:
    """Processes still running the sandbox boot script (any leftover is a leak)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(BOOT).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _score_timed(program: str, tests: str, limits: SandboxLimits = LIMITS) -> tuple[float, float]:
    start = time.monotonic()
    reward = score_program(program, tests, limits)
    return reward, time.monotonic() - start


def test_a_correct_program_scores_one_a_wrong_one_zero_a_partial_one_its_fraction():
    assert score_program("def add(a, b):\n    return a + b\n", ADD_TESTS, LIMITS) == 1.0
    assert score_program("def add(a, b):\n    return a - b\n", ADD_TESTS, LIMITS) == 0.0
    assert score_program("def add(a, b):\n    return 4 if a == 2 else 0\n", ADD_TESTS, LIMITS) == pytest.approx(2 / 3)
    assert score_program("def add(a, b):\n    return 4 if a == 2 else 0\n", ADD_TESTS, LIMITS, "all") == 0.0
    assert score_program("def add(a, b) return a + b\n", ADD_TESTS, LIMITS) == 0.0  # syntax error


def test_test_code_without_top_level_asserts_is_one_test():
    check = "def check(f):\n    assert f(1, 2) == 3\n    assert f(0, 0) == 0\n\ncheck(add)\n"
    assert score_program("def add(a, b):\n    return a + b\n", check, LIMITS) == 1.0
    assert score_program("def add(a, b):\n    return 3\n", check, LIMITS) == 0.0


@pytest.mark.parametrize("layout", ["list", "apps"])
def test_stdin_stdout_cases_are_judged_from_outside(layout):
    cases = [("2\n", "4\n"), ("5\n", "10"), ("0\n", "0  \n\n")]
    answer = json.dumps([{"input": i, "output": o} for i, o in cases] if layout == "list"
                        else {"inputs": [i for i, _ in cases], "outputs": [o for _, o in cases]})
    assert len(parse_io_cases(answer) or []) == 3
    assert score_program("print(int(input()) * 2)", answer, LIMITS) == 1.0
    assert score_program("n = int(input())\nprint(4 if n == 2 else n)", answer, LIMITS) == pytest.approx(2 / 3)
    assert score_program("import sys; sys.exit(1)", answer, LIMITS) == 0.0


def test_the_program_is_the_last_python_block_of_the_answer_part():
    text = ("<think>```python\nprint('draft')\n```</think>Here:\n```python\ndef f():\n    return 1\n```\n"
            "and usage:\n```\nf()\n```")
    assert extract_program(text) == "def f():\n    return 1\n"
    assert extract_program("```\nx = 1\n```") == "x = 1\n"
    assert extract_program("x = 2") == "x = 2"


def test_an_endless_loop_is_killed_at_the_wall_time():
    reward, took = _score_timed("def add(a, b):\n    while True:\n        pass\n", ADD_TESTS)
    assert reward == 0.0 and WALL - 0.5 < took < WALL + MARGIN
    assert _sandbox_processes() == []


def test_a_fork_bomb_gets_nowhere():
    bomb = "import os\ndef add(a, b):\n    return a + b\nwhile True:\n    os.fork()\n"
    reward, took = _score_timed(bomb, ADD_TESTS)
    assert reward == 0.0 and took < WALL + MARGIN
    assert _sandbox_processes() == []
    spawn = "import subprocess\ndef echo():\n    return subprocess.run(['echo', 'hi'], capture_output=True).stdout\n"
    assert score_program(spawn, "assert echo() == b'hi\\n'", LIMITS) == 0.0


def test_threads_still_work():
    program = ("import threading\nresults = []\ndef add(a, b):\n    t = threading.Thread(target=lambda: "
               "results.append(a + b))\n    t.start(); t.join()\n    return results.pop()\n")
    assert score_program(program, ADD_TESTS, LIMITS) == 1.0


def test_the_network_is_unreachable_even_on_the_loopback():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []

    def serve() -> None:
        server.settimeout(WALL + MARGIN)
        try:
            conn, _ = server.accept()
        except OSError:
            return
        accepted.append(conn)
        conn.sendall(b"hi")

    t = threading.Thread(target=serve)
    t.start()
    program = (f"import socket\ndef fetch():\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
               "    return s.recv(2)\n")
    try:
        reward, took = _score_timed(program, "assert fetch() == b'hi'")
    finally:
        server.close()
        t.join()
    assert reward == 0.0 and took < WALL + MARGIN
    assert accepted == []
    # a Unix socket pair is no network and stays allowed
    pair = "import socket\na, b = socket.socketpair()\na.sendall(b'ok')\nreceived = b.recv(2)\n"
    assert score_program(pair, "assert received == b'ok'", LIMITS) == 1.0


def test_a_10_gb_allocation_fails_inside_the_limit():
    reward, took = _score_timed("data = bytearray(10 * 2**30)\n", "assert len(data) == 10 * 2**30")
    assert reward == 0.0 and took < WALL + MARGIN
    assert _sandbox_processes() == []


def test_an_output_flood_is_stopped_by_the_file_size_limit():
    small = SandboxLimits(cpu_seconds=10, memory_mib=512, wall_seconds=WALL, file_size_mib=1)
    start = time.monotonic()
    run = run_sandboxed("while True:\n    print('x' * 1000)\n", small, time.monotonic() + WALL)
    assert run.returncode is not None and run.returncode != 0  # SIGXFSZ, well before the wall time
    assert time.monotonic() - start < WALL
    assert len(run.stdout) <= 1 << 20


def test_the_sandbox_runs_in_a_fresh_directory_with_a_minimal_environment(tmp_path):
    os.environ["HEXRL_TEST_SECRET"] = "s3cret"
    try:
        run = run_sandboxed("import os\nprint(os.getcwd())\nprint(os.environ.get('HEXRL_TEST_SECRET'))",
                            LIMITS, time.monotonic() + WALL)
    finally:
        del os.environ["HEXRL_TEST_SECRET"]
    cwd, secret = run.stdout.decode().split()
    assert secret == "None" and "hexrl-sandbox-" in cwd and not Path(cwd).exists()


def test_code_reward_uses_the_spec_limits_and_scoring():
    reward = code_reward(CodeTestSpec(wall_seconds=WALL, scoring="all"))
    completion = "Sure:\n```python\ndef add(a, b):\n    return 4 if a == 2 else a + b\n```"
    assert reward(completion, ADD_TESTS, "") == 1.0
    assert reward(completion.replace("a + b", "0"), ADD_TESTS, "") == 0.0


def test_a_sandbox_that_cannot_start_scores_zero_not_an_error(monkeypatch, tmp_path):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "no-such-dir"))  # like a missing or full /tmp
    reward = code_reward(CodeTestSpec(wall_seconds=WALL))
    assert reward("def add(a, b):\n    return a + b\n", ADD_TESTS, "") == 0.0

