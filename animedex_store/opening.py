"""Opening a repository's database: the SQLite fast path, else the slow path through SQLAlchemy.

The fast path: a SQLite file (a path, ``None`` resolving to one, or a plain
``sqlite:///`` URL) whose ``alembic_version`` says :data:`HEAD_REVISION` opens
with ``sqlite3`` alone (one ``SELECT``) and runs the frozen SQLite text of our
statements. No SQLAlchemy, Alembic, pydantic or click is imported: a CLI pays
for none of them on every command.

Everything else takes the slow path unchanged: a missing, behind, seed-written,
foreign or unreadable file, in-memory ``sqlite://``, server URLs and ``Engine``
targets go to :func:`animedex_store.schema.open_store` (engine, lock,
adoption, Alembic), which reports real problems precisely.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from . import sqlite_statements
from .connections import Connections, SharedSqliteConnection
from .errors import store_error
from .sqlite_file import connect
from .targets import Target, resolve_target

__all__ = ["HEAD_REVISION", "VERSION_TABLE", "open_database", "sqlite_database", "read_revision"]

#: The newest revision in ``alembic/versions``; a test keeps it equal to Alembic's head.
HEAD_REVISION = "0004"
VERSION_TABLE = "alembic_version"
_READ_REVISION = f"SELECT version_num FROM {VERSION_TABLE}"  # constant SQL

#: What a repository runs on: its connections, and its statements compiled for them.
Database = tuple[Connections, Any]


def read_revision(dbapi_connection: Any) -> str | None:
    """The one revision in ``alembic_version`` on a DB-API connection; ``None`` if there is not
    exactly one. Driver errors (no such table, not a database, locked) propagate."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(_READ_REVISION)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return rows[0][0] if len(rows) == 1 else None


def open_database(target: Target, *, migrate: bool, timeout: float) -> Database:
    """Open ``target`` as a repository does, migrating it to head unless ``migrate=False``."""
    resolved = resolve_target(target)
    if isinstance(resolved, Path):
        current = _open_current_file(resolved, timeout)
        if current is not None:
            return current
    from .schema import open_store
    from .server_connections import connections_for
    from .statements import Statements

    store = open_store(resolved, migrate=migrate, timeout=timeout)
    try:
        db = connections_for(store)
    except Exception as exc:
        store.dispose()
        raise store_error(exc, store.target) from exc
    return db, sqlite_statements if store.is_sqlite else Statements.for_dialect(store.engine.dialect)


def sqlite_database(connection: sqlite3.Connection, target: str) -> Database:
    """A repository's database on an open, configured ``sqlite3`` connection already at head."""
    return SharedSqliteConnection(connection, target, connection.close), sqlite_statements


def _open_current_file(path: Path, timeout: float) -> Database | None:
    """The fast path: ``path`` opened with ``sqlite3`` if it exists and is at head, else ``None``
    (nothing created or changed; the slow path then decides, under its lock)."""
    if not path.exists():
        return None
    try:
        connection = connect(path, timeout=timeout, create=False)
    except sqlite3.Error:
        return None
    try:
        at_head = read_revision(connection) == HEAD_REVISION
    except sqlite3.Error:
        at_head = False
    if not at_head:
        connection.close()
        return None
    return sqlite_database(connection, str(path))
