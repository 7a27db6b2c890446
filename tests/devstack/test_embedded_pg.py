"""Embedded PostgreSQL needs a password, keeps it private, and, run as root, widens no permission
outside its data directory (security issue, items 1 and 2)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devstack import embedded
from devstack.embedded import EmbeddedPostgres, redact
from settings import create_private, open_private_log, write_private

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root drops to the service account")


@pytest.fixture(autouse=True)
def no_password_from_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """libpq must not find a password on its own: only the URL may carry it."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")


@pytest.fixture
def private_parent() -> Iterator[Path]:
    """A 0700 folder, as a private checkout or mkdtemp makes them."""
    folder = Path(tempfile.mkdtemp(prefix="bizsupport-sec-pg-"))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def without_password(server: EmbeddedPostgres, db: str = "bizsupport") -> str:
    return f"postgresql://postgres@127.0.0.1:{server.port}/{db}"


def refused(url: str) -> str:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(url, connect_timeout=5).close()
    return str(caught.value)


def modes(paths: list[Path]) -> dict[Path, tuple[int, int, int]]:
    return {p: (p.stat().st_mode, p.stat().st_uid, p.stat().st_gid) for p in paths}


def test_connections_need_the_password(private_parent: Path) -> None:
    server = EmbeddedPostgres(private_parent / "pgdata")
    url = server.start()
    try:
        assert server.password and f":{server.password}@" in url
        assert server.password not in server.display_url
        assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
        assert server.password_file.read_text().strip() == server.password
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            method = conn.execute("SHOW password_encryption").fetchone()
            assert method == ("scram-sha-256",)
        assert "password" in refused(without_password(server))
        assert "password" in refused(without_password(server, "postgres"))
        wrong = url.replace(f":{server.password}@", ":not-the-password@")
        assert "password authentication failed" in refused(wrong)
        hba = (server.pgdata / "pg_hba.conf").read_text()
        rules = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
        assert rules and all(rule[-1] == "scram-sha-256" for rule in rules), hba
    finally:
        server.destroy()
    assert not server.password_file.exists()


def test_a_cluster_without_a_password_gets_one(private_parent: Path) -> None:
    """A cluster made before passwords (trust), or whose password file was lost: the next start
    sets a new password (in single-user mode, never through an open `trust` window)."""
    server = EmbeddedPostgres(private_parent / "pgdata")
    server.start()
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
    server.stop()
    old = server.password
    (server.pgdata / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
    server.password_file.unlink()
    try:
        again = EmbeddedPostgres(private_parent / "pgdata")
        url = again.start()
        assert again.password != old
        with psycopg.connect(url) as conn:  # same cluster, data kept
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
        refused(without_password(again))
        refused(url.replace(f":{again.password}@", f":{old}@"))
    finally:
        again.destroy()


@as_root
def test_as_root_nothing_outside_the_data_directory_is_widened(private_parent: Path) -> None:
    checkout = private_parent / "clone"
    checkout.mkdir(mode=0o700)
    ancestors = [checkout, *checkout.parents]
    wheel = embedded.POSTGRES_BIN_PATH
    venv_side = [wheel, *wheel.parents]
    before = modes(ancestors + venv_side)
    server = EmbeddedPostgres(checkout / ".data" / "postgres")
    url = server.start()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
            assert conn.execute("SELECT x FROM t").fetchone() == (1,)
        assert modes(ancestors + venv_side) == before
        assert stat.S_IMODE(checkout.stat().st_mode) == 0o700
        assert stat.S_IMODE(private_parent.stat().st_mode) == 0o700

        # the server runs as the service account, with no supplementary group of root's
        assert server.process is not None
        status = Path(f"/proc/{server.process.pid}/status").read_text().splitlines()
        fields = {line.split(":")[0]: line.split(":", 1)[1].split() for line in status}
        account = embedded.pwd.getpwnam(embedded.SYSTEM_USER)
        assert fields["Uid"][0] == str(account.pw_uid) != "0"
        assert fields["Gid"][0] == str(account.pw_gid) != "0"
        assert fields.get("Groups", []) == []
        # its binaries and cluster sit where that account may go, made by us, not widened
        root = embedded.runtime_root()
        assert server.pgdata.is_symlink()
        data = server.pgdata.resolve()
        assert data.parent == root
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert data.stat().st_uid == account.pw_uid
        assert stat.S_IMODE(root.stat().st_mode) == 0o711 and root.stat().st_uid == 0
        assert Path(os.readlink(f"/proc/{server.process.pid}/exe")).is_relative_to(root)
        assert stat.S_IMODE((data / "server.log").stat().st_mode) == 0o600

        server.stop()  # a restart finds its cluster and its password again
        assert server.start() == url
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT x FROM t").fetchone() == (1,)
    finally:
        server.destroy()
    assert not data.exists()
    assert modes(ancestors + venv_side) == before


@as_root
def test_as_root_a_cluster_made_in_place_is_moved_not_widened(private_parent: Path) -> None:
    """A cluster the old code made in the checkout (owned by the service account) is moved to
    the runtime folder and keeps its data."""
    server = EmbeddedPostgres(private_parent / "pgdata")
    server.start()
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
    server.stop()
    data = server.pgdata.resolve()
    server.pgdata.unlink()
    shutil.move(data, server.pgdata)  # as the old code left it
    (data.parent / f"{data.name}.origin").unlink()
    server.password_file.unlink()
    before = modes([private_parent, *private_parent.parents])
    again = EmbeddedPostgres(private_parent / "pgdata")
    try:
        with psycopg.connect(again.start()) as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
        assert again.pgdata.is_symlink()
        assert modes([private_parent, *private_parent.parents]) == before
    finally:
        again.destroy()


@as_root
def test_as_root_clusters_of_finished_test_runs_are_collected(private_parent: Path) -> None:
    temporary = Path(tempfile.mkdtemp(prefix="bizsupport-sec-gone-"))
    gone = EmbeddedPostgres(temporary / "pgdata")
    gone.start()
    gone.stop()
    data = gone.pgdata.resolve()
    shutil.rmtree(temporary)  # as the suite's conftest does: no destroy()
    assert data.is_dir()
    server = EmbeddedPostgres(private_parent / "pgdata")
    try:
        server.start()
        assert not data.exists()
        assert not data.with_name(f"{data.name}.origin").exists()
    finally:
        server.destroy()


def test_files_in_the_cluster_are_never_followed_elsewhere(private_parent: Path) -> None:
    """The service account owns the cluster's folder: a symlink or hard link it plants there
    must not make us write (or chmod) another file."""
    victim = private_parent / "victim"
    victim.write_text("untouched\n")
    victim.chmod(0o644)
    server = EmbeddedPostgres(private_parent / "pgdata")
    server.start()
    server.stop()
    data = server.pgdata.resolve()
    try:
        (data / "pg_hba.conf").unlink()
        (data / "pg_hba.conf").symlink_to(victim)
        with pytest.raises(RuntimeError, match="not a plain file"):
            server.start()
        (data / "pg_hba.conf").unlink()
        os.link(victim, data / "pg_hba.conf")
        with pytest.raises(RuntimeError, match="not a plain file"):
            server.start()
        (data / "pg_hba.conf").unlink()
        (data / "pg_hba.conf").write_text("")
        (data / "server.log").unlink()
        (data / "server.log").symlink_to(victim)
        with pytest.raises(OSError):
            server.start()
        assert victim.read_text() == "untouched\n"
        assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    finally:
        server.destroy()


def test_private_files(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # the mode must not depend on the caller's umask
    try:
        target = tmp_path / "secret"
        assert create_private(target, "one") is True
        assert create_private(target, "two") is False
        assert target.read_text() == "one"
        assert stat.S_IMODE(target.stat().st_mode) == 0o600

        stack = tmp_path / "stack.json"
        stack.write_text("{}")
        stack.chmod(0o644)
        write_private(stack, '{"database_url": "postgresql://u:pw@h/db"}')
        assert stat.S_IMODE(stack.stat().st_mode) == 0o600
        assert "pw@" in stack.read_text()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["secret", "stack.json"]

        log_path = tmp_path / "worker.log"
        log_path.write_text("old\n")
        log_path.chmod(0o644)
        with open_private_log(log_path) as log:
            log.write(b"new\n")
        assert log_path.read_text() == "old\nnew\n"
        assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
        with open_private_log(tmp_path / "api.log") as log:
            log.write(b"x")
        assert stat.S_IMODE((tmp_path / "api.log").stat().st_mode) == 0o600
    finally:
        os.umask(old_umask)


def test_redact() -> None:
    assert redact("postgresql://postgres:s3cr3t@127.0.0.1:5/db") == (
        "postgresql://postgres:***@127.0.0.1:5/db"
    )
    assert redact("postgresql://postgres@127.0.0.1:5/db") == "postgresql://postgres@127.0.0.1:5/db"
