"""A throwaway PostgreSQL cluster for the tests: Debian's ``initdb`` and ``pg_ctl`` in a temporary folder.

The server listens on a Unix socket in its own folder only (no TCP port, so two test runs on one machine
never collide) and asks for a password (scram-sha-256, also on the socket), so a wrong password is refused
as it would be by a course's real server. PostgreSQL refuses to run as root: as root the cluster runs as the
``postgres`` user that Debian's package creates (``nobody`` where there is none), in a folder under the system
temporary directory that this user owns (pytest's own temporary folders are closed to other users).

``make test`` installs Debian's ``postgresql`` package when ``initdb`` is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Cluster", "cluster", "find_bindir"]

SUPERUSER = "grader"
#: Debian installs the server's programs outside PATH, in /usr/lib/postgresql/<major>/bin
_DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"


def find_bindir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: Debian's newest major version, else the one on PATH."""
    found = [Path(p) for p in glob.glob(_DEBIAN_BINDIRS) if os.access(os.path.join(p, "initdb"), os.X_OK)]
    if found:
        return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


@dataclasses.dataclass
class Cluster:
    """A running throwaway cluster (see ``cluster()``); ``url`` gives SQLAlchemy URLs into it."""

    bindir: Path
    folder: Path          # holds data/, the socket and the log; owned by ``user``
    user: str | None      # the system user the server runs as (None: ours)
    password: str

    @property
    def socket_dir(self) -> Path:
        return self.folder / "socket"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def url(self, database: str, *, password: str | None = None, socket_dir: Path | None = None) -> str:
        """A ``postgresql://`` URL (SQLAlchemy's default driver, psycopg) to ``database`` over the socket."""
        pw = self.password if password is None else password
        return f"postgresql://{SUPERUSER}:{pw}@/{database}?host={socket_dir or self.socket_dir}"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        kw = {}
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            kw = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        # a clean environment: no PG* variable of the caller's (PGDATA, PGPORT, ...) may redirect the server
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}
        return subprocess.run([str(self.bindir / args[0]), *args[1:]], cwd=self.folder, env=env,
                              capture_output=True, text=True, timeout=timeout, **kw)

    def _check(self, proc: subprocess.CompletedProcess, what: str) -> None:
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL {what} failed ({proc.returncode}): {proc.stdout[-2000:]}"
                               f"{proc.stderr[-2000:]}\n{log}")

    def start(self) -> None:
        # fsync off: a throwaway cluster; max_connections: N graders, the tests' own sessions and a margin
        opts = (f"-k {self.socket_dir} -c listen_addresses= -c fsync=off -c full_page_writes=off "
                f"-c max_connections=60")
        self._check(self._run("pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.log), "-w",
                              "-t", "120", "-o", opts, "start"), "start")

    def stop(self) -> None:
        self._check(self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "-t", "120",
                              "stop"), "stop")

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.folder / "data"), "status").returncode == 0

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database, empty or a copy of ``template`` (a database nobody is connected to); its URL."""
        import psycopg

        for what, value in (("name", name), ("template", template)):
            if value is not None and not value.isidentifier():
                raise ValueError(f"{what}: expected a plain identifier, got {value!r}")
        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(host=str(self.socket_dir), dbname="postgres", user=SUPERUSER,
                             password=self.password, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)

    def query(self, database: str, sql: str, params=()) -> list[tuple]:
        """Rows of one read-only query, through the driver directly (not through nbgrader or SQLAlchemy)."""
        import psycopg

        with psycopg.connect(host=str(self.socket_dir), dbname=database, user=SUPERUSER,
                             password=self.password) as conn:
            return list(conn.execute(sql, params or None).fetchall())


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists to run "
                       "PostgreSQL as (it refuses to run as root)")


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """Start a throwaway cluster (initdb + pg_ctl start); stop it and remove its folder afterwards."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL's initdb was not found (looked in /usr/lib/postgresql/*/bin and on "
                           "PATH): install Debian's postgresql package (`make test` does)")
    user = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="pg-test-"))  # short: a socket path has at most 107 bytes
    c = Cluster(bindir, folder, user, secrets.token_hex(12))
    try:
        (folder / "socket").mkdir()
        pwfile = folder / "pwfile"
        pwfile.write_text(c.password + "\n")
        if user is not None:
            entry = pwd.getpwnam(user)
            for p in (folder, folder / "socket", pwfile):
                os.chown(p, entry.pw_uid, entry.pw_gid)
        c._check(c._run("initdb", "-D", str(folder / "data"), "-U", SUPERUSER, f"--pwfile={pwfile}",
                        "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync",
                        "--no-instructions"),
                 "initdb")
        pwfile.unlink()
        c.start()
        try:
            yield c
        finally:
            if c.running():
                c.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
