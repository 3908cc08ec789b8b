"""The fork server: one process per ``grade`` call that imports torch once and forks a sandbox per submission.

Started by ``grader.sandbox.ForkServer`` as a fresh interpreter with a scrubbed environment (no secret of the
instructor's environment reaches a student's ``/proc/self/environ``). Before any student code exists it
imports what graded code and probes need (torch, numpy, ``grader.transport``, ``grader.submission``,
``grader.guards``, every ``grader.probes`` module) and sets torch to one thread, so no OpenMP pool exists
when it forks. It never imports ``tricksref``, the suites or the hidden tests, and it never sees a student's
code: the grader sends that straight to the sandbox.

Per submission (as root) it forks the student's process straight into a new PID namespace, as its PID 1
(``setns`` + ``unshare(CLONE_NEWPID)`` before the fork), which then takes a session of its own and enters
new mount, network, IPC and UTS namespaces: every process the student starts (double forks and ``setsid``
included) is killed by the kernel when PID 1 ends, and the server kills PID 1 on request or past a
deadline. Without root (a user namespace) or without namespaces, a supervisor process sits in between: it
enters the namespaces, or acts as the subreaper that kills what the student leaves behind.

Requests arrive on a SOCK_SEQPACKET socket as small JSON messages, with file descriptors attached::

    {"op": "spawn", "assignment": str, "limits": {...}}  + [control socket, output pipe]  ->  {"id", "pid"}
    {"op": "kill", "id": n}                          ->  {"ok": true}     (SIGKILL; the status is forgotten)
    {"op": "reap", "id": n, "timeout": s}            ->  {"status": {"exit": c} | {"signal": s} | null}
"""

from __future__ import annotations

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

#: sandboxed processes run under their own user id, one per concurrent sandbox, so that RLIMIT_NPROC (which
#: counts per user) is theirs alone and they cannot signal or trace anything else
UID_BASE = 0x5A000000
_MAX_MSG = 1 << 16


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

    import grader.probes
    import grader.submission  # noqa: F401
    import grader.transport  # noqa: F401

    from . import child  # noqa: F401
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
                                                                        "grader.hidden"))]
    if bad:
        raise RuntimeError(f"the fork server must not import {bad}: a probe or guard imports the reference")


def _warm_up(torch) -> None:
    """Run once what graded code commonly runs, so that torch's lazy imports happen here, not per child.

    The first ``autograd.grad`` alone imports about 500 modules (sympy, mpmath: 2-3 s); done in every forked
    child it would cost more than grading. One thread: no OpenMP pool exists when the server forks.
    """
    import torch.fx.experimental.symbolic_shapes  # noqa: F401 - what autograd.grad(grad_outputs=) imports
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = F.avg_pool2d(F.pad(a * a, (1, 1, 1, 1)), 3, stride=1).pow(0.75)
    (ga,) = torch.autograd.grad(a / b, a, grad_outputs=torch.ones_like(b))  # imports sympy, once
    c = a.float().detach().requires_grad_(True)
    (c.mean(dim=(0, 2, 3)).sum() + c.var(dim=0, unbiased=False).sum() + F.conv2d(c, c[:1]).sum()).backward()
    torch.where(torch.rand(3, generator=g) < 0.5, 1.0, 0.0)
    torch.allclose(ga, ga)
    torch.bernoulli(torch.full((3,), 0.5), generator=g)


def _remove_stale_mountpoints() -> None:
    """The empty folders of fork servers that were killed (SIGKILL leaves no time to remove them)."""
    import glob
    for path in glob.glob(os.path.join(tempfile.gettempdir(), "grader-root-*-*")):
        try:
            pid = int(os.path.basename(path).split("-")[2])
            os.kill(pid, 0)
        except ProcessLookupError:
            try:
                os.rmdir(path)  # only ever empty: the sandboxes mount over it in their own namespaces
            except OSError:
                pass
        except (ValueError, IndexError, PermissionError):
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
    seen, out = set(), []
    for p in paths:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


class Server:
    def __init__(self, sock: socket.socket, config: dict):
        from . import jail
        self.jail = jail
        self.sock = sock
        self.requested = config.get("isolation", "auto")
        self.uid_base = int(config.get("uid_base", UID_BASE))
        self.alive: dict[int, tuple[int, int]] = {}    # id -> (supervisor pid, slot)
        self.status: dict[int, dict] = {}               # id -> exit status, until reaped by the grader
        self.forget: set[int] = set()
        self.scratch: dict[int, str] = {}              # id -> scratch folder (mode "none" only)
        self.deadline: dict[int, float] = {}            # id -> when the server kills it whatever happens
        self.pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY)
        self.next_id = 1
        _remove_stale_mountpoints()
        self.mountpoint = tempfile.mkdtemp(prefix=f"grader-root-{os.getpid()}-")
        self.forbidden = _forbidden_paths()
        self.plan = jail.root_plan(self.mountpoint, _python_paths(), self.forbidden)
        self.scratch_parent = None
        jail.prctl(jail.PR_SET_CHILD_SUBREAPER, 1)

    # ---- isolation probing

    def probe_isolation(self) -> tuple[str, str | None]:
        """Try the strongest isolation the machine allows, in a throwaway child."""
        tried = []
        modes = {"auto": ["namespaces", "userns", "none"], "namespaces": ["namespaces"],
                 "userns": ["userns"], "none": ["none"]}[self.requested]
        for mode in modes:
            if mode == "namespaces" and os.geteuid() != 0:
                tried.append("namespaces: not running as root")
                continue
            if mode == "none":
                return "none", "; ".join(tried) or None
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                try:
                    self._enter(mode, slot=0, limits=None)
                    os.write(w, b"ok")
                except BaseException as exc:  # noqa: BLE001
                    os.write(w, f"{type(exc).__name__}: {exc}".encode()[:500])
                os._exit(0)
            os.close(w)
            msg = b""
            while chunk := os.read(r, 4096):
                msg += chunk
            os.close(r)
            os.waitpid(pid, 0)
            if msg == b"ok":
                return mode, None
            tried.append(f"{mode}: {msg.decode(errors='replace')}")
        return "none", "; ".join(tried)

    def _enter(self, mode: str, slot: int, limits: dict | None) -> None:
        """In a throwaway child: the namespace and root setup, as a sandbox would do it (for probing)."""
        jail = self.jail
        if mode == "namespaces":
            jail.unshare(jail.NAMESPACES)
        else:
            uid, gid = os.getuid(), os.getgid()
            jail.unshare(jail.CLONE_NEWUSER | jail.NAMESPACES)
            jail.write_id_maps(0, uid, 0, gid)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                uid = self.uid_base + 99999
                jail.build_root(self.plan, uid=uid if mode == "namespaces" else 0,
                                gid=uid if mode == "namespaces" else 0, scratch_bytes=1 << 20)
                if mode == "userns":
                    jail.unshare(jail.CLONE_NEWUSER | jail.CLONE_NEWNS)
                    jail.write_id_maps(os.getuid() or 1000, 0, 1000, 0)
                jail.drop_privileges(uid, uid)
                code = 0 if os.path.isdir("/scratch") else 2
            except BaseException:  # noqa: BLE001
                code = 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            code = os.waitstatus_to_exitcode(status)
            raise RuntimeError(f"the private root could not be built (code {code})")

    # ---- serving

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for cid, (p, _slot) in list(self.alive.items()):
                if p == pid:
                    del self.alive[cid]
                    self.deadline.pop(cid, None)
                    if cid in self.scratch:
                        self.sweep_orphans()
                        shutil.rmtree(self.scratch.pop(cid), ignore_errors=True)
                    if cid in self.forget:
                        self.forget.discard(cid)
                    else:
                        self.status[cid] = ({"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status)
                                            else {"exit": os.WEXITSTATUS(status)})

    def sweep_orphans(self) -> None:
        """Without namespaces, processes that escaped a supervisor are reparented here: kill them."""
        known = {p for p, _ in self.alive.values()}
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

    def spawn(self, req: dict, fds: list[int]) -> dict:
        ctrl_fd, out_fd = fds
        used = {slot for _, slot in self.alive.values()}
        slot = next(i for i in range(len(used) + 1) if i not in used)
        cid = self.next_id
        self.next_id += 1
        if self.mode == "none":  # made and removed here: a killed supervisor cannot clean up
            req = dict(req, scratch=tempfile.mkdtemp(prefix="grader-scratch-"))
            self.scratch[cid] = req["scratch"]
            if os.geteuid() == 0:
                os.chown(req["scratch"], self.uid_base + slot, self.uid_base + slot)
        if self.mode == "namespaces":
            # the next child is PID 1 of a brand-new PID namespace: one fork, no supervisor process (a fork
            # of this process, torch and all, costs tens of milliseconds)
            self.jail.new_pid_namespace_for_children(self.pidns_fd)
        try:
            pid = os.fork()
        finally:
            if self.mode == "namespaces" and pid != 0:
                self.jail.own_pid_namespace_for_children(self.pidns_fd)
        if pid == 0:
            code = 70
            try:
                code = (self.student(req, ctrl_fd, out_fd, slot) if self.mode == "namespaces"
                        else self.supervise(req, ctrl_fd, out_fd, slot))
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
            os._exit(code)
        self.alive[cid] = (pid, slot)
        self.deadline[cid] = time.monotonic() + float(req["limits"]["notebook_timeout"]) + \
            float(req["limits"]["load_timeout"]) + 30.0
        return {"id": cid, "pid": pid}

    def student(self, req: dict, ctrl_fd: int, out_fd: int, slot: int) -> int:
        """Namespaces mode: this process is PID 1 of its namespace, and becomes the student's process."""
        from . import child

        os.close(self.pidns_fd)
        self.sock.close()
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(s, signal.SIG_DFL)
        uid = self.uid_base + slot
        ctrl = child.lock_down(ctrl_fd=ctrl_fd, out_fd=out_fd, mode="namespaces", plan=self.plan, uid=uid,
                               gid=uid, limits=req["limits"], scratch=None, forbidden=self.forbidden,
                               unshare=self.jail.NAMESPACES & ~self.jail.CLONE_NEWPID)
        child.serve(ctrl, req["assignment"])
        return 0

    def supervise(self, req: dict, ctrl_fd: int, out_fd: int, slot: int) -> int:
        """The supervisor: own session, new namespaces, then the student's process as PID 1; wait for it."""
        jail = self.jail
        jail.set_parent_death_signal()
        os.setsid()
        self.sock.close()
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(s, signal.SIG_DFL)
        limits = req["limits"]
        mode = self.mode
        uid = gid = self.uid_base + slot
        scratch = None
        if mode == "namespaces":
            jail.unshare(jail.NAMESPACES)
        elif mode == "userns":
            outer_uid, outer_gid = os.getuid(), os.getgid()
            jail.unshare(jail.CLONE_NEWUSER | jail.NAMESPACES)
            jail.write_id_maps(0, outer_uid, 0, outer_gid)
            uid, gid = outer_uid or 1000, outer_gid or 1000
        else:
            jail.prctl(jail.PR_SET_CHILD_SUBREAPER, 1)
            scratch = req["scratch"]
            if os.geteuid() != 0:
                uid, gid = os.getuid(), os.getgid()
        student = os.fork()
        if student == 0:
            from . import child
            code = 71
            try:
                ctrl = child.lock_down(ctrl_fd=ctrl_fd, out_fd=out_fd, mode=mode, plan=self.plan, uid=uid,
                                       gid=gid, limits=limits, scratch=scratch, forbidden=self.forbidden)
                child.serve(ctrl, req["assignment"])
                code = 0
            except BaseException:  # noqa: BLE001 - a lock-down failure: never run the student's code
                try:
                    os.write(2, traceback.format_exc().encode()[-2000:])
                except OSError:
                    pass
            os._exit(code)
        os.close(ctrl_fd)
        os.close(out_fd)
        # a backstop if the grader itself stalls: the submission never outlives its notebook budget by much
        signal.signal(signal.SIGALRM, lambda *a: os.kill(student, signal.SIGKILL))
        signal.alarm(int(limits["notebook_timeout"] + limits["load_timeout"]) + 30)
        while True:
            try:
                _, status = os.waitpid(student, 0)
                break
            except InterruptedError:
                continue
        signal.alarm(0)
        if mode == "none":
            for _ in range(100):  # kill what the student left behind (reparented to us, the subreaper)
                try:
                    os.killpg(student, signal.SIGKILL)
                except OSError:
                    pass
                if jail.kill_descendants(os.getpid()) == 0:
                    break
                while True:
                    try:
                        if os.waitpid(-1, os.WNOHANG)[0] == 0:
                            break
                    except ChildProcessError:
                        break
                time.sleep(0.01)
        return (128 + os.WTERMSIG(status)) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)

    def handle(self, req: dict, fds: list[int]) -> dict:
        op = req.get("op")
        if op == "spawn":
            try:
                return self.spawn(req, fds)
            finally:
                for fd in fds:
                    os.close(fd)
        for fd in fds:
            os.close(fd)
        if op == "kill":
            cid = int(req["id"])
            if cid in self.alive:
                try:
                    os.kill(self.alive[cid][0], signal.SIGKILL)
                except OSError:
                    pass
                if req.get("forget", True):
                    self.forget.add(cid)
            self.status.pop(cid, None)
            return {"ok": True}
        if op == "reap":
            cid = int(req["id"])
            end = time.monotonic() + float(req.get("timeout", 2.0))
            while cid in self.alive and time.monotonic() < end:
                self.reap()
                if cid in self.alive:
                    time.sleep(0.002)
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
            for cid, end in list(self.deadline.items()):  # a backstop if the grader itself stalls
                if now > end and cid in self.alive:
                    try:
                        os.kill(self.alive[cid][0], signal.SIGKILL)
                    except OSError:
                        pass
            if self.mode == "none" and time.monotonic() - last_sweep > 0.2:
                self.sweep_orphans()
                last_sweep = time.monotonic()
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
        for pid, _slot in list(self.alive.values()):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.monotonic() + 5
        while self.alive and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.005)
        if self.mode == "none":
            for _ in range(3):
                self.sweep_orphans()
                time.sleep(0.01)
            for path in self.scratch.values():
                shutil.rmtree(path, ignore_errors=True)
        try:
            os.rmdir(self.mountpoint)
        except OSError:
            pass


def main(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    jail_error = None
    try:
        config = json.loads(sock.recv(_MAX_MSG))
        _preload(config.get("extra_probes") or {})
        server = Server(sock, config)
        server.mode, warning = server.probe_isolation()
    except Exception as exc:  # noqa: BLE001
        jail_error = f"{type(exc).__name__}: {exc}"
        sock.send(json.dumps({"error": jail_error, "trace": traceback.format_exc()[-3000:]}).encode())
        return
    sock.send(json.dumps({"mode": server.mode, "warning": warning, "pid": os.getpid(),
                          "forbidden": server.forbidden, "binds": server.plan["binds"]}).encode())
    server.run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
