"""A seccomp filter for the student's process: the system calls that change namespaces, mounts, privileges or
the kernel are refused with EPERM (``clone3`` with ENOSYS, so that libc falls back to ``clone``, whose flags
the filter can read).

No library: a classic BPF program of a few dozen instructions, installed with ``prctl(PR_SET_SECCOMP)`` after
``PR_SET_NO_NEW_PRIVS``; it is inherited by every thread and process the student starts and cannot be
removed. The syscall numbers are tables for x86_64 and aarch64 (``tests/test_sandbox.py`` checks them
against libseccomp's where that library is on the machine).
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

__all__ = ["DENIED", "install", "syscall_numbers", "supported"]

#: refused outright: namespaces, mounts, tracing, keys, BPF, kernel modules, raw I/O on other processes
DENIED = (
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "ptrace", "process_vm_readv", "process_vm_writev",
    "pidfd_getfd", "kcmp", "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon",
    "swapoff", "acct", "quotactl", "syslog", "vhangup", "open_by_handle_at", "name_to_handle_at",
    "fanotify_init", "io_uring_setup", "io_uring_enter", "io_uring_register", "lookup_dcookie",
    "sethostname", "setdomainname", "personality",
)

_X86_64 = {
    "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
    "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
    "pidfd_getfd": 438, "kcmp": 312, "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321,
    "perf_event_open": 298, "userfaultfd": 323, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "kexec_load": 246, "kexec_file_load": 320, "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163,
    "quotactl": 179, "syslog": 103, "vhangup": 153, "open_by_handle_at": 304, "name_to_handle_at": 303,
    "fanotify_init": 300, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "lookup_dcookie": 212, "sethostname": 170, "setdomainname": 171, "personality": 135,
    "clone": 56, "clone3": 435,
}
_AARCH64 = {
    "unshare": 97, "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
    "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
    "pidfd_getfd": 438, "kcmp": 272, "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280,
    "perf_event_open": 241, "userfaultfd": 282, "init_module": 105, "finit_module": 273, "delete_module": 106,
    "kexec_load": 104, "kexec_file_load": 294, "reboot": 142, "swapon": 224, "swapoff": 225, "acct": 89,
    "quotactl": 60, "syslog": 116, "vhangup": 58, "open_by_handle_at": 265, "name_to_handle_at": 264,
    "fanotify_init": 262, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "lookup_dcookie": 18, "sethostname": 161, "setdomainname": 162, "personality": 92,
    "clone": 220, "clone3": 435,
}
_TABLES = {"x86_64": (0xC000003E, _X86_64), "aarch64": (0xC00000B7, _AARCH64)}

# clone's namespace flags: a new namespace is refused, plain fork and threads are not
_CLONE_NEW = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

# classic BPF
_LD_W_ABS, _JEQ_K, _JSET_K, _JGE_K, _RET_K = 0x20, 0x15, 0x45, 0x35, 0x06
_ALLOW, _KILL = 0x7FFF0000, 0x80000000
_ERRNO = 0x00050000
_OFF_NR, _OFF_ARCH, _OFF_ARG0 = 0, 4, 16
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


def supported() -> bool:
    return platform.machine() in _TABLES


def syscall_numbers(machine: str | None = None) -> dict[str, int]:
    """The table of syscall numbers the filter uses on ``machine`` (default: this one)."""
    return dict(_TABLES[machine or platform.machine()][1])


def _program(arch: int, table: dict[str, int]) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions."""
    prog = [(_LD_W_ABS, 0, 0, _OFF_ARCH), (_JEQ_K, 1, 0, arch), (_RET_K, 0, 0, _KILL),
            (_LD_W_ABS, 0, 0, _OFF_NR)]
    if platform.machine() == "x86_64":  # the x32 ABI's numbers, which would dodge the table
        prog += [(_JGE_K, 0, 1, 0x40000000), (_RET_K, 0, 0, _ERRNO | errno.EPERM)]
    for name in DENIED:
        prog += [(_JEQ_K, 0, 1, table[name]), (_RET_K, 0, 0, _ERRNO | errno.EPERM)]
    prog += [(_JEQ_K, 0, 1, table["clone3"]), (_RET_K, 0, 0, _ERRNO | errno.ENOSYS)]
    # clone with a CLONE_NEW* flag (the flags are its first argument, low 32 bits on a little-endian ABI)
    prog += [(_JEQ_K, 0, 3, table["clone"]), (_LD_W_ABS, 0, 0, _OFF_ARG0),
             (_JSET_K, 0, 1, _CLONE_NEW), (_RET_K, 0, 0, _ERRNO | errno.EPERM)]
    prog += [(_RET_K, 0, 0, _ALLOW)]
    return prog


def install() -> None:
    """Install the filter on this process (after ``PR_SET_NO_NEW_PRIVS``); raise OSError if the kernel
    refuses it, RuntimeError on a machine with no table."""
    if not supported():
        raise RuntimeError(f"seccomp: no syscall table for {platform.machine()}")
    arch, table = _TABLES[platform.machine()]
    prog = _program(arch, table)
    raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {errno.errorcode.get(err, err)}")
