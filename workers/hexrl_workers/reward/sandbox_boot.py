"""Run by `python -I` as the first thing in a code-reward sandbox process: confine this process, then run the
program (and, in asserts mode, the tests) in it. Standard library only: it runs isolated from the job's code.

Confinement, in order: die with the parent (PR_SET_PDEATHSIG, so a killed reward process leaves no test
behind), resource limits (CPU seconds, address space, file size, open files, no core files), then a
seccomp-bpf filter on itself (allowed without privileges once no_new_privs is set) that makes socket() fail
for every address family but AF_UNIX (no network: pods cannot unshare a network namespace without
privileges), and refuses new processes (fork, vfork, clone without CLONE_THREAD; clone3, whose flags a filter
cannot read, answers ENOSYS so the C library falls back to clone) and io_uring (which can open sockets).
Threads stay allowed. The filter is about twenty BPF instructions written here with ctypes because no
well-kept Python binding is on PyPI: libseccomp's own bindings are not published there, pyseccomp (a ctypes
port) was last released in 2021, and the others are young single-maintainer packages; libseccomp itself is
in the image (apt depends on it) but a binding to it would be one more dependency for twenty instructions.

argv[1] is a JSON object: limits (`cpuSeconds`, `memoryBytes`, `fileSizeBytes`, `openFiles`), `program`
(path), `mode` (`io`: run the program as __main__; `asserts`: run it, then each top-level assert of `tests`
(path) as one test, and write `passed total` to file descriptor `resultFd`; a program that raises passes none).
"""

import ast
import ctypes
import json
import os
import platform
import resource
import struct
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1
_PR_SET_SECCOMP = 22
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_MODE_FILTER = 2
_SIGKILL = 9
_EPERM, _ENOSYS = 1, 38
_AF_UNIX = 1
_CLONE_THREAD = 0x00010000
_X32_SYSCALL_BIT = 0x40000000

# per architecture: audit arch, syscall numbers (socket, clone, clone3, io_uring_setup, fork, vfork)
_ARCHES = {
    "x86_64": (0xC000003E, {"socket": 41, "clone": 56, "clone3": 435, "io_uring_setup": 425, "fork": 57,
                            "vfork": 58}),
    "aarch64": (0xC00000B7, {"socket": 198, "clone": 220, "clone3": 435, "io_uring_setup": 425}),
}

_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
# offsets in struct seccomp_data: nr at 0, arch at 4, the low 32 bits of args[0] at 16 (little-endian)
_ALLOW, _KILL = 0x7FFF0000, 0x80000000


# One BPF instruction (code, jump-if-true, jump-if-false, k); a jump is an offset, or a label until resolved.
_Jump = int | str
_Instruction = tuple[int, _Jump, _Jump, int]
_Resolved = tuple[int, int, int, int]


def _errno(code: int) -> int:
    return 0x00050000 | code


def _filter_program(machine: str) -> list[_Resolved]:
    """The BPF instructions (code, jt, jf, k) with jumps to labels resolved."""
    arch, nr = _ARCHES[machine]
    prog: list[_Instruction] = [(_LD_ABS, 0, 0, 4), (_JEQ, 0, "kill", arch), (_LD_ABS, 0, 0, 0)]
    if machine == "x86_64":
        prog.append((_JGE, "eperm", 0, _X32_SYSCALL_BIT))
    prog += [(_JEQ, "socket", 0, nr["socket"]), (_JEQ, "clone", 0, nr["clone"]),
             (_JEQ, "enosys", 0, nr["clone3"]), (_JEQ, "eperm", 0, nr["io_uring_setup"])]
    prog += [(_JEQ, "eperm", 0, nr[name]) for name in ("fork", "vfork") if name in nr]
    labels: dict[str, int] = {}
    # every jump goes forward (BPF has no backward jumps): the checks, then the argument tests, then the returns
    tail: list[tuple[str | None, _Instruction]] = [(None, (_RET, 0, 0, _ALLOW)),
            ("socket", (_LD_ABS, 0, 0, 16)), (None, (_JEQ, "allow", "eperm", _AF_UNIX)),
            ("clone", (_LD_ABS, 0, 0, 16)), (None, (_JSET, "allow", "eperm", _CLONE_THREAD)),
            ("allow", (_RET, 0, 0, _ALLOW)), ("eperm", (_RET, 0, 0, _errno(_EPERM))),
            ("enosys", (_RET, 0, 0, _errno(_ENOSYS))), ("kill", (_RET, 0, 0, _KILL))]
    for label, ins in tail:
        if label:
            labels[label] = len(prog)
        prog.append(ins)
    out: list[_Resolved] = []
    for i, (code, jt, jf, k) in enumerate(prog):
        out.append((code, _resolve(jt, labels, i), _resolve(jf, labels, i), k))
    return out


def _resolve(jump: _Jump, labels: dict[str, int], index: int) -> int:
    """A jump as BPF wants it: the number of instructions to skip after the one at `index`."""
    return labels[jump] - index - 1 if isinstance(jump, str) else jump


def _prctl(libc: ctypes.CDLL, option: int, arg: int, ptr: int | None = None) -> None:
    if libc.prctl(option, ctypes.c_ulong(arg) if ptr is None else arg, ptr, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed: {os.strerror(ctypes.get_errno())}")


def install_filter() -> None:
    """Confine this process with the seccomp filter; raises when the kernel or architecture cannot."""
    machine = platform.machine()
    if machine not in _ARCHES:
        raise OSError(f"no seccomp filter for architecture {machine}")
    ins = _filter_program(machine)
    buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in ins))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Fprog(len(ins), ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    _prctl(libc, _PR_SET_PDEATHSIG, _SIGKILL)
    _prctl(libc, _PR_SET_NO_NEW_PRIVS, 1)
    _prctl(libc, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog))


def set_limits(cfg: dict[str, Any]) -> None:
    cpu = int(cfg["cpuSeconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (cfg["memoryBytes"], cfg["memoryBytes"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["fileSizeBytes"], cfg["fileSizeBytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (cfg["openFiles"], cfg["openFiles"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _run_source(source: str, filename: str, namespace: dict[str, Any]) -> bool:
    """Run `source` in `namespace`; True when it ran to the end (or exited with status 0)."""
    try:
        exec(compile(source, filename, "exec"), namespace)
    except SystemExit as exc:
        return exc.code in (None, 0)
    except BaseException:  # the program's own failure: the tests that need it fail
        return False
    return True


def _test_chunks(tests: str) -> list[tuple[list[ast.stmt], list[ast.stmt]]]:
    """(setup statements before it, the test) pairs: each top-level assert is a test; without any, the whole
    test code is one test."""
    tree = ast.parse(tests)
    if not any(isinstance(node, ast.Assert) for node in tree.body):
        return [([], tree.body)]
    chunks: list[tuple[list[ast.stmt], list[ast.stmt]]] = []
    setup: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.Assert):
            chunks.append((setup, [node]))
            setup = []
        else:
            setup.append(node)
    return chunks


def run_asserts(program: str, tests: str, result_fd: int) -> None:
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    chunks = _test_chunks(tests)  # parsed before the program runs: the program cannot change the count
    if not _run_source(program, "solution.py", namespace):  # a program that crashes passes nothing
        os.write(result_fd, f"0 {len(chunks)}\n".encode())
        return
    passed = 0
    for setup, body in chunks:
        ok = all(_run_source(ast.unparse(ast.Module(body=[n], type_ignores=[])), "tests.py", namespace)
                 for n in setup)
        passed += ok and all(_run_source(ast.unparse(ast.Module(body=[n], type_ignores=[])), "tests.py",
                                         namespace) for n in body)
    os.write(result_fd, f"{passed} {len(chunks)}\n".encode())


def main() -> None:
    cfg = json.loads(sys.argv[1])
    result_fd = cfg.get("resultFd")
    set_limits(cfg)
    install_filter()
    with open(cfg["program"], encoding="utf-8") as f:
        program = f.read()
    if cfg["mode"] == "io":
        sys.argv = ["solution.py"]
        namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        exec(compile(program, "solution.py", "exec"), namespace)
        return
    with open(cfg["tests"], encoding="utf-8") as f:
        tests = f.read()
    run_asserts(program, tests, result_fd)


if __name__ == "__main__":
    main()
