"""How the repository reaches the database for each call: the interface, and SQLite's side of it.

SQLite: one DB-API connection held for the repository's life, guarded by a
lock (as the seed did): no pool checkout per call. Standard library only; the
server strategies live in :mod:`animedex_store.server_connections`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any, Callable, NoReturn

from .errors import StoreError, store_error
from .sqltext import Compiled

__all__ = ["Connections", "SharedSqliteConnection", "ClosedConnections"]


class Connections:
    """Run compiled statements: ``fetchone``/``fetchall`` read, ``execute``/``executemany`` commit.

    ``target`` names the database in messages (file path, or URL with the password masked).
    """

    target: str

    def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        raise NotImplementedError

    def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        raise NotImplementedError

    def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        raise NotImplementedError

    def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        raise NotImplementedError

    def vacuum(self) -> int | None:
        """Give deleted rows' space back: bytes reclaimed, or ``None`` where the engine cannot tell."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection(s) and whatever was opened for them (an engine we created)."""
        raise NotImplementedError


class SharedSqliteConnection(Connections):
    """One ``sqlite3`` connection in autocommit mode plus the lock guarding it.

    ``release`` runs on :meth:`close`: closing the connection on the fast path,
    or returning it to its engine and disposing the engine on the slow path.
    """

    def __init__(self, connection: sqlite3.Connection, target: str, release: Callable[[], None]) -> None:
        self.conn = connection
        self.target = target
        self.lock = threading.Lock()
        self._release = release

    def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        with self.lock:
            try:
                row: Sequence[Any] | None = self.conn.execute(statement.sql, statement.bind(values)).fetchone()
                return row
            except sqlite3.Error as exc:
                raise store_error(exc, self.target) from exc

    def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        with self.lock:
            try:
                return self.conn.execute(statement.sql, statement.bind(values)).fetchall()
            except sqlite3.Error as exc:
                raise store_error(exc, self.target) from exc

    def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        # Autocommit: a single statement is its own transaction.
        with self.lock:
            try:
                return self.conn.execute(statement.sql, statement.bind(values)).rowcount
            except sqlite3.Error as exc:
                raise store_error(exc, self.target) from exc

    def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        # Rows already in the statement's order go to the driver as they are.
        parameters = rows if statement.bind is tuple else [statement.bind(row) for row in rows]
        with self.lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    count = self.conn.executemany(statement.sql, parameters).rowcount
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
                return count
            except sqlite3.Error as exc:
                raise store_error(exc, self.target) from exc

    def vacuum(self) -> int | None:
        from .vacuum import vacuum_sqlite

        return vacuum_sqlite(self)

    def close(self) -> None:
        with self.lock:
            self._release()


class ClosedConnections(Connections):
    """What a closed repository holds: every call raises a clear error."""

    def __init__(self, target: str) -> None:
        self.target = target

    def _refuse(self) -> NoReturn:
        raise StoreError(f"the repository on {self.target} is closed", target=self.target)

    def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        self._refuse()

    def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        self._refuse()

    def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        self._refuse()

    def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        self._refuse()

    def vacuum(self) -> int | None:
        self._refuse()

    def close(self) -> None:
        pass
