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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

from ..core.compiled import Compiled
from ..core.connections import Database
from . import statements
from .connection import SharedSqliteConnection
from .sqlite_file import connect
from .targets import Target, resolve_target

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL

__all__ = [
    "VERSION_TABLE",
    "READ_REVISION",
    "SlowPath",
    "open_database",
    "sqlite_database",
    "read_revision",
    "revision_of",
]

VERSION_TABLE = "alembic_version"
#: The revision a database is at (constant SQL; :func:`revision_of` reads its rows).
READ_REVISION = Compiled(f"SELECT version_num FROM {VERSION_TABLE}", tuple)

#: What opens every target the fast path does not: ``slow_path(resolved, migrate=..., timeout=...)``.
SlowPath = Callable[..., Database]
#: A target once resolved: a SQLite file's path, a URL, or an ``Engine``.
Resolved = Union[Path, "URL", "Engine"]


def read_revision(dbapi_connection: Any) -> str | None:
    """The one revision in ``alembic_version`` on a DB-API connection; ``None`` if there is not
    exactly one. Driver errors (no such table, not a database, locked) propagate."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(READ_REVISION.sql)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return revision_of(rows)


def revision_of(rows: Sequence[Sequence[Any]]) -> str | None:
    """The revision :data:`READ_REVISION`'s ``rows`` say; ``None`` unless there is exactly one."""
    return str(rows[0][0]) if len(rows) == 1 else None


def open_database(target: Target, *, migrate: bool, timeout: float, head: str, slow_path: SlowPath) -> Database:
    """Open ``target`` as a repository does: here when it is a SQLite file at revision ``head``,
    else ``slow_path(resolved, migrate=migrate, timeout=timeout)``."""
    resolved: Resolved = resolve_target(target)
    if isinstance(resolved, Path):
        current = _open_current_file(resolved, timeout, head)
        if current is not None:
            return current
    return slow_path(resolved, migrate=migrate, timeout=timeout)


def sqlite_database(connection: sqlite3.Connection, target: str, path: Path | None = None) -> Database:
    """A repository's database on an open, configured ``sqlite3`` connection already at head
    (``path``: its file; ``None`` in memory)."""
    return SharedSqliteConnection(connection, target, connection.close, path), statements


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
    return sqlite_database(connection, str(path), path)
