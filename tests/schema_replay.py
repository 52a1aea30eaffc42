"""A server database at head without running Alembic in every test: the migration, replayed.

Most server tests need a repository on a fresh database, and opening one there
runs the real migrations: a few dozen milliseconds of SQL and ten times that
of Alembic and reflection, for every test. Here the first open in a process is
real, on a throwaway sandbox, and every statement that changes the database is
recorded as it goes to the driver; each later database gets those statements,
as they were sent, in one go. The result is the same schema, version row and
``cache_meta`` that the migration writes, so a repository opening it finds it
at head. Tests of migrating itself use ``engine_url`` as it comes: empty.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from animedex_store import CacheRepository
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


def build_at_head(url: str, server_url: str) -> None:
    """Build the empty sandbox ``url`` at head with the statements a real migration sent on ``server_url``."""
    engine: Engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            for statement, parameters in _recorded_migration(server_url):
                connection.exec_driver_sql(statement, parameters)
    finally:
        engine.dispose()
