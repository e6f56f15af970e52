"""Run untrusted code (model output, distilled solutions, evaluation samples) and survive whatever it does.

Each program runs in a fresh private directory under a chain of small util-linux programs, not a Python
``preexec_fn`` (which is unsafe beside threads, and the harness runs workers in threads):

    prlimit (CPU s, address space, file size, open files, processes)
      -> unshare --net --pid --mount --fork --kill-child   (no network: an empty network namespace; its own PID
                                                    namespace, so every process it starts dies with it)
      -> sh (the jail): fresh tmpfs on /tmp, /var/tmp and /dev/shm, the program's directory bound at /tmp/work
      -> setpriv --reuid UID --regid UID --clear-groups   (when we are root: root ignores RLIMIT_NPROC and may
                                                    write anywhere; UID is a user of its own per worker slot, so
                                                    one run's fork bomb cannot starve another run's processes)
      -> sh -c '"$@"; exit $?'   (PID 1 of the namespace: the program's exit status, including death by signal as
                                  128+N, comes back through unshare unchanged)
      -> the program, with a scrubbed environment (PATH; HOME is /tmp/work, TMPDIR /tmp)

The process group of the chain is killed at the end in every case, and the PID namespace takes everything the
program started with it. Where user namespaces are not allowed, the program still gets the limits, the private
directory, the scrubbed environment and the group kill, and ``isolation()`` says that the network is not cut
(``forgepilot doctor`` prints it). stdout and stderr go to files capped by the file-size limit, so a program that
floods its output is stopped by the kernel (SIGXFSZ), never buffered by us.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from forgepilot.errors import ConfigError
from forgepilot.sandbox.forkserver import ZYGOTE, ForkServer, ZygoteDied

Status = Literal["passed", "failed", "timeout", "crashed"]
#: Sandboxed programs run as SLOT_UID_BASE + worker slot when we are root (users no account or file owns).
SLOT_UID_BASE = 62000
_TAIL_BYTES = 4000
_MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one program may use. Memory is address space (RLIMIT_AS), which is what a runaway allocation hits."""

    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mib: int = 1024
    file_size_mib: int = 16
    open_files: int = 64
    #: Processes of the sandbox user (counted by the kernel across all running sandboxes when we drop to nobody).
    processes: int = 64


@dataclass(frozen=True)
class Program:
    """Files to write into the private directory, and the command to run there (``{python}`` is replaced)."""

    argv: Sequence[str]
    files: Mapping[str, str] = field(default_factory=dict)
    stdin: str = ""
    limits: Limits = field(default_factory=Limits)
    #: A caller's label, echoed in the outcome (a problem id, an instance id).
    key: str = ""
    #: Set for a Python program whose whole argv is ``{python} -I FILE``: it may run on the worker's fork server.
    python_main: str | None = None


@dataclass
class Outcome:
    key: str
    status: Status
    #: wall_time, cpu_time, memory, output_limit, signal:NAME, exit:N, or "" when passed.
    reason: str
    returncode: int
    wall_s: float
    cpu_s: float
    stdout_tail: str
    stderr_tail: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def record(self) -> dict[str, object]:
        return {
            "key": self.key,
            "status": self.status,
            "reason": self.reason,
            "returncode": self.returncode,
            "wall_s": round(self.wall_s, 4),
            "cpu_s": round(self.cpu_s, 4),
            "stderr_tail": self.stderr_tail,
        }


@dataclass(frozen=True)
class Isolation:
    """Which protections this machine gives a sandboxed program (``forgepilot doctor`` prints this)."""

    namespaces: bool  # network and PID namespaces (no network; everything dies with the run)
    drop_to_nobody: bool  # running as root: the program runs as nobody instead
    interpreter: str | None  # a Python the sandbox user can execute
    detail: str

    def lines(self) -> list[str]:
        out = [
            "network: cut (empty network namespace)"
            if self.namespaces
            else "network: NOT cut (user namespaces are not allowed here; the program can reach the network)",
            "processes: own PID namespace, killed with the run" if self.namespaces else "processes: process group",
            "file system: read-only but for a private, size-limited /tmp"
            if self.namespaces
            else "file system: NOT sealed (the program may write wherever its user may)",
            f"user: a user of its own per worker (uid {SLOT_UID_BASE}+, dropped from root)"
            if self.drop_to_nobody
            else f"user: uid {os.getuid()}",
            f"python: {self.interpreter or 'none the sandbox user can run'}",
        ]
        return out


def _world_executable(path: Path) -> bool:
    """True when a user who owns nothing (nobody) can execute ``path``: o+x on it and o+x on every parent."""
    try:
        real = path.resolve()
        if not real.is_file() or not real.stat().st_mode & stat.S_IXOTH:
            return False
        return all(p.stat().st_mode & stat.S_IXOTH for p in real.parents)
    except OSError:
        return False


def _find_interpreter(drop: bool) -> str | None:
    candidates = [sys.executable, getattr(sys, "_base_executable", ""), "/usr/bin/python3", "/usr/local/bin/python3"]
    for c in candidates:
        if c and Path(c).is_file() and (not drop or _world_executable(Path(c))):
            return str(Path(c).resolve()) if drop else c
    return shutil.which("python3")


# Runs as root of the new mount namespace, in the program's directory: private temp filesystems with a size
# limit, the directory bound at /tmp/work (through /proc/self/cwd: its old path is hidden by the new /tmp), a
# /proc of the new PID namespace (the harness's processes, and their environments, are not in it), then every
# other mount read-only (keeping its own nosuid/nodev/noexec flags, which a user namespace may have locked), then
# the user drop. A mount that cannot be made read-only stops the jail (exit 97): the program never runs.
_JAIL = r"""set -e
mount --make-rprivate /
mount -t tmpfs -o size="$1"m,mode=1777 tmpfs /tmp
mkdir /tmp/work
mount --no-canonicalize --bind /proc/self/cwd /tmp/work
for d in /var/tmp /dev/shm; do if [ -d "$d" ]; then mount -t tmpfs -o size=1m,mode=1777 tmpfs "$d"; fi; done
mount -t proc -o nosuid,nodev,noexec proc /proc
while read -r _ _ _ _ mnt opts _; do
  case "$mnt" in /tmp|/tmp/*|/var/tmp|/var/tmp/*|/dev/shm|/dev/shm/*|/proc|/proc/*) continue ;; esac
  case "$opts" in ro|ro,*) continue ;; esac
  case "$mnt" in *\\*) mnt=$(printf '%b' "$(printf '%s' "$mnt" | sed 's/\\\([0-7][0-7][0-7]\)/\\0\1/g')") ;; esac
  mount -o "remount,bind,ro${opts#rw}" "$mnt" || { echo "sandbox: cannot make $mnt read-only" >&2; exit 97; }
done < /proc/self/mountinfo
cd /tmp/work
set +e
uid="$2"
shift 2
if [ -n "$uid" ]; then
  exec setpriv --reuid="$uid" --regid="$uid" --clear-groups -- /bin/sh -c '"$@"; exit $?' sh "$@"
fi
"$@"; exit $?
"""
#: The jail's exit status when it could not seal the file system.
JAIL_FAILED = 97


def _namespace_prefix() -> list[str]:
    cmd = ["unshare", "--net", "--pid", "--mount", "--fork", "--kill-child"]
    if os.geteuid() != 0:
        cmd.append("--map-root-user")
    return [*cmd, "--", "/bin/sh", "-c", _JAIL, "jail"]


@functools.cache
def isolation() -> Isolation:
    drop = os.geteuid() == 0 and shutil.which("setpriv") is not None
    interpreter = _find_interpreter(drop)
    unshare = shutil.which("unshare")
    ok = False
    detail = "unshare not found (install util-linux)"
    if unshare and shutil.which("prlimit"):
        with tempfile.TemporaryDirectory(prefix="fp-sandbox-probe-") as tmp:
            probe = subprocess.run(
                [*_namespace_prefix(), "1", "", "true"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        ok = probe.returncode == 0
        detail = "namespaces available" if ok else f"unshare failed: {probe.stderr.strip()[:200]}"
    return Isolation(namespaces=ok, drop_to_nobody=drop, interpreter=interpreter, detail=detail)


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - _TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class SandboxUnavailable(ConfigError):
    """This machine cannot jail a program (no namespaces) and limits-only mode was not allowed."""


class Sandbox:
    """Runs programs one at a time (``run``) or on parallel workers (``run_many``), each in its own jail.

    Python programs run on a fork server per worker where namespaces are available (``forkserver``), every other
    program in a fresh process chain. Where namespaces are not available the sandbox refuses to run anything,
    unless ``limits_only`` accepts resource limits alone (``mode`` then says so, and so does every report).
    """

    def __init__(
        self,
        workers: int | None = None,
        base_dir: Path | None = None,
        *,
        fork_server: bool = True,
        limits_only: bool = False,
    ) -> None:
        self.workers = max(1, workers or (os.cpu_count() or 1))
        self.base_dir = base_dir
        self.iso = isolation()
        if not self.iso.namespaces and not limits_only:
            raise SandboxUnavailable(
                f"cannot sandbox untrusted code here: {self.iso.detail} (without namespaces a program could reach "
                "the network and write wherever its user may)",
                hint="allow user namespaces (sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces>0)"
                " or run as root with util-linux installed; to accept resource limits alone, set "
                "[sandbox] limits_only = true",
            )
        #: "namespaces" (jailed: no network, own processes, read-only file system) or "limits-only".
        self.mode = "namespaces" if self.iso.namespaces else "limits-only"
        self._slots: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(self.workers):
            self._slots.put(SLOT_UID_BASE + i)
        if self.iso.interpreter is None:
            raise ConfigError(
                "no Python interpreter the sandbox user can execute",
                hint="install python3 system-wide (/usr/bin/python3) or run as a non-root user",
            )
        self.fork_server = fork_server and self.iso.namespaces
        self._servers: dict[int, ForkServer] = {}
        self._servers_dir: Path | None = None
        self._closed = False

    def close(self) -> None:
        """Stop the fork servers (they also stop by themselves when this process exits)."""
        self._closed = True
        for server in self._servers.values():
            server.stop()
        self._servers.clear()
        if self._servers_dir is not None:
            shutil.rmtree(self._servers_dir, ignore_errors=True)
            self._servers_dir = None

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()

    @property
    def python(self) -> str:
        assert self.iso.interpreter is not None
        return self.iso.interpreter

    def _command(self, program: Program, uid: int | None) -> list[str]:
        lim = program.limits
        argv = [self.python if a == "{python}" else a for a in program.argv]
        cmd = [
            "prlimit",
            f"--cpu={lim.cpu_s}",
            f"--as={lim.memory_mib * _MIB}",
            f"--fsize={lim.file_size_mib * _MIB}",
            f"--nofile={lim.open_files}",
            f"--nproc={lim.processes}",
            "--core=0",
            "--",
        ]
        if self.iso.namespaces:
            return [*cmd, *_namespace_prefix(), str(lim.file_size_mib), str(uid or ""), *argv]
        if uid is not None:
            cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
        return [*cmd, "/bin/sh", "-c", '"$@"; exit $?', "sh", *argv]

    def _environment(self, workdir: Path) -> dict[str, str]:
        home = "/tmp/work" if self.iso.namespaces else str(workdir)
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": home,
            "TMPDIR": "/tmp" if self.iso.namespaces else home,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            "PYTHONIOENCODING": "utf-8",
        }

    def run(self, program: Program) -> Outcome:
        slot = self._slots.get()
        uid = slot if self.iso.drop_to_nobody else None
        try:
            if self.fork_server and program.python_main is not None:
                return self._run_forked(program, slot, uid)
            return self._run_exec(program, uid)
        finally:
            self._slots.put(slot)

    def _server(self, slot: int, uid: int | None) -> ForkServer:
        server = self._servers.get(slot)
        if server is None:
            if self._servers_dir is None:
                self._servers_dir = Path(tempfile.mkdtemp(prefix="fp-sandbox-workers-", dir=self.base_dir))
                os.chmod(self._servers_dir, 0o755)
            root = self._servers_dir / str(slot)
            # The zygote's own size limit is the tmpfs; the program's limits are set in each forked child.
            # "exec" makes the zygote PID 1 of the namespace (see ``forkserver``).
            command = [*_namespace_prefix(), "64", str(uid or ""), "exec", self.python, "-I", "-c", ZYGOTE]
            env = self._environment(root)
            command.append(json.dumps(env))
            server = self._servers[slot] = ForkServer(command, root, env, uid)
        return server

    def _run_forked(self, program: Program, slot: int, uid: int | None) -> Outcome:
        server = self._server(slot, uid)
        name, workdir = server.job_dir()
        lim = program.limits
        try:
            server._start()
            self._write_files(program, workdir, uid)
            stdin = server.root / f"{name}.in"
            stdin.write_text(program.stdin, encoding="utf-8")
            if uid is not None:
                os.chown(stdin, uid, uid)
            started = time.perf_counter()
            try:
                reply = server.run(name, str(program.python_main), asdict(lim), timeout_s=lim.wall_s + 10)
            except ZygoteDied as exc:
                wall = time.perf_counter() - started
                return Outcome(program.key, "crashed", "sandbox", -1, wall, 0.0, "", str(exc))
            wall = time.perf_counter() - started
            rc = os.waitstatus_to_exitcode(reply["status"])
            out_path, err_path = server.root / f"{name}.out", server.root / f"{name}.err"
            for path in (out_path, err_path):
                path.touch(exist_ok=True)
            stderr = _tail(err_path)
            status, reason = _classify(rc, reply["timed_out"], reply["cpu"], lim, stderr, out_path, err_path)
            return Outcome(program.key, status, reason, rc, wall, reply["cpu"], _tail(out_path), stderr)
        finally:
            server.cleanup()

    def _write_files(self, program: Program, workdir: Path, uid: int | None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        for name, text in program.files.items():
            target = (workdir / name).resolve()
            if workdir.resolve() not in target.parents:
                raise ValueError(f"sandbox file {name!r} points outside its directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        if uid is not None:
            for p in [workdir, *workdir.rglob("*")]:
                os.chown(p, uid, uid)

    def _run_exec(self, program: Program, uid: int | None) -> Outcome:
        workdir = Path(tempfile.mkdtemp(prefix="fp-sandbox-", dir=self.base_dir))
        # The harness's own files (stdout, stderr) live beside the program's directory, not inside it.
        logs = Path(tempfile.mkdtemp(prefix="fp-sandbox-logs-", dir=self.base_dir))
        try:
            return self._run_in(program, workdir, logs, uid)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(logs, ignore_errors=True)

    def _run_in(self, program: Program, workdir: Path, logs: Path, uid: int | None) -> Outcome:
        self._write_files(program, workdir, uid)
        lim = program.limits
        out_path, err_path, in_path = logs / "stdout", logs / "stderr", logs / "stdin"
        in_path.write_text(program.stdin, encoding="utf-8")
        started = time.perf_counter()
        timed_out = False
        with out_path.open("wb") as out, err_path.open("wb") as err, in_path.open("rb") as stdin:
            proc = subprocess.Popen(
                self._command(program, uid),
                cwd=workdir,
                env=self._environment(workdir),
                stdin=stdin,
                stdout=out,
                stderr=err,
                process_group=0,
                close_fds=True,
            )
            try:
                _, status, usage = _wait4(proc.pid, lim.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc.pid)
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                _kill_group(proc.pid)  # anything left in the group (without namespaces, a forked child)
            proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        cpu = usage.ru_utime + usage.ru_stime
        rc = proc.returncode
        stderr = _tail(err_path)
        status_, reason = _classify(rc, timed_out, cpu, lim, stderr, out_path, err_path)
        return Outcome(program.key, status_, reason, rc, wall, cpu, _tail(out_path), stderr)

    def run_many(
        self, programs: Iterable[Program], *, on_done: Callable[[Outcome], None] | None = None
    ) -> Iterator[Outcome]:
        """Outcomes in the order of ``programs``, run on ``workers`` threads (each waits on its own process)."""
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sandbox") as pool:
            futures = [pool.submit(self.run, p) for p in programs]
            for f in futures:
                outcome = f.result()
                if on_done is not None:
                    on_done(outcome)
                yield outcome


def _wait4(pid: int, timeout: float) -> tuple[int, int, Any]:
    """``os.wait4`` with a wall-clock limit (polling: a blocking wait4 cannot time out)."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        got, status, usage = os.wait4(pid, os.WNOHANG)
        if got == pid:
            return got, status, usage
        now = time.monotonic()
        if now >= deadline:
            raise subprocess.TimeoutExpired(str(pid), timeout)
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, 0.02)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _classify(
    rc: int, timed_out: bool, cpu: float, lim: Limits, stderr: str, out_path: Path, err_path: Path
) -> tuple[Status, str]:
    if timed_out:
        return "timeout", "wall_time"
    if rc == 0:
        return "passed", ""
    signo = -rc if rc < 0 else rc - 128 if rc > 128 else 0
    cap = lim.file_size_mib * _MIB
    if signo == signal.SIGXFSZ or any(p.stat().st_size >= cap for p in (out_path, err_path)):
        return "crashed", "output_limit"
    if signo in (signal.SIGXCPU, signal.SIGKILL) and cpu >= lim.cpu_s - 0.05:
        return "timeout", "cpu_time"
    if "MemoryError" in stderr[-400:] or "Cannot allocate memory" in stderr:
        return "crashed", "memory"
    if signo:
        try:
            name = signal.Signals(signo).name
        except ValueError:
            name = str(signo)
        return "crashed", f"signal:{name}"
    return "failed", f"exit:{rc}"
