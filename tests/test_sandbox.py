"""The sandbox: a student's code runs in a locked-down child; whatever it does, the grader stays in charge.

Each test hands the sandbox a small piece of student code (the tiny ``toy`` assignment of
``tests/hostile/toy_probe.py``: ``scale(x, c)`` and a free-form ``f(*args)`` whose return value is what it
found out) and checks what the grader sees. The real machine is the oracle: real namespaces, real processes,
real sockets, real files; nothing is mocked.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import pytest
import torch
from helpers import processes_with

from grader.sandbox import ForkServer, IsolationWarning, Limits
from grader.submission import StudentError

HERE = Path(__file__).parent
ROOT = HERE.parent
TOY = {"toy": str(HERE / "hostile" / "toy_probe.py")}
SECRET = "GRADER_TEST_SECRET_" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def server():
    os.environ["GRADER_TEST_SECRET"] = SECRET  # must not reach the student's environment
    srv = ForkServer(extra_probes=TOY)
    srv.ready()
    yield srv
    srv.close()
    os.environ.pop("GRADER_TEST_SECRET", None)


@pytest.fixture(scope="module")
def isolated(server):
    if server.mode not in ("namespaces", "userns"):
        pytest.skip(f"this machine allows no namespaces (mode {server.mode})")
    return server


def limits(**kw) -> Limits:
    base = {"run_timeout": 10.0, "load_timeout": 10.0, "notebook_timeout": 60.0}
    base.update(kw)
    return Limits(**base)


def value(server, source: str, *args, **kw):
    """Run ``f(*args)`` of ``source`` in a fresh sandbox; its return value, or the StudentError raised."""
    with server.open("toy", source, limits(**kw)) as sub:
        return sub.run("toy.value", name="f", args=list(args))["value"]


def wait_until_gone(marker: str, timeout: float = 3.0) -> list[int]:
    end = time.monotonic() + timeout
    while (left := processes_with(marker)) and time.monotonic() < end:
        time.sleep(0.05)
    return left


# ---------------------------------------------------------------------------------------------------------
# data, not objects


def test_sandbox_returns_plain_data(server):
    src = "def scale(x, c):\n    return x * c\n"
    with server.open("toy", src, limits()) as sub:
        x = torch.arange(6.0).view(2, 3)
        out = sub.run("toy.scale", x=x, c=2.0)
    assert type(out["out"]) is torch.Tensor
    assert torch.equal(out["out"], x * 2.0)
    assert out["modified"] is False


def test_sandbox_subclass_and_liar_objects_come_back_plain(server):
    src = (
        "import torch\n"
        "class Liar(torch.Tensor):\n"
        "    def __eq__(self, other): return True\n"
        "    @classmethod\n"
        "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
        "        return super().__torch_function__(func, types, args, kwargs or {})\n"
        "def scale(x, c):\n"
        "    return torch.zeros_like(x).as_subclass(Liar)\n"
        "class Always:\n"
        "    def __eq__(self, other): return True\n"
        "def f():\n"
        "    return Always()\n")
    with server.open("toy", src, limits()) as sub:
        out = sub.run("toy.scale", x=torch.ones(3), c=2.0)
        assert type(out["out"]) is torch.Tensor  # the subclass (and its __eq__) stayed in the child
        assert not torch.equal(out["out"], torch.full((3,), 2.0))
        with pytest.raises(StudentError) as err:
            sub.run("toy.value", name="f", args=[])
    assert err.value.kind == "bad_output" and "Always" in err.value.message, err.value


def test_sandbox_input_mutation_stays_in_the_child(server):
    src = "def scale(x, c):\n    y = x * c\n    x.zero_()\n    return y\n"
    x = torch.ones(4)
    with server.open("toy", src, limits()) as sub:
        out = sub.run("toy.scale", x=x, c=2.0)
    assert torch.equal(x, torch.ones(4))  # the grader's tensor is untouched
    assert out["modified"] is True        # and the probe saw the student modify theirs


# ---------------------------------------------------------------------------------------------------------
# isolation


def test_sandbox_process_is_alone_and_unprivileged(isolated):
    src = (
        "import os\n"
        "def f():\n"
        "    return {'pid': os.getpid(), 'uid': os.getuid(), 'euid': os.geteuid(), 'cwd': os.getcwd(),\n"
        "            'env': dict(os.environ), 'sid': os.getsid(0) == os.getpid(),\n"
        "            'procs': sorted(int(p) for p in os.listdir('/proc') if p.isdigit())}\n")
    info = value(isolated, src)
    assert info["pid"] == 1 and info["procs"] == [1]       # its own PID namespace
    assert info["uid"] != 0 and info["euid"] != 0 or isolated.mode == "userns"
    assert info["sid"]                                     # its own session
    assert info["cwd"] == "/scratch"
    assert SECRET not in repr(info["env"]) and "GRADER_TEST_SECRET" not in info["env"]


def test_sandbox_environ_block_holds_no_secret(isolated):
    src = "def f():\n    return open('/proc/self/environ', 'rb').read().decode(errors='replace')\n"
    assert SECRET not in value(isolated, src)


def test_sandbox_reference_is_not_importable(isolated):
    src = (
        "def f():\n"
        "    out = {}\n"
        "    for name in ('tricksref', 'tricksref.lrn', 'grader.suite', 'grader.hidden.lrn',\n"
        "                 'grader.suites'):\n"
        "        try:\n"
        "            __import__(name)\n"
        "            out[name] = 'imported'\n"
        "        except ImportError as exc:\n"
        "            out[name] = str(exc)\n"
        "    return out\n")
    got = value(isolated, src)
    assert all(v != "imported" for v in got.values()), got
    assert "not available to graded code" in got["tricksref"]


def test_sandbox_reference_source_is_not_on_disk(isolated):
    src = (
        "import os\n"
        "def f(project):\n"
        "    hits = []\n"
        "    for top in ('/',):\n"
        "        for d, dirs, files in os.walk(top):\n"
        "            if d.startswith(('/proc', '/sys', '/dev')):\n"
        "                dirs[:] = []\n"
        "                continue\n"
        "            for n in dirs + files:\n"
        "                p = os.path.join(d, n)\n"
        "                if ('tricksref' in n or n == 'lrn.ipynb'\n"
        "                        or (n == 'suite.py' and d.endswith('grader'))\n"
        "                        or (n == 'lrn.py' and ('grader' in d or 'hidden' in d))):\n"
        "                    hits.append(p)\n"
        "    seen = {p: os.path.exists(p) for p in (project + '/tricksref', project + '/grader',\n"
        "            project + '/solutions', project + '/README.md')}\n"
        "    listing = sorted(os.listdir(project)) if os.path.isdir(project) else []\n"
        "    return {'hits': hits, 'seen': seen, 'listing': listing}\n")
    got = value(isolated, src, str(ROOT), run_timeout=60.0)
    assert got["hits"] == [], got["hits"][:10]
    assert not any(got["seen"].values()), got["seen"]
    # the project's folder is at most the mount point of its virtual environment (the libraries)
    assert set(got["listing"]) <= {".venv"}, got["listing"]


def test_sandbox_has_no_network(isolated):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    src = (
        "import socket\n"
        "def f(port):\n"
        "    out = []\n"
        "    for host in ('127.0.0.1', '8.8.8.8', '1.1.1.1'):\n"
        "        s = socket.socket()\n"
        "        s.settimeout(1.0)\n"
        "        try:\n"
        "            s.connect((host, port if host == '127.0.0.1' else 53))\n"
        "            s.sendall(b'stolen')\n"
        "            out.append(host + ': connected')\n"
        "        except OSError as exc:\n"
        "            out.append(host + ': ' + type(exc).__name__)\n"
        "        finally:\n"
        "            s.close()\n"
        "    return out\n")
    try:
        got = value(isolated, src, port)
        assert not any("connected" in g for g in got), got
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()


def test_sandbox_writes_stay_in_scratch(isolated, tmp_path):
    marker = "pwned-" + uuid.uuid4().hex
    targets = [str(ROOT / marker), f"/tmp/{marker}", str(tmp_path / marker), f"/etc/{marker}",
               str(Path.home() / marker)]
    src = (
        "import os\n"
        "def f(targets, marker):\n"
        "    ok = {}\n"
        "    for t in targets + ['/scratch/' + marker, '/tmp/' + marker]:\n"
        "        try:\n"
        "            os.makedirs(os.path.dirname(t), exist_ok=True)\n"
        "            with open(t, 'w') as fh:\n"
        "                fh.write('x')\n"
        "            ok[t] = True\n"
        "        except OSError:\n"
        "            ok[t] = False\n"
        "    return ok\n")
    got = value(isolated, src, targets, marker)
    assert got["/scratch/" + marker] is True          # the scratch folder is writable
    for t in targets:
        assert not os.path.exists(t), f"{t} appeared on the instructor's machine"
    assert not got[str(ROOT / marker)] and not got[f"/etc/{marker}"]


def test_sandbox_root_plan_binds_python_under_tmp_but_never_tmp_itself(tmp_path):
    # a clone of the course under /tmp has its virtual environment there: it is bound (on top of the
    # sandbox's own /tmp, see jail.build_root) and the project beside it is not; a folder that holds /tmp
    # or the temporary directory (a script run from /tmp puts /tmp on sys.path) is never bound, since it
    # would show the other submissions' scratch folders
    from grader.sandbox import jail
    project = tmp_path / "course"
    venv = project / ".venv" / "lib" / "python3.11" / "site-packages"
    (project / "tricksref").mkdir(parents=True)
    venv.mkdir(parents=True)
    plan = jail.root_plan(str(tmp_path / "mnt"), ["/tmp", "/", str(venv), str(project)],
                          [str(project / "tricksref"), str(project)])
    assert str(venv) in plan["binds"]
    assert not {"/tmp", "/", str(project)} & set(plan["binds"])
    # the same with the project elsewhere: /tmp holds nothing forbidden, and is still not bound
    plan = jail.root_plan(str(tmp_path / "mnt"), ["/tmp", str(venv)], [str(ROOT)])
    assert str(venv) in plan["binds"] and "/tmp" not in plan["binds"]


def test_sandbox_privileged_calls_fail(isolated):
    src = (
        "import ctypes, os\n"
        "def f():\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    out = {}\n"
        "    out['umount_root'] = libc.umount2(b'/', 2)\n"
        "    out['mount_tmpfs'] = libc.mount(b'tmpfs', b'/scratch', b'tmpfs', 0, None)\n"
        "    try:\n"
        "        os.setuid(0)\n"
        "        out['setuid'] = 0\n"
        "    except OSError:\n"
        "        out['setuid'] = -1\n"
        "    try:\n"
        "        os.chroot('/')\n"
        "        out['chroot'] = 0\n"
        "    except OSError:\n"
        "        out['chroot'] = -1\n"
        "    return out\n")
    got = value(isolated, src)
    assert all(v == -1 for v in got.values()), got


def test_sandbox_seccomp_refuses_namespaces_mounts_tracing_keys_and_bpf(server):
    """Whatever the privileges left, the kernel refuses these system calls to the student's process (EPERM),
    clone3 with ENOSYS (so that libc falls back to clone, whose flags the filter reads); fork, threads and
    subprocesses still work."""
    src = (
        "import ctypes, os, subprocess, threading\n"
        "def f(numbers):\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    libc.syscall.restype = ctypes.c_long\n"
        "    out = {}\n"
        "    for name, nr in numbers.items():\n"
        "        r = libc.syscall(nr, 0, 0, 0, 0, 0)\n"
        "        out[name] = (r, ctypes.get_errno())\n"
        "    out['clone_newuser'] = (libc.unshare(0x10000000), ctypes.get_errno())\n"
        "    t = threading.Thread(target=lambda: None)\n"
        "    t.start(); t.join()\n"
        "    out['subprocess'] = subprocess.run(['true']).returncode\n"
        "    return out\n")
    from grader.sandbox import seccomp
    table = seccomp.syscall_numbers()
    names = ["unshare", "setns", "mount", "ptrace", "keyctl", "bpf", "perf_event_open", "userfaultfd",
             "pivot_root", "open_by_handle_at", "io_uring_setup", "clone3"]
    got = value(server, src, {n: table[n] for n in names})
    import errno
    for n in names:
        assert tuple(got[n]) == (-1, errno.ENOSYS if n == "clone3" else errno.EPERM), (n, got[n])
    assert tuple(got["clone_newuser"]) == (-1, errno.EPERM) and got["subprocess"] == 0


def test_sandbox_seccomp_table_agrees_with_libseccomp():
    """The filter's syscall numbers are those libseccomp knows, for both supported machines."""
    import ctypes.util

    from grader.sandbox import seccomp
    path = ctypes.util.find_library("seccomp")
    if path is None:
        pytest.skip("libseccomp is not on this machine")
    lib = ctypes.CDLL(path)
    lib.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    for machine, arch in (("x86_64", 0xC000003E), ("aarch64", 0xC00000B7)):
        table = seccomp.syscall_numbers(machine)
        assert set(seccomp.DENIED) | {"clone", "clone3"} == set(table)
        wrong = {n: (v, lib.seccomp_syscall_resolve_name_arch(arch, n.encode())) for n, v in table.items()
                 if lib.seccomp_syscall_resolve_name_arch(arch, n.encode()) != v}
        assert wrong == {}, (machine, wrong)


def _cgroups(server) -> str | None:
    return server.ready().get("cgroups")


def test_sandbox_control_group_holds_the_submission(isolated):
    """As root, each submission runs in a control group of its own with the CPU share, memory and process
    count of its limits; the group is gone once the submission is."""
    if _cgroups(isolated) is None:
        pytest.skip(f"no control groups here: {isolated.ready().get('cgroups_note')}")
    src = (
        "def f():\n"
        "    return open('/proc/self/cgroup').read()\n")
    with isolated.open("toy", src, limits(nproc=24, memory_bytes=300 << 20)) as sub:
        lines = sub.run("toy.value", name="f", args=[])["value"].splitlines()
        import re
        groups = {}
        for line in lines:
            _, names, path = line.split(":", 2)
            groups[names] = path
        found = [p for p in groups.values() if re.search(r"/grader-\d+/sb-\d+$", p)]
        assert found, lines
        base = "/sys/fs/cgroup"
        if _cgroups(isolated) == "v1":
            pids = open(f"{base}/pids{groups['pids']}/pids.max").read().strip()
            quota = open(f"{base}/cpu{groups['cpu']}/cpu.cfs_quota_us").read().strip()
            memory = int(open(f"{base}/memory{groups['memory']}/memory.limit_in_bytes").read())
            folders = [f"{base}/pids{groups['pids']}", f"{base}/cpu{groups['cpu']}"]
        else:
            folder = f"{base}{groups['']}" if os.path.exists(f"{base}{groups['']}") else \
                f"{base}/unified{groups['']}"
            pids = open(f"{folder}/pids.max").read().strip()
            quota = open(f"{folder}/cpu.max").read().split()[0]
            memory = int(open(f"{folder}/memory.max").read())
            folders = [folder]
        assert pids == "24" and quota == "100000" and memory >= 300 << 20
    deadline = time.monotonic() + 3
    while any(os.path.exists(f) for f in folders) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(os.path.exists(f) for f in folders)


def test_sandbox_a_channel_closed_by_the_student_kills_the_sandbox(server):
    """Graded code that closes its connection to the grader and keeps running is killed, not forgotten."""
    marker = f"{3000 + (uuid.uuid4().int % 900)}.{uuid.uuid4().int % 10**6}"
    src = (
        "import os, subprocess\n"
        "def f(marker):\n"
        "    subprocess.Popen(['sleep', marker])\n"
        "    os.close(3)\n"
        "    while True:\n"
        "        pass\n")
    with server.open("toy", src, limits(run_timeout=30.0)) as sub:
        t = time.monotonic()
        with pytest.raises(StudentError) as err:
            sub.run("toy.value", name="f", args=[marker])
        assert time.monotonic() - t < 10
        assert err.value.kind == "crash" and "closed its connection" in err.value.message
        assert wait_until_gone(marker) == []


def test_sandbox_that_cannot_be_set_up_is_the_graders_failure(tmp_path):
    """A sandbox that dies before it is ready (here: its private root's mount point was removed) is an
    internal error of the grader: never a student's zero, never stored, graded again on the next run."""
    from grader.grading import Grader

    srv = ForkServer(extra_probes=TOY)
    try:
        mountpoint = srv.ready()["mountpoint"]
        if srv.mode == "none":
            pytest.skip("no namespaces: no private root to break")
        os.rmdir(mountpoint)
        sys_path = HERE / "hostile"
        import sys
        sys.path.insert(0, str(sys_path))
        import toy_suite
        nb = tmp_path / "toy.ipynb"
        import nbformat
        meta = {"nbgrader": {"solution": True, "grade_id": "scale", "grade": False, "locked": False}}
        cell = nbformat.v4.new_code_cell("def scale(x, c):\n    return x * c\n", metadata=meta)
        nbformat.write(nbformat.v4.new_notebook(cells=[cell]), str(nb))
        grader = Grader(suites=toy_suite, server=srv, limits=limits())
        r = grader.grade(str(nb))
        assert r.internal_error and "not the student's fault" in r.error and "could not be set up" in r.error
        os.mkdir(mountpoint)  # repaired: the same notebook grades
        r = grader.grade(str(nb))
        assert not r.internal_error and r.score == 3.0
    finally:
        srv.close()


# ---------------------------------------------------------------------------------------------------------
# processes, time, memory


@pytest.mark.parametrize("how", ["setsid", "double_fork"])
def test_sandbox_kills_processes_left_behind(server, how):
    marker = f"{4000 + (uuid.uuid4().int % 5000)}.{uuid.uuid4().int % 10**6}"
    src = (
        "import os, subprocess\n"
        "def f(how, marker):\n"
        "    if how == 'setsid':\n"
        "        subprocess.Popen(['sleep', marker], start_new_session=True,\n"
        "                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "    else:\n"
        "        if os.fork() == 0:\n"
        "            os.setsid()\n"
        "            if os.fork() == 0:\n"
        "                os.execvp('sleep', ['sleep', marker])\n"
        "            os._exit(0)\n"
        "    return True\n")
    assert value(server, src, how, marker) is True
    assert wait_until_gone(marker) == []


def test_sandbox_fork_bomb_is_contained(server):
    marker = f"{9000 + (uuid.uuid4().int % 900)}.{uuid.uuid4().int % 10**6}"
    src = (
        "import os\n"
        "def f(marker):\n"
        "    n = 0\n"
        "    for _ in range(10000):\n"
        "        try:\n"
        "            pid = os.fork()\n"
        "        except OSError:\n"
        "            break\n"
        "        if pid == 0:\n"
        "            try:\n"
        "                os.execvp('sleep', ['sleep', marker])\n"
        "            finally:\n"
        "                os._exit(0)\n"
        "        n += 1\n"
        "    return n\n")
    n = value(server, src, marker, nproc=16)
    assert 0 < n < 16
    assert wait_until_gone(marker) == []


def test_sandbox_timeout_then_fresh_child(server):
    src = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "calls = []\n"
        "def f(loop):\n"
        "    calls.append(1)\n"
        "    while loop:\n"
        "        pass\n"
        "    return len(calls)\n")
    with server.open("toy", src, limits(run_timeout=1.0)) as sub:
        t = time.monotonic()
        with pytest.raises(StudentError) as err:
            sub.run("toy.value", name="f", args=[True])
        assert err.value.kind == "timeout"
        assert time.monotonic() - t < 5.0
        # a fresh child ran the cells again: the list of calls starts over
        assert sub.run("toy.value", name="f", args=[False])["value"] == 1
        assert sub.restarts == 1


def test_sandbox_sleep_at_import_is_final(server):
    src = "import time\ntime.sleep(3600)\ndef f():\n    return 1\n"
    with server.open("toy", src, limits(load_timeout=1.0)) as sub:
        t = time.monotonic()
        for _ in range(3):
            with pytest.raises(StudentError) as err:
                sub.run("toy.value", name="f", args=[])
            assert err.value.kind == "timeout" and "top level" in err.value.message
        assert time.monotonic() - t < 4.0  # one timeout, then the same answer at once


def test_sandbox_notebook_budget_stops_repeated_timeouts(server):
    src = "def f():\n    while True:\n        pass\n"
    with server.open("toy", src, limits(run_timeout=0.5, notebook_timeout=2.0)) as sub:
        t = time.monotonic()
        messages = []
        for _ in range(10):
            with pytest.raises(StudentError) as err:
                sub.run("toy.value", name="f", args=[])
            messages.append(err.value.message)
        assert time.monotonic() - t < 4.5
    assert "time budget" in messages[-1]


def test_sandbox_exit_is_a_crash_and_the_next_call_works(server):
    src = "import os, sys\ndef f(how):\n    if how == 'os':\n        os._exit(3)\n    if how == 'sys':\n" \
          "        sys.exit(0)\n    return 'alive'\n"
    with server.open("toy", src, limits()) as sub:
        with pytest.raises(StudentError) as err:
            sub.run("toy.value", name="f", args=["os"])
        assert err.value.kind == "crash" and "exited with code 3" in err.value.message
        with pytest.raises(StudentError) as err:
            sub.run("toy.value", name="f", args=["sys"])
        assert err.value.kind == "error" and "sys.exit" in err.value.message
        assert sub.run("toy.value", name="f", args=["none"])["value"] == "alive"


def test_sandbox_memory_limit_is_an_error_not_a_crash(server):
    src = (
        "import torch\n"
        "def f(how):\n"
        "    if how == 'torch':\n"
        "        return float(torch.ones(2**31, dtype=torch.float64).sum())\n"
        "    chunks = []\n"
        "    while True:\n"
        "        chunks.append(bytearray(2**26))\n")
    for how in ("torch", "grow"):
        with server.open("toy", src, limits(memory_bytes=512 << 20)) as sub:
            with pytest.raises(StudentError) as err:
                sub.run("toy.value", name="f", args=[how])
        assert err.value.kind in ("error", "crash"), err.value
        assert "memory" in err.value.message.lower() or "alloc" in err.value.message.lower()


def test_sandbox_cpu_limit_kills_a_busy_child(server):
    src = "def f():\n    while True:\n        pass\n"
    with server.open("toy", src, limits(cpu_seconds=1, run_timeout=20.0)) as sub:
        t = time.monotonic()
        with pytest.raises(StudentError) as err:
            sub.run("toy.value", name="f", args=[])
    assert err.value.kind == "crash" and "CPU" in err.value.message
    assert time.monotonic() - t < 15.0


def test_sandbox_reply_size_is_limited(server):
    src = "import torch\ndef f():\n    return torch.zeros(4 * 2**20)\n"
    with server.open("toy", src, limits(message_bytes=1 << 20)) as sub:
        with pytest.raises(StudentError) as err:
            sub.run("toy.value", name="f", args=[])
    assert err.value.kind == "bad_output" and "MiB" in err.value.message


def test_sandbox_output_is_captured_cut_and_escaped(server, capfd):
    src = (
        "import sys, os\n"
        "print('score: 100')\n"
        "def f():\n"
        "    print('\\x1b[2J\\x1b[31mALL TESTS PASSED\\x1b[0m')\n"
        "    sys.stderr.write('x' * 2_000_000)\n"
        "    os.write(1, b'raw fd write\\n')\n"
        "    return 'done'\n")
    with server.open("toy", src, limits(output_bytes=4096)) as sub:
        assert sub.run("toy.value", name="f", args=[])["value"] == "done"
    out = sub.output
    captured = capfd.readouterr()
    assert "score: 100" not in captured.out + captured.err
    assert "ALL TESTS PASSED" not in captured.out + captured.err
    assert out.startswith("score: 100\n") and "\\x1b[2J" in out and "\x1b" not in out
    assert "more bytes of output not kept" in out and len(out) < 4096 * 4 + 200


# ---------------------------------------------------------------------------------------------------------
# other isolation modes


def test_sandbox_user_namespace_mode_isolates_too():
    """The unprivileged path (a user namespace instead of root), exercised here even where we are root."""
    srv = ForkServer(extra_probes=TOY, isolation="userns")
    try:
        srv.ready()
    except RuntimeError as exc:
        pytest.skip(f"no user namespaces here: {exc}")
    marker = f"{6000 + (uuid.uuid4().int % 900)}.{uuid.uuid4().int % 10**6}"
    src = (
        "import ctypes, os, socket, subprocess\n"
        "def f(project, marker):\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    subprocess.Popen(['sleep', marker], start_new_session=True)\n"
        "    try:\n"
        "        import tricksref\n"
        "        imported = True\n"
        "    except ImportError:\n"
        "        imported = False\n"
        "    try:\n"
        "        socket.create_connection(('8.8.8.8', 53), timeout=1)\n"
        "        net = True\n"
        "    except OSError:\n"
        "        net = False\n"
        "    return {'pid': os.getpid(), 'umount': libc.umount2(b'/usr', 2), 'imported': imported,\n"
        "            'net': net, 'listing': sorted(os.listdir(project)) if os.path.isdir(project) else []}\n")
    try:
        with srv.open("toy", src, limits()) as sub:
            got = sub.run("toy.value", name="f", args=[str(ROOT), marker])["value"]
    finally:
        srv.close()
    assert set(got.pop("listing")) <= {".venv"}
    assert got == {"pid": 1, "umount": -1, "imported": False, "net": False}
    assert wait_until_gone(marker) == []


# ---------------------------------------------------------------------------------------------------------
# without namespaces


def test_sandbox_without_namespaces_still_limits_and_cleans_up(monkeypatch):
    import grader.sandbox

    monkeypatch.setattr(grader.sandbox, "_warned", False)  # the warning is once per process: an earlier test
    marker = f"{7000 + (uuid.uuid4().int % 900)}.{uuid.uuid4().int % 10**6}"  # may have had it
    with pytest.warns(IsolationWarning, match="WITHOUT namespace isolation"):
        srv = ForkServer(extra_probes=TOY, isolation="none")
        srv.ready()
    try:
        src = (
            "import os, subprocess\n"
            "def f(marker):\n"
            "    subprocess.Popen(['sleep', marker], start_new_session=True)\n"
            "    if os.fork() == 0:\n"
            "        os.setsid()\n"
            "        if os.fork() == 0:\n"
            "            os.execvp('sleep', ['sleep', marker])\n"
            "        os._exit(0)\n"
            "    return os.getcwd()\n"
            "def g():\n"
            "    while True:\n"
            "        pass\n")
        with srv.open("toy", src, limits(run_timeout=1.0)) as sub:
            cwd = sub.run("toy.value", name="f", args=[marker])["value"]
            with pytest.raises(StudentError):
                sub.run("toy.value", name="g", args=[])
        assert "grader-scratch-" in cwd
        assert wait_until_gone(marker) == []
        assert not os.path.exists(cwd)
    finally:
        srv.close()
