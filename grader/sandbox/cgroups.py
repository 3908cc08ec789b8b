"""Control groups per submission: a CPU share, memory and a process count that neighbours cannot take.

Resource limits (``setrlimit``) bound each process; a control group bounds a submission as a whole, so that
a notebook that starts 31 busy processes gets one CPU's worth of time, not 31 of the machine's, and the
honest notebook graded beside it keeps its pace. The fork server (as root) makes one group per submission
under a group of its own and the submission's first process joins it before anything of the student's runs.

Both cgroup layouts are supported: v2 (``cpu.max``, ``memory.max``, ``pids.max`` in one unified hierarchy)
and v1 (``cpu.cfs_quota_us``, ``memory.limit_in_bytes``, ``pids.max`` in separate hierarchies), whichever
the machine mounts with those controllers. Where neither can be written (not root, a container without
delegation) ``detect`` says why, and the sandbox runs with its other limits only.
"""

from __future__ import annotations

import os
import signal
import time

__all__ = ["Cgroups", "Group", "detect"]

_CONTROLLERS = ("cpu", "memory", "pids")
_PERIOD_US = 100_000


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, options) of the cgroup file systems, from /proc/self/mountinfo."""
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                pre, _, post = line.partition(" - ")
                fields, post_fields = pre.split(), post.split()
                if len(post_fields) >= 3 and post_fields[0] in ("cgroup", "cgroup2"):
                    found.append((fields[4], post_fields[0], set(post_fields[2].split(","))))
    except OSError:
        pass
    return found


def _own(version: str, controller: str = "") -> str:
    """This process's cgroup path in a hierarchy (``/`` when unknown), from /proc/self/cgroup."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, names, path = line.rstrip("\n").split(":", 2)
                if version == "v2" and names == "" or controller and controller in names.split(","):
                    return path or "/"
    except OSError:
        pass
    return "/"


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class Group:
    """One submission's group: ``dirs`` (one per hierarchy), which its first process joins."""

    def __init__(self, dirs: list[str], version: str):
        self.dirs, self.version = dirs, version

    def join(self) -> None:
        """Move the calling process into the group (before it runs anything of the student's)."""
        for d in self.dirs:
            _write(os.path.join(d, "cgroup.procs"), "0")

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    found |= {int(x) for x in f.read().split()}
            except OSError:
                pass
        return found

    def kill(self) -> None:
        """SIGKILL every process in the group."""
        if self.version == "v2" and os.path.exists(os.path.join(self.dirs[0], "cgroup.kill")):
            try:
                _write(os.path.join(self.dirs[0], "cgroup.kill"), "1")
                return
            except OSError:
                pass
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def remove(self, timeout: float = 2.0) -> None:
        """Kill what is left and remove the group's folders (empty cgroups only can be removed)."""
        end = time.monotonic() + timeout
        for d in self.dirs:
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > end:
                        break
                    self.kill()
                    time.sleep(0.01)

    def cpu_throttled(self) -> int:
        """How many scheduling periods the group's CPU quota held it back (``nr_throttled``)."""
        d = self.dirs[0] if self.version == "v2" else next((x for x in self.dirs if "/cpu" in x), "")
        try:
            with open(os.path.join(d, "cpu.stat")) as f:
                stats = dict(line.split() for line in f if line.strip())
            return int(stats.get("nr_throttled", 0))
        except (OSError, ValueError):
            return 0


class Cgroups:
    """The fork server's parent group, under which it makes one ``Group`` per submission."""

    def __init__(self, version: str, bases: dict[str, str]):
        self.version, self.bases = version, bases  # controller -> this server's folder (v2: one for all)

    def create(self, name: str, *, cpus: float, memory_bytes: int, pids: int) -> Group:
        dirs = []
        values = {"cpu": {"v2": ("cpu.max", f"{int(cpus * _PERIOD_US)} {_PERIOD_US}"),
                          "v1": ("cpu.cfs_quota_us", str(int(cpus * _PERIOD_US)))},
                  "memory": {"v2": ("memory.max", str(memory_bytes)),
                             "v1": ("memory.limit_in_bytes", str(memory_bytes))},
                  "pids": {"v2": ("pids.max", str(pids)), "v1": ("pids.max", str(pids))}}
        folders = {self.bases[c] for c in _CONTROLLERS}
        for base in sorted(folders):
            d = os.path.join(base, name)
            os.makedirs(d, exist_ok=True)
            dirs.append(d)
        group = Group(dirs, self.version)
        try:
            for controller in _CONTROLLERS:
                d = os.path.join(self.bases[controller], name)
                if self.version == "v1" and controller == "cpu":
                    _write(os.path.join(d, "cpu.cfs_period_us"), str(_PERIOD_US))
                file, value = values[controller][self.version]
                _write(os.path.join(d, file), value)
        except OSError:
            group.remove()
            raise
        return group

    def close(self) -> None:
        for base in set(self.bases.values()):
            for entry in os.listdir(base) if os.path.isdir(base) else ():
                if os.path.isdir(os.path.join(base, entry)):
                    Group([os.path.join(base, entry)], self.version).remove(0.5)
            try:
                os.rmdir(base)
            except OSError:
                pass


def detect(tag: str) -> tuple[Cgroups | None, str | None]:
    """This machine's cgroups for the sandbox, under a folder named ``tag``; or (None, why not)."""
    if os.geteuid() != 0:
        return None, "not running as root"
    mounts = _mounts()
    why = []
    for point, fstype, _ in mounts:  # v2: one hierarchy with the three controllers available
        if fstype != "cgroup2":
            continue
        own = os.path.join(point, _own("v2").lstrip("/"))
        try:
            with open(os.path.join(own, "cgroup.controllers")) as f:
                available = set(f.read().split())
        except OSError:
            continue
        if not set(_CONTROLLERS) <= available:
            why.append(f"cgroup v2 at {point} lacks {sorted(set(_CONTROLLERS) - available)}")
            continue
        base = os.path.join(own, tag)
        try:
            os.makedirs(base, exist_ok=True)
            _write(os.path.join(base, "cgroup.subtree_control"), " ".join(f"+{c}" for c in _CONTROLLERS))
            return Cgroups("v2", {c: base for c in _CONTROLLERS}), None
        except OSError as exc:
            why.append(f"cgroup v2 at {point}: {exc.strerror or exc}")
            try:
                os.rmdir(base)
            except OSError:
                pass
    bases = {}
    for controller in _CONTROLLERS:  # v1: a hierarchy per controller
        point = next((p for p, t, opts in mounts if t == "cgroup" and controller in opts), None)
        if point is None:
            why.append(f"no cgroup v1 hierarchy with {controller}")
            break
        base = os.path.join(point, _own("v1", controller).lstrip("/"), tag)
        try:
            os.makedirs(base, exist_ok=True)
        except OSError as exc:
            why.append(f"cgroup v1 {controller}: {exc.strerror or exc}")
            break
        bases[controller] = base
    if len(bases) == len(_CONTROLLERS):
        return Cgroups("v1", bases), None
    for base in bases.values():
        try:
            os.rmdir(base)
        except OSError:
            pass
    return None, "; ".join(why) or "no cgroup file system"
