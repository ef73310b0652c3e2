"""Running untrusted Python (a model's program) in a confined subprocess, for the `code` reward.

Each run is `python -I sandbox_boot.py` (isolated mode: no environment variables, user site or script
directory on the path) in its own session and process group, with a fresh temporary directory as working
directory (deleted afterwards), a minimal environment, stdin and stdout in files (a program printing without
end is stopped by the file-size limit, not by filling this process's memory), and the confinement that
`sandbox_boot` installs on itself: rlimits, no network, no new processes, death with its parent. At the wall
deadline the whole process group is killed.

Why not RLIMIT_NPROC for the process limit: it counts every process and thread of the user (in a pod, the
rollout worker's dozens of torch threads share the user) and does not bind root; the seccomp filter refuses
process creation instead, which holds for everyone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hexrl.api.rewardspec import CodeTestSpec

BOOT = Path(__file__).with_name("sandbox_boot.py")
MIB = 1 << 20
_OUTPUT_KEEP_BYTES = 1 << 20
"""Most stdout read back for comparison (the program may write up to the file-size limit)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sample's test runs (spec.reward.code)."""

    cpu_seconds: int = 5
    """CPU seconds of each test process (RLIMIT_CPU; SIGKILL one second later)."""
    memory_mib: int = 1024
    """Address space of each test process, MiB (RLIMIT_AS): Python needs ~30; larger allocations fail inside."""
    wall_seconds: float = 5.0
    """Wall time of all of one sample's test runs, seconds; the process group is killed at it."""
    file_size_mib: int = 16
    """Largest file a test process may write (stdout included), MiB."""
    open_files: int = 64
    """Open file descriptors of each test process."""

    @classmethod
    def from_spec(cls, spec: CodeTestSpec) -> SandboxLimits:
        return cls(spec.cpu_seconds, spec.memory_mib, spec.wall_seconds, spec.file_size_mib, spec.open_files)


@dataclass(frozen=True)
class SandboxRun:
    """What one sandboxed run did."""

    returncode: int | None
    """The exit status (negative: killed by that signal); None when killed at the wall deadline."""
    stdout: bytes
    """The program's standard output (its first `_OUTPUT_KEEP_BYTES`)."""
    result: str
    """What the boot script reported on its result descriptor (asserts mode: `passed total`)."""
    stderr: str
    """The tail of its standard error (for the start-up self-check's message)."""

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def _env(workdir: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir,
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}


def _config(limits: SandboxLimits, mode: str, result_fd: int) -> dict[str, object]:
    return {"cpuSeconds": limits.cpu_seconds, "memoryBytes": limits.memory_mib * MIB,
            "fileSizeBytes": limits.file_size_mib * MIB, "openFiles": limits.open_files,
            "program": "solution.py", "tests": "tests.py", "mode": mode, "resultFd": result_fd}


def run_sandboxed(program: str, limits: SandboxLimits, deadline: float, *, stdin: str = "",
                  tests: str | None = None) -> SandboxRun:
    """Run `program` confined until it ends or `deadline` (time.monotonic()): as __main__ with `stdin`, or,
    given `tests`, followed by them (asserts mode)."""
    # ignore_cleanup_errors: whatever the program left behind must not turn a score into an error
    with tempfile.TemporaryDirectory(prefix="hexrl-sandbox-", ignore_cleanup_errors=True) as workdir:
        work = Path(workdir)
        (work / "solution.py").write_text(program, encoding="utf-8")
        (work / "stdin").write_text(stdin, encoding="utf-8")
        if tests is not None:
            (work / "tests.py").write_text(tests, encoding="utf-8")
        read_end, write_end = os.pipe()
        try:
            returncode = _run(work, limits, deadline, "io" if tests is None else "asserts", write_end)
            result = _read_all(read_end)
        finally:
            os.close(read_end)
        return SandboxRun(returncode, _head(work / "stdout", _OUTPUT_KEEP_BYTES), result.strip(),
                          _head(work / "stderr", 4000).decode(errors="replace"))


def _run(work: Path, limits: SandboxLimits, deadline: float, mode: str, result_fd: int) -> int | None:
    cmd = [sys.executable, "-I", str(BOOT), json.dumps(_config(limits, mode, result_fd))]
    with open(work / "stdin", "rb") as stdin, open(work / "stdout", "wb") as stdout, \
            open(work / "stderr", "wb") as stderr:
        try:
            proc = subprocess.Popen(cmd, cwd=work, env=_env(str(work)), stdin=stdin, stdout=stdout, stderr=stderr,
                                    pass_fds=(result_fd,), start_new_session=True, close_fds=True)
        finally:
            os.close(result_fd)  # the child holds its copy; ours must go for the read to see end of file
        try:
            return proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return None
        finally:
            _kill_group(proc.pid)
            proc.wait()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing left in the group
        os.killpg(pgid, signal.SIGKILL)


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
        if sum(map(len, chunks)) > 4096:  # the boot script writes one short line; more is the program's noise
            break
    return b"".join(chunks).decode(errors="replace")


def _head(path: Path, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return b""


def self_check(limits: SandboxLimits) -> None:
    """Raise ValueError (a sentence) when the sandbox cannot run here: checked once at start-up, so a broken
    sandbox is a clear configuration error rather than every code reward silently 0."""
    run = run_sandboxed("print(6 * 7)", limits, time.monotonic() + max(limits.wall_seconds, 10.0))
    if run.stdout.strip() != b"42":
        raise ValueError("the code reward's sandbox does not work on this node (a trivial program failed: "
                         f"exit {run.returncode}, {run.stderr.strip()[-500:] or 'no output'}); use another reward "
                         "or a node whose kernel allows seccomp filters")
