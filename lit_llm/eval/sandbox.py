"""Run model-written (untrusted) Python programs, confined as far as an unprivileged Linux process allows.

    passed, detail = run_untrusted(program, timeout=3.0)

Each program runs in a fresh interpreter (`python -I`), in its own process session (process
group), in a fresh temporary working directory that is deleted afterwards, with:
- resource limits: CPU seconds, address space (memory), size of any file written, open files;
- a seccomp filter (x86-64 Linux, where the kernel allows it): fork, vfork, clone without
  CLONE_THREAD, clone3, execve, execveat, kill, unlink(at), rmdir, rename(at/at2) fail with EPERM;
- audit hooks (PEP 578): process creation, signals to other processes, sockets, ctypes, deleting
  or renaming files, and opening files for writing outside its directory are refused;
- the whole process group killed at the deadline, whatever the program left running.
Not isolated: reading files the user can read, CPU and memory within the limits, and (without
seccomp, e.g. on another architecture) what a program reaches through an interpreter escape; the
audit hooks are no security boundary on their own. See docs/security.md.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

MEMORY_BYTES = 1 << 30  # address space of a program
FILE_BYTES = 16 << 20  # largest file a program may write
OPEN_FILES = 64

# Executed in the child interpreter before the program (no imports of the kit there).
_CHILD = r"""
import os, struct, sys

def seccomp():
    try:
        import ctypes, platform
        if platform.machine() != "x86_64":
            return "not x86-64"
        libc = ctypes.CDLL(None, use_errno=True)
        def ins(code, jt, jf, k):
            return struct.pack("HBBI", code, jt, jf, k)
        ALLOW, EPERM, ENOSYS = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
        LD, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
        blocked = [57, 58, 59, 322, 62, 87, 263, 84, 82, 264, 316]  # fork vfork execve execveat kill unlink unlinkat rmdir rename renameat renameat2
        prog = [ins(LD, 0, 0, 4), ins(JEQ, 1, 0, 0xC000003E), ins(RET, 0, 0, ALLOW), ins(LD, 0, 0, 0)]
        prog += [ins(JEQ, 0, 1, 435), ins(RET, 0, 0, ENOSYS)]  # clone3: glibc falls back to clone
        for nr in blocked:
            prog += [ins(JEQ, 0, 1, nr), ins(RET, 0, 0, EPERM)]
        prog += [ins(JEQ, 0, 3, 56), ins(LD, 0, 0, 16), ins(JSET, 1, 0, 0x10000), ins(RET, 0, 0, EPERM)]  # clone: threads only
        prog += [ins(RET, 0, 0, ALLOW)]
        code = b"".join(prog)
        buf = ctypes.create_string_buffer(code)
        class Fprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
        fprog = Fprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            return "no_new_privs refused"
        if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
            return "seccomp refused (errno %d)" % ctypes.get_errno()
        return "on"
    except Exception as err:
        return "unavailable (%s)" % type(err).__name__

state = seccomp()
for name in [m for m in sys.modules if m.startswith(("ctypes", "_ctypes"))]:
    del sys.modules[name]  # a later import raises an audit event, refused below
home = os.path.realpath(os.getcwd())
REFUSED = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen",
           "os.kill", "os.killpg", "signal.pthread_kill", "socket.", "ctypes.", "os.remove", "os.rmdir",
           "os.rename", "shutil.rmtree", "os.symlink", "os.link", "os.chmod", "os.chown", "os.truncate",
           "os.putenv", "os.unsetenv", "sys.addaudithook")
BAD_IMPORTS = ("ctypes", "_ctypes", "_posixsubprocess", "multiprocessing", "_multiprocessing", "pty")

def hook(event, args):
    if event.startswith(REFUSED):
        raise PermissionError("refused in the sandbox: " + event)
    if event == "import" and args[0].split(".")[0] in BAD_IMPORTS:
        raise PermissionError("refused in the sandbox: import " + args[0])
    if event == "open" and args[0] is not None and not isinstance(args[0], int):
        mode, flags = args[1] or "r", args[2] or 0
        writing = any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if writing and not os.path.realpath(os.fsdecode(args[0])).startswith(home + os.sep):
            raise PermissionError("refused in the sandbox: writing outside its directory")

sys.addaudithook(hook)
print("seccomp: " + state, file=sys.stderr, flush=True)
source = open("program.py", encoding="utf-8").read()
exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
"""


def _limits(cpu_seconds: int, memory_bytes: int) -> None:
    """Resource limits, applied in the child before it starts (runs between fork and exec)."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_BYTES, FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_untrusted(program: str, timeout: float, memory_bytes: int = MEMORY_BYTES) -> tuple[bool, str]:
    """Run `program` confined; (exited with status 0 within `timeout` seconds, a short reason)."""
    with tempfile.TemporaryDirectory(prefix="lit-llm-code-") as work:
        Path(work, "program.py").write_text(program, encoding="utf-8")
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": work,
            "TMPDIR": work,
            "PYTHONHASHSEED": "0",
            "LANG": "C.UTF-8",
        }
        proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _CHILD],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: killed whole at the deadline
            preexec_fn=lambda: _limits(int(timeout) + 1, memory_bytes),
        )
        try:
            _, err = proc.communicate(timeout=timeout)
            reason = "passed" if proc.returncode == 0 else _last_line(err) or f"exit status {proc.returncode}"
        except subprocess.TimeoutExpired:
            reason = "timed out"
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # and whatever it started in its group
            proc.communicate()
        return reason == "passed", reason


def _last_line(err: bytes) -> str:
    lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
