"""Connections, migrations, and typed reads.

Migrations are numbered SQL files applied in order, each in its own transaction, under an
advisory lock so that a worker and an API starting together apply each file exactly once.

Reads answer frozen dataclasses, one per kind of row, with the columns as named fields
(`fetch_all` / `fetch_one` with `psycopg.rows.class_row`); a query selects exactly the row's
fields (`columns`), so a renamed column is a mypy error where the field is used and a loud
failure at the query, never a missing key far away.
"""

from __future__ import annotations

from dataclasses import fields
from importlib import resources
from typing import TYPE_CHECKING, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.abc import Params
from psycopg.rows import DictRow, class_row, dict_row
from psycopg_pool import AsyncConnectionPool

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]
Conn = AsyncConnection[DictRow]
Row = TypeVar("Row")

_MIGRATION_LOCK = 4_242_001


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("store") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (folder / name).read_text()) for name in names]


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations; safe to re-run. Returns the versions applied now."""
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in migration_files():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied_now.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied_now


async def open_pool(database_url: str, *, max_size: int = 10, wait_seconds: float = 30.0) -> Pool:
    """A connection pool. `wait_seconds`: how long a caller waits for a connection before
    PoolTimeout; the API passes a short one so that with the database down it answers 503 within
    seconds."""
    pool: Pool = AsyncConnectionPool(
        database_url,
        connection_class=AsyncConnection[DictRow],
        min_size=1,
        max_size=max_size,
        kwargs={"row_factory": dict_row, "autocommit": True, "connect_timeout": 5},
        timeout=wait_seconds,
        open=False,
    )
    await pool.open(wait=True, timeout=30)
    return pool


def columns(row: type[DataclassInstance], alias: str = "") -> str:
    """The select list of a row dataclass: its fields in order, `alias.`-qualified if given."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + f.name for f in fields(row))


async def fetch_all(
    conn: Conn, row: type[Row], query: str, params: Params | None = None
) -> list[Row]:
    """Every row of a query, each made into `row` (a dataclass naming the selected columns)."""
    async with conn.cursor(row_factory=class_row(row)) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def fetch_one(
    conn: Conn, row: type[Row], query: str, params: Params | None = None
) -> Row | None:
    """The first row of a query as `row`, or None."""
    async with conn.cursor(row_factory=class_row(row)) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()
