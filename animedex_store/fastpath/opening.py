"""Open a target on the fast path when it is an up-to-date SQLite file, else hand it to the slow path.

The fast path: a SQLite file (a path, ``None`` resolving to one, or a plain
``sqlite:///`` URL) whose ``alembic_version`` says the head revision opens
with ``sqlite3`` alone (one ``SELECT``) and runs the frozen SQLite text of our
statements. No SQLAlchemy, Alembic, pydantic or click is imported: a CLI pays
for none of them on every command.

This module knows neither the head revision nor the slow path: the caller
hands both in (:class:`CacheRepository` hands it
:func:`animedex_store.migrations.opening.open_migrated`, imported only when
called), so the fast path never imports upward.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

from ..core.connections import Database
from . import statements
from .connection import SharedSqliteConnection
from .sqlite_file import connect
from .targets import Target, resolve_target

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL

__all__ = ["VERSION_TABLE", "SlowPath", "open_database", "sqlite_database", "read_revision"]

VERSION_TABLE = "alembic_version"
_READ_REVISION = f"SELECT version_num FROM {VERSION_TABLE}"  # constant SQL

#: What opens every target the fast path does not: ``slow_path(resolved, migrate=..., timeout=...)``.
SlowPath = Callable[..., Database]
#: A target once resolved: a SQLite file's path, a URL, or an ``Engine``.
Resolved = Union[Path, "URL", "Engine"]


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


def open_database(target: Target, *, migrate: bool, timeout: float, head: str, slow_path: SlowPath) -> Database:
    """Open ``target`` as a repository does: here when it is a SQLite file at revision ``head``,
    else ``slow_path(resolved, migrate=migrate, timeout=timeout)``."""
    resolved: Resolved = resolve_target(target)
    if isinstance(resolved, Path):
        current = _open_current_file(resolved, timeout, head)
        if current is not None:
            return current
    return slow_path(resolved, migrate=migrate, timeout=timeout)


def sqlite_database(connection: sqlite3.Connection, target: str) -> Database:
    """A repository's database on an open, configured ``sqlite3`` connection already at head."""
    return SharedSqliteConnection(connection, target, connection.close), statements


def _open_current_file(path: Path, timeout: float, head: str) -> Database | None:
    """``path`` opened with ``sqlite3`` if it exists and is at ``head``, else ``None``
    (nothing created or changed; the slow path then decides, under its lock)."""
    try:
        connection = connect(path, timeout=timeout, create=False)
    except (FileNotFoundError, sqlite3.Error):
        return None
    try:
        at_head = read_revision(connection) == head
    except sqlite3.Error:
        at_head = False
    if not at_head:
        connection.close()
        return None
    return sqlite_database(connection, str(path))
