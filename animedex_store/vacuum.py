"""Compaction: give the disk space of deleted rows back, on each engine its own way.

* SQLite: ``VACUUM`` rewrites the file without its free pages, then a
  ``wal_checkpoint(TRUNCATE)`` empties the write-ahead log the rewrite went
  through. Returns the bytes the database shrank by.
* PostgreSQL: ``VACUUM FULL cache_rows`` rewrites the table (plain ``VACUUM``
  only marks space reusable, it rarely returns any). It holds an exclusive
  lock on the table while it runs, and cannot run inside a transaction, so it
  gets an autocommit connection. Returns the bytes ``pg_total_relation_size``
  shrank by.
* MariaDB/MySQL: ``OPTIMIZE TABLE cache_rows`` (InnoDB rebuilds the table
  online). Returns ``None``: the server's size figures are estimates, so no
  reliable number can be given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import StoreError, store_error
from .sqltext import Compiled

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from .connections import Connections
    from .engine import StoreEngine

__all__ = ["vacuum_sqlite", "vacuum_server"]

_SQLITE_SIZE = Compiled("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()", tuple)
_SQLITE_VACUUM = Compiled("VACUUM", tuple)
_SQLITE_CHECKPOINT = Compiled("PRAGMA wal_checkpoint(TRUNCATE)", tuple)
_POSTGRES_SIZE = "SELECT pg_total_relation_size('cache_rows')"


def vacuum_sqlite(db: Connections) -> int:
    """Compact a SQLite database on the repository's own connection (an in-memory
    database exists only there); returns the bytes it shrank by."""
    before = _sqlite_size(db)
    db.execute(_SQLITE_VACUUM, ())
    db.fetchone(_SQLITE_CHECKPOINT, ())
    return max(before - _sqlite_size(db), 0)


def vacuum_server(store: StoreEngine) -> int | None:
    """Compact a server's cache table; bytes reclaimed, or ``None`` where the server cannot tell."""
    try:
        with store.engine.connect() as connection:
            autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
            if store.engine.dialect.name == "postgresql":
                return _vacuum_postgresql(autocommit)
            _optimize_mysql(autocommit, store.target)
            return None
    except StoreError:
        raise
    except Exception as exc:
        raise store_error(exc, store.target) from exc


def _sqlite_size(db: Connections) -> int:
    row = db.fetchone(_SQLITE_SIZE, ())
    return int(row[0]) if row is not None else 0


def _vacuum_postgresql(connection: Connection) -> int:
    before: int = connection.exec_driver_sql(_POSTGRES_SIZE).scalar_one()
    connection.exec_driver_sql("VACUUM FULL cache_rows")
    after: int = connection.exec_driver_sql(_POSTGRES_SIZE).scalar_one()
    return max(before - after, 0)


def _optimize_mysql(connection: Connection, target: str) -> None:
    # OPTIMIZE reports problems as result rows, not as errors.
    for _table, _op, kind, message in connection.exec_driver_sql("OPTIMIZE TABLE cache_rows"):
        if kind.lower() == "error":
            raise StoreError(f"OPTIMIZE TABLE failed on {target}: {message}", target=target)
