"""A PostgreSQL server of a test's own, to stop and start again: the outage tests must never
touch the server other tests share (TEST_DATABASE_URL), so each starts a throwaway one here.

`initdb` into a temporary directory, `pg_ctl start` on a free port with its Unix socket in that
directory (no TCP). PostgreSQL refuses to run as root: as root (CI), every PostgreSQL command
runs as the `postgres` user (`runuser -u postgres --`), which owns the directory. The binaries
are found under /usr/lib/postgresql/*/bin (or PG_BIN); without them `OwnPostgres.missing()`
says why, for a skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _bin_dir() -> Path | None:
    candidates = [os.environ["PG_BIN"]] if os.environ.get("PG_BIN") else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OwnPostgres:
    """One throwaway server: `start()`, `stop()` (fast: every connection is cut), `start()`
    again, `destroy()` at the end (stopped whatever happens)."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        assert bin_dir is not None, OwnPostgres.missing()
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="motion-bot-own-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            postgres = pwd.getpwnam("postgres")
            os.chown(self.root, postgres.pw_uid, postgres.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @staticmethod
    def missing() -> str | None:
        """Why no server can be started here, or None."""
        if _bin_dir() is None:
            return "no PostgreSQL binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root without a `postgres` user to run PostgreSQL as"
            if shutil.which("runuser") is None:
                return "running as root without runuser"
        return None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.root}&port={self.port}"

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = (
            f"-k {self.root} -p {self.port} -c listen_addresses='' -c fsync=off"
            " -c max_connections=100"
        )
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-o", options, "start")

    def stop(self) -> None:
        """`pg_ctl stop -m fast`: every session is cut, as in a restart or failover."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
