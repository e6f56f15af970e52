"""A fork server per sandbox worker: Python programs start in milliseconds instead of a fresh interpreter each.

Starting Python and importing ``typing`` costs ~40 ms; a HumanEval check runs in ~2 ms. So each worker keeps one
jailed interpreter (the *zygote*) with the common standard-library modules imported, and forks it once per
program. The zygote runs inside the same jail as any sandboxed program (network, PID and mount namespaces, the
worker's own user, private temp filesystems) and is PID 1 of its PID namespace, which gives three guarantees:

- signals from the programs cannot kill or stop it (the kernel drops signals to a namespace's init from inside
  the namespace unless init handles them, and SIGKILL/SIGSTOP cannot be handled);
- after each program it kills every other process of the namespace (``kill(-1, SIGKILL)`` until none is left),
  so nothing a program started survives into the next one;
- the forked child closes every inherited descriptor (the zygote's pipes to the harness included) before the
  program runs, sets its resource limits, scrubs its environment and runs the program as ``__main__``.

The zygote speaks JSON lines on its stdin/stdout. It is used only where namespaces are available; elsewhere each
program gets its own interpreter (``runner.Sandbox._run_exec``).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

#: The zygote's program (run with ``python -I -c``, its argument is the scrubbed environment as JSON).
ZYGOTE = r"""
import json, os, resource, runpy, select, shutil, signal, sys, time, traceback
for _m in ("typing", "re", "math", "collections", "itertools", "functools", "heapq", "bisect", "string",
           "hashlib", "random", "json", "decimal", "fractions", "statistics", "datetime", "copy", "operator",
           "unittest", "dataclasses", "enum", "textwrap"):
    try:
        __import__(_m)
    except Exception:
        pass
ENV = json.loads(sys.argv[1])
# As PID 1 only signals we handle reach us: handle none (Python's own SIGINT handler would let a program's
# kill(1, SIGINT) through).
signal.signal(signal.SIGINT, signal.SIG_IGN)

def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return

def kill_all():
    for _ in range(1000):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            break
        time.sleep(0.0005)
        reap()
    reap()

def wipe():
    # What a program left in the shared temp filesystems goes before the next program runs.
    for top in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            names = os.listdir(top)
        except OSError:
            continue
        for name in names:
            if top == "/tmp" and name == "work":
                continue
            path = os.path.join(top, name)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
            except OSError:
                pass

def child(req):
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setpgid(0, 0)
        os.chdir(req["dir"])
        fds = [os.open(req["stdin"], os.O_RDONLY),
               os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
               os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)]
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, 1 << 16)
        lim = req["limits"]
        mib = 1 << 20
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CPU, (lim["cpu_s"], lim["cpu_s"] + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_size_mib"] * mib,) * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lim["open_files"],) * 2)
        resource.setrlimit(resource.RLIMIT_NPROC, (lim["processes"],) * 2)
        os.environ.clear()
        os.environ.update(ENV)
        sys.argv = [req["main"]]
        sys.path[0] = os.getcwd()
        resource.setrlimit(resource.RLIMIT_AS, (lim["memory_mib"] * mib,) * 2)
        runpy.run_path(req["main"], run_name="__main__")
        code = 0
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code & 0xFF
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        try:
            traceback.print_exc()
        except BaseException:
            pass
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    os._exit(code)

def run(req):
    pid = os.fork()
    if pid == 0:
        child(req)
    pidfd = os.pidfd_open(pid)
    deadline = time.monotonic() + req["limits"]["wall_s"]
    timed_out = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        if select.select([pidfd], [], [], left)[0]:
            break
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    os.close(pidfd)
    kill_all()
    wipe()
    return {"status": status, "cpu": usage.ru_utime + usage.ru_stime, "timed_out": timed_out}

buf = b""
while True:
    while b"\n" not in buf:
        chunk = os.read(0, 65536)
        if not chunk:
            kill_all()
            os._exit(0)
        buf += chunk
    line, _, buf = buf.partition(b"\n")
    reply = run(json.loads(line))
    os.write(1, (json.dumps(reply) + "\n").encode())
"""


class ZygoteDied(RuntimeError):
    pass


class ForkServer:
    """One worker's zygote: started on first use, restarted if it ever dies or stops answering."""

    def __init__(self, command: list[str], root: Path, env: dict[str, str], uid: int | None) -> None:
        self.command = command
        self.root = root
        self.env = env
        self.uid = uid
        self.proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._jobs = 0

    def _start(self) -> subprocess.Popen[bytes]:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc
        self.stop()
        self.root.mkdir(parents=True, exist_ok=True)
        if self.uid is not None:
            os.chown(self.root, self.uid, self.uid)
        self.proc = subprocess.Popen(
            self.command,
            cwd=self.root,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            process_group=0,
            close_fds=True,
        )
        self._buf = b""
        return self.proc

    def stop(self) -> None:
        proc = self.proc
        self.proc = None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()

    def job_dir(self) -> tuple[str, Path]:
        self._jobs += 1
        name = f"job-{self._jobs}"
        return name, self.root / name

    def run(self, name: str, main: str, limits: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Run ``root/name/main`` in a forked child; raises ``ZygoteDied`` when the zygote fails to answer."""
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        base = f"/tmp/work/{name}"  # where the jail sees this worker's root
        request = {
            "dir": base,
            "main": main,
            "stdin": f"{base}.in",
            "stdout": f"{base}.out",
            "stderr": f"{base}.err",
            "limits": limits,
        }
        try:
            proc.stdin.write((json.dumps(request) + "\n").encode())
            proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            self.stop()
            raise ZygoteDied(f"the sandbox worker is gone ({exc})") from None
        deadline = time.monotonic() + timeout_s
        fd = proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.stop()
                raise ZygoteDied("the sandbox worker stopped answering")
            chunk = os.read(fd, 65536)
            if not chunk:
                self.stop()
                raise ZygoteDied("the sandbox worker exited")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def cleanup(self) -> None:
        """Empty the worker's directory: the job's files and anything the program wrote beside them."""
        for entry in self.root.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
