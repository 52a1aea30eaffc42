"""The migration lock: one process checks and migrates a database at a time, the others wait.

Each engine its own way: SQLite ``BEGIN IMMEDIATE`` (the write lock, with real
transactional DDL because :mod:`animedex_store.sql.engine` hands ``BEGIN`` to
us), a transaction-scoped advisory lock on PostgreSQL, ``GET_LOCK`` on
MariaDB/MySQL (whose DDL commits implicitly, so each revision is written to be
safe to re-run).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Connection, text

from ..errors import MigrationError

__all__ = ["schema_lock", "SERVER_LOCK_TIMEOUT_SECONDS"]

#: Seconds a MariaDB/MySQL process waits for another one's migration.
SERVER_LOCK_TIMEOUT_SECONDS = 300


@contextlib.contextmanager
def schema_lock(connection: Connection, target: str) -> Iterator[Connection]:
    """Open a transaction holding the engine's migration lock; commit on success."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        connection.execution_options(animedex_sqlite_begin="IMMEDIATE")
    with connection.begin():
        if dialect == "postgresql":
            # One lock per database and schema: sandboxes and tenants don't wait on each other.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(current_database() || '.' || current_schema() || :tag))"),
                {"tag": ":animedex_store"},
            )
            yield connection
        elif dialect in ("mysql", "mariadb"):
            name = "CONCAT('animedex_store:', LEFT(SHA1(DATABASE()), 40))"
            got = connection.execute(
                text(f"SELECT GET_LOCK({name}, :timeout)"), {"timeout": SERVER_LOCK_TIMEOUT_SECONDS}
            ).scalar()
            if got != 1:
                raise MigrationError(
                    f"timed out after {SERVER_LOCK_TIMEOUT_SECONDS}s waiting for another process's "
                    f"migration of {target}",
                    target=target,
                )
            try:
                yield connection
            finally:
                connection.execute(text(f"SELECT RELEASE_LOCK({name})"))
        else:
            yield connection
