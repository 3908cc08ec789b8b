"""The fork server: one process per ``grade`` call that imports torch once and forks a sandbox per submission.

Started by ``grader.sandbox.ForkServer`` as a fresh interpreter with a scrubbed environment (no secret of the
instructor's environment reaches a student's ``/proc/self/environ``). It never imports ``tricksref``, the
suites or the hidden tests, and it never sees a student's code: the grader sends that straight to the sandbox.

One isolation path. Before anything else the server makes sure it may create namespaces: as root it may; as
another user it enters a user namespace of its own, where it is root (``isolation="userns"`` takes that road
even as root). Then it becomes PID 1 of a new PID namespace (a parent process waits for it), so that every
sandbox is made the same way: ``setns`` + ``unshare(CLONE_NEWPID)`` and one fork make the student's process
PID 1 of a brand-new PID namespace, which then enters new mount, network, IPC and UTS namespaces, a private
root, resource limits, its control group, a user id of its own (as root), and a seccomp filter (see
``grader.sandbox.child.lock_down``). Every process the student starts dies with that PID 1; the server kills
it on request, past a deadline, or when it goes away itself. The same steps are checked once at start-up on a
throwaway sandbox, so a machine that cannot build one makes the server fail, not grade unsafely.

``isolation="none"`` (only when asked for explicitly) skips the namespaces: the student's process still gets
the limits, the seccomp filter and a scratch folder, and the server, a subreaper, kills what it leaves behind.

Requests arrive on a SOCK_SEQPACKET socket as small JSON messages, with file descriptors attached::

    {"op": "spawn", "assignment": str, "limits": {...}}  + [control socket, output pipe]  ->  {"id", "pid"}
    {"op": "kill", "id": n}                          ->  {"ok": true}     (SIGKILL; the status is forgotten)
    {"op": "reap", "id": n, "timeout": s}            ->  {"status": {"exit": c} | {"signal": s} | null}
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import pkgutil
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback

#: sandboxed processes run under their own user id (as root), one per concurrent sandbox, so that
#: RLIMIT_NPROC (which counts per user) is theirs alone and they cannot signal or trace anything else
UID_BASE = 0x5A000000
_MAX_MSG = 1 << 16
#: the exit code of a sandbox whose set-up failed before any student code ran (a grader problem)
SETUP_FAILED = 71


def _preload(extra_probes: dict[str, str]) -> None:
    """Import what graded code needs while nothing of the student's exists yet."""
    import numpy  # noqa: F401
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    import torch.nn  # noqa: F401
    import torch.nn.functional  # noqa: F401
    import torch.overrides  # noqa: F401
    import torch.utils._python_dispatch  # noqa: F401

    import grader.policy  # noqa: F401
    import grader.probes
    import grader.submission  # noqa: F401
    import grader.transport  # noqa: F401

    from . import child, seccomp  # noqa: F401
    if importlib.util.find_spec("grader.guards") is not None:
        importlib.import_module("grader.guards")
    for info in pkgutil.iter_modules(grader.probes.__path__):
        importlib.import_module(f"grader.probes.{info.name}")
    for name, path in extra_probes.items():  # test-only probe modules
        spec = importlib.util.spec_from_file_location(f"grader.probes.{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        setattr(grader.probes, name, module)
    _warm_up(torch)
    bad = [m for m in sys.modules if m == "tricksref" or m.startswith(("tricksref.", "grader.suite",
                                                                        "grader.hidden", "grader.reference"))]
    if bad:
        raise RuntimeError(f"the fork server must not import {bad}: a probe or guard imports the reference")


def _warm_up(torch) -> None:
    """Run once what graded code commonly runs, so that torch's lazy imports happen here, not per child.

    The first ``autograd.grad`` alone imports about 500 modules (sympy, mpmath: 2-3 s); done in every forked
    child it would cost more than grading. One thread: no OpenMP pool exists when the server forks.
    """
    import torch.fx.experimental.symbolic_shapes  # noqa: F401 - what autograd.grad(grad_outputs=) imports
    import torch.nn.functional as F

    from grader import guards

    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = F.avg_pool2d(F.pad(a * a, (1, 1, 1, 1)), 3, stride=1).pow(0.75)
    (ga,) = torch.autograd.grad(a / b, a, grad_outputs=torch.ones_like(b))  # imports sympy, once
    c = a.float().detach().requires_grad_(True)
    (c.mean(dim=(0, 2, 3)).sum() + c.var(dim=0, unbiased=False).sum() + F.conv2d(c, c[:1]).sum()).backward()
    torch.where(torch.rand(3, generator=g) < 0.5, 1.0, 0.0)
    torch.allclose(ga, ga)
    torch.bernoulli(torch.full((3,), 0.5), generator=g)
    guards.install("lrn")  # the modes' first use imports their machinery
    with guards.no_autograd("warm-up"):
        torch.ones(2) * 2
    guards.uninstall("lrn")


def _remove_stale_mountpoints() -> None:
    """The empty folders of fork servers that were killed (SIGKILL leaves no time to remove them)."""
    import glob
    for path in glob.glob(os.path.join(tempfile.gettempdir(), "grader-root-*-*")):
        try:
            pid = int(os.path.basename(path).split("-")[2])
        except (ValueError, IndexError):
            continue
        # /proc, not kill(pid, 0): this server lives in a PID namespace of its own, where the other servers'
        # PIDs do not exist, while /proc is still the machine's
        if not os.path.exists(f"/proc/{pid}"):
            try:
                os.rmdir(path)  # only ever empty: the sandboxes mount over it in their own namespaces
            except OSError:
                pass


def _forbidden_paths() -> list[str]:
    """Folders graded code must not see: the project, and wherever tricksref or the grader lives."""
    import grader
    found = {os.path.dirname(os.path.dirname(os.path.realpath(grader.__file__)))}
    found.add(os.path.dirname(os.path.realpath(grader.__file__)))
    try:
        spec = importlib.util.find_spec("tricksref")  # finds it without importing it
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        found.add(os.path.dirname(os.path.realpath(spec.origin)))
        found.add(os.path.dirname(os.path.dirname(os.path.realpath(spec.origin))))
    for p in sys.path:
        for name in ("tricksref", "tricksref.py", "grader", "grader.py"):
            if p and os.path.exists(os.path.join(p, name)):
                found.add(os.path.realpath(os.path.join(p, name)))
    return sorted(found)


def _python_paths() -> list[str]:
    paths = [sys.base_prefix, sys.prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    paths += [p for p in sys.path if p and os.path.isabs(p)]
    for mod in list(sys.modules.values()):  # the folders of loaded packages (an egg, a user site)
        f = getattr(mod, "__file__", None)
        if f and "site-packages" in f:
            paths.append(f[: f.index("site-packages") + len("site-packages")])
    return list(dict.fromkeys(paths))


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


# --------------------------------------------------------------------------------------------- isolation


def _choose_isolation(requested: str) -> tuple[bool, bool]:
    """(namespaced, in a user namespace of our own) for ``requested``; enters the user namespace now (it
    needs a single-threaded process: before torch is imported). Raises RuntimeError when impossible."""
    from . import jail

    if requested == "none":
        return False, False
    if requested in ("auto", "namespaces") and os.geteuid() == 0:
        return True, False
    if requested == "namespaces":
        raise RuntimeError("isolation 'namespaces' needs root; use 'userns' or 'auto'")
    uid, gid = os.getuid(), os.getgid()
    try:
        jail.unshare(jail.CLONE_NEWUSER)
        jail.write_id_maps(0, uid, 0, gid)
    except (OSError, jail.JailError) as exc:
        raise RuntimeError(f"no namespace isolation is possible here: not root, and unprivileged user "
                           f"namespaces are unavailable ({exc}); run the grader as root, enable them "
                           f"(sysctl kernel.unprivileged_userns_clone=1), or pass --isolation none "
                           f"--allow-unisolated") from None
    return True, True


def _become_pid1(sock: socket.socket) -> None:
    """Fork; the child returns as PID 1 of a new PID namespace, this process waits for it and exits."""
    from . import jail

    jail.unshare(jail.CLONE_NEWPID)
    pid = os.fork()
    if pid == 0:
        jail.set_parent_death_signal()
        return
    sock.close()
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda *a: os.kill(pid, signal.SIGKILL))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


@dataclasses.dataclass
class _Sandbox:
    pid: int
    slot: int
    deadline: float
    group: object = None          # its control group (grader.sandbox.cgroups.Group), if any
    scratch: str | None = None    # its scratch folder (isolation "none" only)
    forget: bool = False          # killed on request: its status is nobody's business


class Server:
    def __init__(self, sock: socket.socket, config: dict, *, namespaced: bool, user: bool, tag: int):
        from . import cgroups, jail
        self.jail = jail
        self.sock = sock
        self.namespaced, self.user = namespaced, user
        self.mode = "none" if not namespaced else "userns" if user else "namespaces"
        self.uid_base = int(config.get("uid_base", UID_BASE))
        self.alive: dict[int, _Sandbox] = {}
        self.status: dict[int, dict] = {}              # id -> exit status, until reaped by the grader
        self.next_id = 1
        self.pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY) if namespaced else -1
        _remove_stale_mountpoints()
        self.mountpoint = tempfile.mkdtemp(prefix=f"grader-root-{tag}-")
        self.forbidden = _forbidden_paths()
        self.plan = dict(jail.root_plan(self.mountpoint, _python_paths(), self.forbidden),
                         forbidden=self.forbidden)
        self.base_rss = _rss_bytes()
        self.cgroups, self.cgroups_note = (cgroups.detect(f"grader-{tag}") if not user
                                           else (None, "inside a user namespace"))
        jail.prctl(jail.PR_SET_CHILD_SUBREAPER, 1)

    # ---- making a sandbox

    def spawn(self, req: dict, ctrl_fd: int, out_fd: int) -> dict:
        used = {s.slot for s in self.alive.values()}
        slot = next(i for i in range(len(used) + 1) if i not in used)
        cid = self.next_id
        self.next_id += 1
        limits = req["limits"]
        group = scratch = None
        if self.cgroups is not None:
            group = self.cgroups.create(f"sb-{cid}", cpus=1.0, pids=int(limits["nproc"]),
                                        memory_bytes=int(limits["memory_bytes"]) + self.base_rss)
        if not self.namespaced:  # made and removed here: the sandbox cannot clean up after itself
            scratch = tempfile.mkdtemp(prefix="grader-scratch-")
            if os.geteuid() == 0:
                os.chown(scratch, self.uid_base + slot, self.uid_base + slot)
        if self.namespaced:  # the next child is PID 1 of a brand-new PID namespace
            self.jail.new_pid_namespace_for_children(self.pidns_fd)
        try:
            pid = os.fork()
        finally:
            if self.namespaced and pid != 0:
                self.jail.own_pid_namespace_for_children(self.pidns_fd)
        if pid == 0:
            self._become_sandbox(req, ctrl_fd, out_fd, slot, group, scratch)  # never returns
        deadline = time.monotonic() + float(limits["notebook_timeout"]) + float(limits["load_timeout"]) + 30.0
        self.alive[cid] = _Sandbox(pid, slot, deadline, group, scratch)
        return {"id": cid, "pid": pid}

    def _become_sandbox(self, req, ctrl_fd, out_fd, slot, group, scratch) -> None:
        """In the forked child: lock down, then serve the grader; never returns."""
        code = SETUP_FAILED
        try:
            from . import child

            if self.pidns_fd >= 0:
                os.close(self.pidns_fd)
            self.sock.close()
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
                signal.signal(s, signal.SIG_DFL)
            if self.user:
                uid, gid = os.getuid() or 1000, os.getgid() or 1000
            elif os.geteuid() == 0:
                uid = gid = self.uid_base + slot
            else:
                uid, gid = os.getuid(), os.getgid()
            ctrl = child.lock_down(ctrl_fd=ctrl_fd, out_fd=out_fd, namespaced=self.namespaced, user=self.user,
                                   plan=self.plan, uid=uid, gid=gid, limits=req["limits"], scratch=scratch,
                                   group=group)
            code = 0
            child.serve(ctrl, req["assignment"])
        except BaseException:  # noqa: BLE001 - a set-up failure: report it, never run the student's code
            try:
                os.write(2, traceback.format_exc().encode()[-2000:])
            except OSError:
                pass
        os._exit(code)

    def check(self) -> None:
        """Bring up one throwaway sandbox and wait for its "ready": the machine can build what grading
        needs (namespaces, the private root, limits, seccomp), or the server fails now."""
        from .protocol import recv_frame

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        null = os.open(os.devnull, os.O_WRONLY)
        limits = {"nproc": 32, "memory_bytes": 1 << 30, "notebook_timeout": 30, "load_timeout": 30,
                  "cpu_seconds": 30, "file_bytes": 1 << 20, "scratch_bytes": 1 << 20}
        try:
            reply = self.spawn({"assignment": "lrn", "limits": limits}, theirs.fileno(), null)
        finally:
            theirs.close()
            os.close(null)
        try:
            ready = recv_frame(ours, time.monotonic() + 60, 1 << 16)
        except Exception as exc:  # noqa: BLE001
            ready = b""
            why = f"{type(exc).__name__}"
        else:
            why = ""
        ours.close()
        self.kill(reply["id"], forget=True)
        self.reap_until(reply["id"], 5.0)
        if b"ready" not in ready:
            raise RuntimeError(f"a sandbox could not be set up here ({self.mode} isolation): "
                               f"{why or 'no ready'}")

    # ---- the sandboxes' lives

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for cid, sb in list(self.alive.items()):
                if sb.pid == pid:
                    del self.alive[cid]
                    self._clean(sb)
                    if not sb.forget:
                        self.status[cid] = ({"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status)
                                            else {"exit": os.WEXITSTATUS(status)})

    def _clean(self, sb: _Sandbox) -> None:
        if sb.group is not None:
            sb.group.remove()
        if sb.scratch is not None:
            self.sweep_orphans()
            shutil.rmtree(sb.scratch, ignore_errors=True)

    def reap_until(self, cid: int, timeout: float) -> None:
        end = time.monotonic() + timeout
        while cid in self.alive and time.monotonic() < end:
            self.reap()
            if cid in self.alive:
                time.sleep(0.002)

    def kill(self, cid: int, *, forget: bool) -> None:
        sb = self.alive.get(cid)
        if sb is not None:
            sb.forget = sb.forget or forget
            try:
                os.kill(sb.pid, signal.SIGKILL)
            except OSError:
                pass
            if sb.group is not None:
                sb.group.kill()
        if forget:
            self.status.pop(cid, None)

    def sweep_orphans(self) -> None:
        """Without namespaces, processes that escaped a sandbox are reparented here: kill them."""
        if self.namespaced:
            return
        known = {sb.pid for sb in self.alive.values()}
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in known:
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == os.getpid():
                try:
                    os.kill(int(name), signal.SIGKILL)
                except OSError:
                    pass

    # ---- serving the grader

    def handle(self, req: dict, fds: list[int]) -> dict:
        op = req.get("op")
        try:
            if op == "spawn":
                if len(fds) != 2:
                    return {"error": "spawn needs a control socket and an output pipe"}
                return self.spawn(req, fds[0], fds[1])
        finally:
            for fd in fds:
                os.close(fd)
        if op == "kill":  # and wait for it, so that its scratch folder and group are gone when we answer
            cid = int(req["id"])
            self.kill(cid, forget=bool(req.get("forget", True)))
            self.reap_until(cid, 1.0)
            return {"ok": True}
        if op == "reap":
            cid = int(req["id"])
            self.reap_until(cid, float(req.get("timeout", 2.0)))
            return {"status": self.status.pop(cid, None)}
        return {"error": f"unknown op {op!r}"}

    def run(self) -> None:
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        last_sweep = 0.0
        while True:
            events = poller.poll(200)
            self.reap()
            now = time.monotonic()
            for cid, sb in list(self.alive.items()):  # a backstop if the grader itself stalls
                if now > sb.deadline:
                    self.kill(cid, forget=False)
            if not self.namespaced and now - last_sweep > 0.2:
                self.sweep_orphans()
                last_sweep = now
            if not events:
                continue
            try:
                msg, fds, _flags, _addr = socket.recv_fds(self.sock, _MAX_MSG, 4)
            except OSError:
                break
            if not msg:
                break  # the grader is gone
            try:
                reply = self.handle(json.loads(msg), list(fds))
            except Exception as exc:  # noqa: BLE001 - report, keep serving
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            self.sock.send(json.dumps(reply).encode())
        self.shutdown()

    def shutdown(self) -> None:
        for cid in list(self.alive):
            self.kill(cid, forget=True)
        deadline = time.monotonic() + 5
        while self.alive and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.005)
        for sb in list(self.alive.values()):
            self._clean(sb)
        if self.cgroups is not None:
            self.cgroups.close()
        for _ in range(3):
            self.sweep_orphans()
        try:
            os.rmdir(self.mountpoint)
        except OSError:
            pass


def main(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    tag = os.getpid()
    try:
        config = json.loads(sock.recv(_MAX_MSG))
        namespaced, user = _choose_isolation(config.get("isolation", "auto"))
        if namespaced:
            _become_pid1(sock)
        _preload(config.get("extra_probes") or {})
        server = Server(sock, config, namespaced=namespaced, user=user, tag=tag)
        server.check()
    except Exception as exc:  # noqa: BLE001
        sock.send(json.dumps({"error": f"{type(exc).__name__}: {exc}" if not isinstance(exc, RuntimeError)
                              else str(exc), "trace": traceback.format_exc()[-3000:]}).encode())
        return
    warning = None if namespaced else "isolation 'none' was asked for"
    sock.send(json.dumps({"mode": server.mode, "warning": warning, "pid": tag, "forbidden": server.forbidden,
                          "binds": server.plan["binds"], "mountpoint": server.mountpoint,
                          "cgroups": server.cgroups.version
                          if server.cgroups else None, "cgroups_note": server.cgroups_note}).encode())
    server.run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
