"""A fresh database at head without running Alembic in every test.

Most tests need a repository on a fresh database, and opening one runs the
real migrations: a few dozen milliseconds of SQL and several times that of
Alembic and reflection, for every test. Here the first open in a process is
real, and later databases are made the same:

* SQLite: a copy of the bytes of a file a repository migrated, written into a
  new ``0600`` file as the package creates them (WAL is in the copied header);
* servers: every statement that changed the throwaway sandbox was recorded as it
  went to the driver, and each later database gets them, as they were sent.

The result is the schema, version row and ``cache_meta`` that the migration
writes, so a repository opening it finds it at head. Tests of migrating itself
use ``engine_url`` as it comes: empty.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from animedex_store import CacheRepository
from animedex_store.fastpath.sqlite_file import create_private_file
from animedex_store.sql.sandbox import sandbox

__all__ = ["build_at_head"]

#: Statements that change a database (the version row included); reads, locks and session settings are left out.
_CHANGES = ("CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE")
Statement = tuple[str, Any]


@functools.cache
def _recorded_migration(server_url: str) -> tuple[Statement, ...]:
    """What a repository's first open sends to build a database of ``server_url``'s kind, recorded once."""
    recorded: list[Statement] = []
    with sandbox(server_url) as url:
        database = make_url(url)

        def record(connection: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
            same = connection.engine.url.database == database.database and connection.engine.url.query == database.query
            if same and statement.lstrip().split(None, 1)[0].upper() in _CHANGES:
                recorded.append((statement, parameters))

        event.listen(Engine, "before_cursor_execute", record)
        try:
            CacheRepository(url).close()
        finally:
            event.remove(Engine, "before_cursor_execute", record)
    assert any("alembic_version" in statement for statement, _ in recorded), recorded
    return tuple(recorded)


@functools.cache
def _migrated_sqlite_file() -> bytes:
    """The bytes of a SQLite file a repository created and migrated (checkpointed, closed)."""
    with tempfile.TemporaryDirectory(prefix="animedex-at-head-") as directory:
        path = Path(directory) / "cache.sqlite"
        CacheRepository(path).close()  # the last connection to close checkpoints the WAL into the file
        return path.read_bytes()


def build_at_head(engine_url: str, server_urls: dict[str, str]) -> None:
    """Make the empty database ``engine_url`` (a SQLite file not yet created, or a sandbox on one
    of ``server_urls``) what a repository's first open would make it."""
    if engine_url.startswith("sqlite:///"):
        path = Path(engine_url.removeprefix("sqlite:///"))
        create_private_file(path)
        with os.fdopen(os.open(path, os.O_WRONLY), "wb") as file:
            file.write(_migrated_sqlite_file())
        return
    (server_url,) = [url for url in server_urls.values() if engine_url.startswith(url.split("+", 1)[0])]
    engine: Engine = create_engine(engine_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            for statement, parameters in _recorded_migration(server_url):
                connection.exec_driver_sql(statement, parameters)
    finally:
        engine.dispose()
