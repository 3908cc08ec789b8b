"""Linux isolation for the sandbox: namespaces, a private root, resource limits, dropped privileges.

Only the standard library and libc (through ctypes: Python 3.11 has no ``os.unshare``). Everything here
runs in the fork server's children, between ``fork`` and the student's first line, so it allocates little
and never imports anything that is not already loaded.

The private root is an allow-list, not a block-list: a fresh tmpfs that holds only the system's libraries
(``/usr``, ``/lib*``), the Python installation and its virtual environment, read-only, a new ``/proc`` for the
submission's own PID namespace, a minimal ``/dev`` and two small writable tmpfs (``/scratch``, the working
directory, and ``/tmp``). The course directory, the reference, the hidden suites and other students' files are
simply not there; copies of ``tricksref`` or ``grader`` that sit inside an allowed folder (a non-editable
install in site-packages) are covered by an empty tmpfs.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import signal
import tempfile

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38

_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217}.get(platform.machine())
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91, "ppc64le": 184, "s390x": 185}.get(platform.machine())

#: the sandbox's private namespaces; a network namespace has only a loopback device, and it is down
NAMESPACES = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS


class JailError(OSError):
    """An isolation step failed (the machine does not allow it, or a path is missing)."""


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise JailError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    enc = [None if s is None else s.encode() for s in (source, target, fstype, data)]
    _check(_libc.mount(enc[0], enc[1], enc[2], flags, enc[3]), f"mount {target}")


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def prctl(option: int, arg: int = 0) -> None:
    _check(_libc.prctl(option, arg, 0, 0, 0), f"prctl {option}")


def pivot_root(new_root: str, put_old: str) -> None:
    if _SYS_PIVOT_ROOT is None:
        raise JailError(errno.ENOSYS, f"pivot_root: unknown syscall number on {platform.machine()}")
    _check(int(_libc.syscall(_SYS_PIVOT_ROOT, new_root.encode(), put_old.encode())), "pivot_root")


def new_pid_namespace_for_children(own_ns_fd: int) -> None:
    """Make this process's next child PID 1 of a brand-new PID namespace (this process stays where it is).

    ``unshare(CLONE_NEWPID)`` works once per namespace a process's children go to; ``setns`` back to its own
    namespace first makes it work for every child.
    """
    own_pid_namespace_for_children(own_ns_fd)
    unshare(CLONE_NEWPID)


def own_pid_namespace_for_children(own_ns_fd: int) -> None:
    """Children of this process go to its own PID namespace again."""
    _check(_libc.setns(own_ns_fd, CLONE_NEWPID), "setns")


def drop_capabilities() -> None:
    """Empty the effective, permitted and inheritable capability sets (capset, version 3)."""
    if _SYS_CAPSET is None:
        raise JailError(errno.ENOSYS, "capset: unknown syscall number")

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    hdr = Header(0x20080522, 0)
    data = (Data * 2)()
    _check(int(_libc.syscall(_SYS_CAPSET, ctypes.byref(hdr), ctypes.byref(data))), "capset")


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    prctl(PR_SET_PDEATHSIG, int(sig))


# ----------------------------------------------------------------------------------------------------------
# the private root


def _mkdirs(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _bind(root: str, src: str, *, writable: bool = False) -> None:
    """Bind ``src`` at the same path under ``root``, read-only unless ``writable``."""
    dst = root + src
    if os.path.isdir(src):
        _mkdirs(dst)
    else:
        _mkdirs(os.path.dirname(dst))
        if not os.path.exists(dst):
            open(dst, "w").close()
    mount(src, dst, None, MS_BIND | MS_REC)
    if not writable:
        mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _hide(root: str, path: str) -> None:
    """Cover ``path`` (inside an already bound folder) with something empty."""
    dst = root + path
    if os.path.isdir(dst):
        mount("tmpfs", dst, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")
    elif os.path.exists(dst):
        mount("/dev/null", dst, None, MS_BIND)


def build_root(plan: dict, *, uid: int, gid: int, scratch_bytes: int, mount_proc: bool = True) -> None:
    """Turn the current (private) mount namespace into the sandbox's file system and enter it.

    ``plan`` comes from ``root_plan()`` (computed once in the fork server): ``mountpoint`` (an empty folder),
    ``symlinks`` (top-level names such as ``/lib -> usr/lib``), ``binds`` (read-only folders and files) and
    ``hide`` (paths inside them to cover). Must run as root of the mount namespace, in the submission's new
    PID namespace (for ``/proc``).
    """
    root = plan["mountpoint"]
    # nothing done here may propagate back to the instructor's mounts
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=2m,mode=0755")
    for name, target in plan["symlinks"]:
        os.symlink(target, root + name)
    small = max(1 << 20, scratch_bytes)

    def writable_tmpfs(path, mode):
        _mkdirs(root + path)
        mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV,
              f"size={small},nr_inodes=4096,mode={mode},uid={uid},gid={gid}")

    # the writable folders before the binds: a Python folder under /tmp (a virtual environment in a clone of
    # the course under /tmp) is bound on top of the sandbox's /tmp, not covered by it
    for path, mode in (("/tmp", "1777"), ("/scratch", "0700")):
        writable_tmpfs(path, mode)
    for src in plan["binds"]:
        if os.path.exists(src):
            _bind(root, src)
    for path in plan["hide"]:
        _hide(root, path)
    # /dev: the harmless character devices only
    _mkdirs(root + "/dev")
    mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    for dev in ("null", "zero", "full", "random", "urandom"):
        if os.path.exists("/dev/" + dev):
            _bind(root, "/dev/" + dev, writable=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    writable_tmpfs("/dev/shm", "1777")
    if mount_proc:
        _mkdirs(root + "/proc")
        try:
            mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        except JailError:
            pass  # some containers forbid a new proc; Python runs without one
    _mkdirs(root + "/.old")
    pivot_root(root, root + "/.old")
    os.chdir("/")
    umount("/.old", MNT_DETACH)
    os.rmdir("/.old")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir("/scratch")


def root_plan(mountpoint: str, python_paths: list[str], forbidden: list[str]) -> dict:
    """Decide, once, what the sandbox's root holds (see ``build_root``).

    ``python_paths`` are the folders Python needs (its prefix, the virtual environment, the site-packages in
    ``sys.path``); ``forbidden`` the folders that must not be visible (the project, wherever ``tricksref`` or
    the grader live). A Python folder that contains a forbidden one is not bound, nor one that contains a
    folder the sandbox makes its own (``/tmp``, the temporary directory that holds the other submissions'
    scratch folders, ``/scratch``, ``/dev``, ``/proc``: a script run from /tmp puts /tmp on ``sys.path``); a
    forbidden one inside a bound folder is hidden.
    """
    forbidden = [os.path.realpath(p) for p in forbidden]
    reserved = {"/tmp", "/scratch", "/dev", "/proc", os.path.realpath(tempfile.gettempdir())}
    symlinks, binds = [], []
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            symlinks.append((top, os.readlink(top)))
        elif os.path.isdir(top):
            binds.append(top)
    for f in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "hosts",
              "mime.types", "os-release"):
        if os.path.exists("/etc/" + f):
            binds.append("/etc/" + f)

    def inside(path, folder):
        return path == folder or path.startswith(folder.rstrip("/") + "/")

    for p in python_paths:
        if not p or not os.path.isdir(p):
            continue
        real = os.path.realpath(p)
        if any(inside(f, real) for f in forbidden):  # binding it would show the forbidden folder
            continue
        if any(inside(r, real) or inside(r, p) for r in reserved):  # it would cover the sandbox's own
            continue
        if any(inside(p, b) or inside(real, b) for b in binds):
            continue
        binds.append(p)
    hide = []
    for b in binds:
        for f in forbidden:
            if inside(f, os.path.realpath(b)) and f != os.path.realpath(b):
                hide.append(b.rstrip("/") + f[len(os.path.realpath(b).rstrip("/")):])
    return {"mountpoint": mountpoint, "symlinks": symlinks, "binds": binds, "hide": hide}


# ----------------------------------------------------------------------------------------------------------
# limits and identity


def set_limits(*, cpu_seconds: int, address_space: int, file_bytes: int, nproc: int,
               nofile: int = 256) -> None:
    """Apply the per-submission resource limits (soft = hard: the student cannot raise them)."""
    limits = [(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1)),
              (resource.RLIMIT_FSIZE, (file_bytes, file_bytes)),
              (resource.RLIMIT_NPROC, (nproc, nproc)),
              (resource.RLIMIT_CORE, (0, 0)),
              (resource.RLIMIT_NOFILE, (nofile, nofile)),
              (resource.RLIMIT_AS, (address_space, address_space))]
    if hasattr(resource, "RLIMIT_MSGQUEUE"):
        limits.append((resource.RLIMIT_MSGQUEUE, (0, 0)))
    for which, value in limits:
        resource.setrlimit(which, value)


def address_space_now() -> int:
    """This process's current virtual size in bytes (the base the memory limit is added to)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def drop_privileges(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` with no supplementary groups and no capabilities, for good."""
    if os.geteuid() == 0 and uid != 0:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    else:
        drop_capabilities()
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    # a credential change makes the process non-dumpable, which hands its /proc files to root; give them back
    prctl(PR_SET_DUMPABLE, 1)


def write_id_maps(inner_uid: int, outer_uid: int, inner_gid: int, outer_gid: int) -> None:
    """Map one user and one group into a user namespace this process just created."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{inner_uid} {outer_uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{inner_gid} {outer_gid} 1")


def kill_descendants(ancestor: int) -> int:
    """SIGKILL every process whose parent is ``ancestor`` (a subreaper), by walking /proc; return how many."""
    killed = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == ancestor:
            try:
                os.kill(int(name), signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed
