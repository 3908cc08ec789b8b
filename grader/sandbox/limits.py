"""What one submission may use: the sandbox's limits, in one dataclass with units."""

from __future__ import annotations

import dataclasses

MiB = 2**20


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-submission limits. Times in seconds, sizes in bytes.

    The timeouts are wall-clock (a sleeping or blocked student is caught too); ``cpu_seconds`` bounds the CPU
    time of each sandboxed process (RLIMIT_CPU, a backstop against a busy loop that outlives its timeout).
    """

    run_timeout: float = 10.0          #: one probe call (one ``sub.run``)
    load_timeout: float = 30.0         #: executing the notebook's graded cells (top-level code)
    notebook_timeout: float = 120.0    #: everything for one notebook, restarts included
    cpu_seconds: int = 120             #: RLIMIT_CPU of each sandboxed process
    memory_bytes: int = 1024 * MiB     #: address space on top of what the pre-imported libraries take
    file_bytes: int = 16 * MiB         #: RLIMIT_FSIZE: largest file the student can write
    scratch_bytes: int = 64 * MiB      #: size of the writable /scratch, /tmp and /dev/shm (each)
    nproc: int = 32                    #: processes and threads of the submission (RLIMIT_NPROC)
    output_bytes: int = 16 * 1024      #: captured stdout+stderr kept (the rest is counted and dropped)
    message_bytes: int = 64 * MiB      #: largest reply the grader reads from the student's process

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise ValueError(f"Limits.{f.name}: expected a positive number, got {v!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Limits:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise TypeError(f"Limits: unknown limit(s) {sorted(unknown)}; expected some of {sorted(names)}")
        return cls(**d)
