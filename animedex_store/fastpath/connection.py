"""SQLite's side of :class:`~animedex_store.core.connections.Connections`: one ``sqlite3`` connection.

One DB-API connection held for the repository's life, guarded by a lock (as the
seed did): no pool checkout per call. Standard library only. The driver calls
are plain methods (``read_one``, ``write``, ...): the blocking coroutines of
:class:`SharedSqliteConnection` run them on the caller's thread, and
:mod:`animedex_store.fastpath.async_connection` runs the same ones inline or on
a thread of its own.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from ..core.compiled import Compiled
from ..core.connections import BlockingConnections
from ..errors import store_error

__all__ = ["SharedSqliteConnection"]

_SIZE = Compiled("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()", tuple)
_VACUUM = Compiled("VACUUM", tuple)
_CHECKPOINT = Compiled("PRAGMA wal_checkpoint(TRUNCATE)", tuple)


class SharedSqliteConnection(BlockingConnections):
    """One ``sqlite3`` connection in autocommit mode plus the lock guarding it.

    ``release`` runs on :meth:`close`: closing the connection on the fast path,
    or returning it to its engine and disposing the engine on the slow path.
    ``path`` is the file's; ``None`` in memory.
    """

    def __init__(
        self, connection: sqlite3.Connection, target: str, release: Callable[[], None], path: Path | None = None
    ) -> None:
        self.conn = connection
        self.target = target
        self.path = path
        self.lock = threading.Lock()
        self._release = release

    # -- the driver calls, on the calling thread, under the lock -------------------------------------
    def read_one(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        with self.lock:
            return self.unlocked_read_one(statement, values)

    def read_all(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        with self.lock:
            return self.unlocked_read_all(statement, values)

    def write(self, statement: Compiled, values: Sequence[Any]) -> int:
        with self.lock:
            return self.unlocked_write(statement, values)

    def write_many(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        with self.lock:
            return self.unlocked_write_many(statement, rows)

    def compact(self) -> int:
        """``VACUUM`` rewrites the file without its free pages, then ``wal_checkpoint(TRUNCATE)``
        empties the write-ahead log the rewrite went through; returns the bytes the file shrank by.
        On this connection: an in-memory database exists only there."""
        with self.lock:
            return self.unlocked_compact()

    # -- the same, for a caller that holds the lock (an async repository's, which never waits for it)
    def unlocked_read_one(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        try:
            row: Sequence[Any] | None = self.conn.execute(statement.sql, statement.bind(values)).fetchone()
            return row
        except sqlite3.Error as exc:
            raise store_error(exc, self.target) from exc

    def unlocked_read_all(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        try:
            return self.conn.execute(statement.sql, statement.bind(values)).fetchall()
        except sqlite3.Error as exc:
            raise store_error(exc, self.target) from exc

    def unlocked_write(self, statement: Compiled, values: Sequence[Any]) -> int:
        # Autocommit: a single statement is its own transaction.
        try:
            return self.conn.execute(statement.sql, statement.bind(values)).rowcount
        except sqlite3.Error as exc:
            raise store_error(exc, self.target) from exc

    def unlocked_write_many(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        # Rows already in the statement's order go to the driver as they are.
        parameters = rows if statement.bind is tuple else [statement.bind(row) for row in rows]
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                count = self.conn.executemany(statement.sql, parameters).rowcount
                self.conn.execute("COMMIT")
            except BaseException:
                # An interrupted statement (SQLITE_INTERRUPT) has rolled the transaction back already.
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            return count
        except sqlite3.Error as exc:
            raise store_error(exc, self.target) from exc

    def unlocked_compact(self) -> int:
        before = self._size()
        self.unlocked_write(_VACUUM, ())
        self.unlocked_read_one(_CHECKPOINT, ())
        return max(before - self._size(), 0)

    def _size(self) -> int:
        row = self.unlocked_read_one(_SIZE, ())
        return int(row[0]) if row is not None else 0

    # -- Connections: each coroutine runs its call to the end, never suspending ------------------
    async def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        return self.read_one(statement, values)

    async def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        return self.read_all(statement, values)

    async def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        return self.write(statement, values)

    async def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        return self.write_many(statement, rows)

    async def vacuum(self) -> int:
        return self.compact()

    def close(self) -> None:
        with self.lock:
            self._release()
