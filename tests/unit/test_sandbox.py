"""The sandbox contains hostile programs and the harness survives them; distillation keeps only passing solutions."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from forgepilot.backends.fake import FakeBackend
from forgepilot.datagen.distill import Distiller, Seed, parse_answer
from forgepilot.datagen.types import Rejections
from forgepilot.prompts import builtin_registry
from forgepilot.sandbox import Limits, Sandbox, isolation, python_program

LIMITS = Limits(wall_s=4, cpu_s=2, memory_mib=256, file_size_mib=1, processes=32)


@pytest.fixture(scope="module", params=["fork-server", "exec"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """Every hostile program is contained both on the fork server and in a fresh process per program."""
    box = Sandbox(workers=2, fork_server=request.param == "fork-server")
    if request.param == "fork-server" and not box.fork_server:
        pytest.skip("no namespaces here: the fork server is not used")
    yield box
    box.close()


def run(sandbox: Sandbox, code: str, limits: Limits = LIMITS):  # type: ignore[no-untyped-def]
    return sandbox.run(python_program(code, limits=limits))


def test_passing_and_failing_programs(sandbox: Sandbox) -> None:
    ok = run(sandbox, "print('hello')")
    assert (ok.status, ok.stdout_tail) == ("passed", "hello\n")
    bad = run(sandbox, "assert 1 + 1 == 3, 'arithmetic'")
    assert bad.status == "failed" and "AssertionError: arithmetic" in bad.stderr_tail


def test_infinite_loop_hits_the_cpu_limit(sandbox: Sandbox) -> None:
    # Wall time far above CPU time: on a loaded machine the CPU limit must still be the one that stops it.
    out = run(
        sandbox, "while True:\n    pass\n", Limits(wall_s=60, cpu_s=2, memory_mib=256, file_size_mib=1, processes=32)
    )
    assert (out.status, out.reason) == ("timeout", "cpu_time")


def test_sleeping_program_hits_the_wall_limit(sandbox: Sandbox) -> None:
    out = run(sandbox, "import time\ntime.sleep(60)\n", Limits(wall_s=1, cpu_s=2))
    assert (out.status, out.reason) == ("timeout", "wall_time") and out.wall_s < 5


def test_memory_bomb_is_stopped(sandbox: Sandbox) -> None:
    out = run(sandbox, "x = bytearray(1 << 31)\n")
    assert (out.status, out.reason) == ("crashed", "memory")


def test_output_flood_is_capped(sandbox: Sandbox) -> None:
    out = run(sandbox, "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n")
    assert (out.status, out.reason) == ("crashed", "output_limit")
    assert len(out.stdout_tail) <= 4000


def test_fork_bomb_is_contained_and_the_next_run_works(sandbox: Sandbox) -> None:
    out = run(
        sandbox,
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        Limits(wall_s=2),
    )
    assert out.status == "timeout"
    assert run(sandbox, "print(1)").status == "passed"


@pytest.mark.skipif(not isolation().namespaces, reason="no user/network namespaces on this machine")
def test_network_is_cut(sandbox: Sandbox) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        out = run(sandbox, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n")
    finally:
        server.close()
    assert out.status == "failed" and ("ConnectionRefused" in out.stderr_tail or "unreachable" in out.stderr_tail)


def test_writes_outside_its_directory_fail_and_temp_is_private(sandbox: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "owned.txt"
    out = run(sandbox, f"open({str(target)!r}, 'w').write('x')\n")
    assert out.status == "failed" and not target.exists()
    wrote = run(sandbox, "import os, tempfile\nopen('here.txt', 'w').write('ok')\nprint(tempfile.gettempdir())\n")
    assert wrote.status == "passed"


def test_killing_the_parent_does_not_reach_the_harness(sandbox: Sandbox) -> None:
    code = (
        "import os, signal\nfor pid in (os.getppid(), 0, -1):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError:\n        pass\n"
    )
    out = run(sandbox, code)
    assert out.status in ("passed", "crashed", "failed")
    assert run(sandbox, "print('still here')").stdout_tail == "still here\n"


def test_nothing_survives_into_the_next_program(sandbox: Sandbox) -> None:
    leave = (
        "import os, subprocess, sys\n"
        "open('/tmp/left-behind', 'w').write('x')\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'], start_new_session=True)\n"
        "print(os.getpid())\n"
    )
    assert run(sandbox, leave).status == "passed"
    look = (
        "import os\n"
        "print(os.path.exists('/tmp/left-behind'))\n"
        "found = 0\n"
        "for p in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        found += 'sleep(30)' in open(f'/proc/{p}/cmdline').read()\n"
        "    except OSError:\n"
        "        pass\n"
        "print(found)\n"
    )
    outcomes = [run(sandbox, look) for _ in range(2)]  # both workers
    if sandbox.iso.namespaces:
        assert all(o.stdout_tail == "False\n0\n" for o in outcomes), outcomes


def test_parallel_workers_return_outcomes_in_order(sandbox: Sandbox) -> None:
    programs = [python_program(f"assert {i} % 2 == 0", key=str(i), limits=LIMITS) for i in range(6)]
    outcomes = list(sandbox.run_many(programs))
    assert [o.key for o in outcomes] == [str(i) for i in range(6)]
    assert [o.passed for o in outcomes] == [True, False, True, False, True, False]


ANSWER = """### Problem
Write `double(x)` that returns twice its argument.

### Solution
```python
def double(x):
    return 2 * x
```

### Tests
```python
def test_double():
    assert double(3) == 6
```
"""


def test_distillation_keeps_only_solutions_that_pass(sandbox: Sandbox) -> None:
    assert parse_answer(ANSWER) == (
        "Write `double(x)` that returns twice its argument.",
        "def double(x):\n    return 2 * x",
        "def test_double():\n    assert double(3) == 6",
    )
    wrong = ANSWER.replace("return 2 * x", "return x + 1")
    teacher = FakeBackend("fake:teacher", replies=[ANSWER, wrong, "no sections at all"])
    seeds = [Seed("r", "a.py", "python", i, f"def f{i}(x):\n    return x") for i in range(3)]
    rejected = Rejections()
    kept = asyncio.run(Distiller(teacher, builtin_registry(), sandbox).run(seeds, rejected))
    assert [k.completion for k in kept] == ["```python\ndef double(x):\n    return 2 * x\n```"]
    assert rejected.by_reason == {"distill:failed": 1, "distill:unparsable": 1}
    assert "Gain inspiration" in teacher.prompts[0]


# -- the hostile set: the jail holds, and the harness and the next program are untouched --------------------------
JAILED = pytest.mark.skipif(not isolation().namespaces, reason="no namespaces: the sandbox refuses to run at all")


@JAILED
def test_every_mount_but_the_private_temp_is_read_only(sandbox: Sandbox) -> None:
    # Per mount point, the last entry is the one reachable (a mount stacked on another hides it).
    code = (
        "top = {}\n"
        "for line in open('/proc/self/mountinfo'):\n"
        "    fields = line.split()\n"
        "    top[fields[4]] = fields[5]\n"
        "private = ('/tmp', '/tmp/work', '/var/tmp', '/dev/shm', '/proc')\n"
        "print(sorted(m for m, opts in top.items() if not opts.startswith('ro') and m not in private))\n"
    )
    out = run(sandbox, code)
    assert (out.status, out.stdout_tail) == ("passed", "[]\n"), out.stderr_tail


@pytest.fixture
def world_writable_dir() -> Iterator[Path]:
    """A directory anyone may write to, outside /tmp, /var/tmp and /dev/shm (which the jail replaces anyway)."""
    import os
    import secrets
    import shutil

    base = Path("/var/lib") if os.geteuid() == 0 else Path.home() / ".cache"
    path = base / f"forgepilot-sandbox-probe-{secrets.token_hex(4)}"
    path.mkdir(parents=True)
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@JAILED
def test_a_world_writable_directory_outside_tmp_stays_untouched(sandbox: Sandbox, world_writable_dir: Path) -> None:
    target = world_writable_dir / "owned.txt"
    out = run(sandbox, f"open({str(target)!r}, 'w').write('x')\n")
    assert out.status == "failed" and "Read-only file system" in out.stderr_tail, out.stderr_tail
    assert not target.exists()


@JAILED
def test_temporary_file_systems_are_size_limited(sandbox: Sandbox) -> None:
    # Files of 0.75 MiB each (under the 1 MiB file-size limit) until the file system is full: /tmp holds the
    # run's file-size limit (a fork-server worker's /tmp 64 MiB, emptied after each program), /dev/shm 1 MiB.
    code = (
        "import errno\n"
        "for d in ('/tmp', '/dev/shm'):\n"
        "    try:\n"
        "        for i in range(200):\n"
        "            open(f'{d}/fill{i}', 'wb').write(b'x' * (3 << 18))\n"
        "        print(d, 'unbounded')\n"
        "    except OSError as exc:\n"
        "        print(d, errno.errorcode[exc.errno])\n"
    )
    out = run(sandbox, code)
    assert out.stdout_tail == "/tmp ENOSPC\n/dev/shm ENOSPC\n", out.stderr_tail


def test_thread_bomb_is_contained_and_the_next_run_works(sandbox: Sandbox) -> None:
    code = (
        "import threading, time\n"
        "n = 0\n"
        "while True:\n"
        "    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "    n += 1\n"
    )
    out = run(sandbox, code, Limits(wall_s=3, cpu_s=2, memory_mib=512, processes=32))
    assert out.status in ("failed", "crashed", "timeout")
    assert run(sandbox, "print('after')").stdout_tail == "after\n"


def test_the_parents_environment_is_out_of_reach(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORGEPILOT_PROBE_SECRET", "hunter2-c0ffee")
    code = (
        "import os\n"
        "print(os.environ.get('FORGEPILOT_PROBE_SECRET'))\n"
        "seen = 0\n"
        "for p in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        seen += b'hunter2-c0ffee' in open(f'/proc/{p}/environ', 'rb').read()\n"
        "    except OSError:\n"
        "        pass\n"
        "print(seen)\n"
        "cmdlines = []\n"
        "for p in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        cmdlines.append(open(f'/proc/{p}/cmdline', 'rb').read())\n"
        "    except OSError:\n"
        "        pass\n"
        "print(any(b'pytest' in c for c in cmdlines))\n"
    )
    out = run(sandbox, code)
    if sandbox.iso.namespaces:  # its own /proc: the harness's processes are not even listed
        assert (out.status, out.stdout_tail) == ("passed", "None\n0\nFalse\n"), out.stderr_tail
    else:
        assert out.stdout_tail.startswith("None\n0\n"), out.stderr_tail


def test_signals_to_everything_reach_nothing_outside(sandbox: Sandbox) -> None:
    code = (
        "import os, signal\n"
        "for sig in (signal.SIGSTOP, signal.SIGTERM, signal.SIGINT, signal.SIGKILL):\n"
        "    for pid in (-1, 1, os.getppid()):\n"
        "        try:\n"
        "            os.kill(pid, sig)\n"
        "        except OSError:\n"
        "            pass\n"
    )
    run(sandbox, code)
    assert run(sandbox, "print('alive')").stdout_tail == "alive\n"


@JAILED
def test_a_double_forked_daemon_dies_with_its_run(sandbox: Sandbox) -> None:
    daemon = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        os.closerange(0, 64)\n"
        "        while True:\n"
        "            time.sleep(0.05)\n"
        "    os._exit(0)\n"
        "print('started')\n"
    )
    assert run(sandbox, daemon).stdout_tail == "started\n"
    look = (
        "import os\n"
        "others = [p for p in filter(str.isdigit, os.listdir('/proc')) if int(p) not in (1, os.getpid())]\n"
        "print([open(f'/proc/{p}/cmdline').read() for p in others])\n"
    )
    outcomes = [run(sandbox, look) for _ in range(2)]  # both workers
    # Only this program and the jail's own shell or zygote (PID 1) are left.
    assert all("time.sleep" not in o.stdout_tail for o in outcomes), outcomes


def test_without_namespaces_the_sandbox_refuses_unless_limits_only_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from forgepilot.sandbox import SandboxUnavailable
    from forgepilot.sandbox import runner as runner_mod

    bare = runner_mod.Isolation(
        namespaces=False, drop_to_nobody=False, interpreter=isolation().interpreter, detail="unshare failed: EPERM"
    )
    monkeypatch.setattr(runner_mod, "isolation", lambda: bare)
    with pytest.raises(SandboxUnavailable) as info:
        Sandbox(workers=1)
    assert "unprivileged_userns_clone" in info.value.one_line() and "limits_only" in info.value.one_line()
    box = Sandbox(workers=1, limits_only=True)
    try:
        assert box.mode == "limits-only"
        assert box.run(python_program("print(6 * 7)", limits=LIMITS)).stdout_tail == "42\n"
    finally:
        box.close()
