"""How the repository reaches the database for each call.

SQLite: one DB-API connection held for the repository's life, guarded by a
lock (as the seed did): no pool checkout per call. Servers: a pooled DB-API
connection per call, so threads and processes never share one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from .engine import StoreEngine
from .errors import StoreError, store_error
from .statements import Compiled

__all__ = ["Connections", "SharedSqliteConnection", "PooledConnections", "ClosedConnections", "open_connections"]


class Connections:
    """Run compiled statements: ``fetchone``/``fetchall`` read, ``execute``/``executemany`` commit."""

    def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        raise NotImplementedError

    def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        raise NotImplementedError

    def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        raise NotImplementedError

    def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SharedSqliteConnection(Connections):
    """One ``sqlite3`` connection in autocommit mode plus the lock guarding it."""

    def __init__(self, store: StoreEngine) -> None:
        self._target = store.target
        self._pooled = store.engine.raw_connection()
        self.conn = self._pooled.driver_connection
        self.lock = threading.Lock()
        import sqlite3

        self._error = sqlite3.Error

    def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        with self.lock:
            try:
                return self.conn.execute(statement.sql, statement.bind(values)).fetchone()
            except self._error as exc:
                raise store_error(exc, self._target) from exc

    def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        with self.lock:
            try:
                return self.conn.execute(statement.sql, statement.bind(values)).fetchall()
            except self._error as exc:
                raise store_error(exc, self._target) from exc

    def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        # Autocommit: a single statement is its own transaction.
        with self.lock:
            try:
                return self.conn.execute(statement.sql, statement.bind(values)).rowcount
            except self._error as exc:
                raise store_error(exc, self._target) from exc

    def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        with self.lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    count = self.conn.executemany(statement.sql, [statement.bind(row) for row in rows]).rowcount
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
                return count
            except self._error as exc:
                raise store_error(exc, self._target) from exc

    def close(self) -> None:
        with self.lock:
            self._pooled.close()


class PooledConnections(Connections):
    """A pooled DB-API connection per call; writes commit, reads roll back on return."""

    def __init__(self, store: StoreEngine) -> None:
        self._engine = store.engine
        self._target = store.target
        self._error = store.engine.dialect.loaded_dbapi.Error

    def _run(self, statement: Compiled, values: Sequence[Any], *, many: bool, commit: bool, fetch: str | None):
        try:
            raw = self._engine.raw_connection()
        except Exception as exc:
            raise store_error(exc, self._target) from exc
        try:
            cursor = raw.cursor()
            if many:
                cursor.executemany(statement.sql, [statement.bind(row) for row in values])
            else:
                cursor.execute(statement.sql, statement.bind(values))
            result = cursor.fetchone() if fetch == "one" else cursor.fetchall() if fetch == "all" else cursor.rowcount
            cursor.close()
            if commit:
                raw.commit()
            return result
        except self._error as exc:
            if _is_disconnect(self._engine, exc):
                raw.invalidate()  # the pool must not hand this connection out again
            raise store_error(exc, self._target) from exc
        finally:
            raw.close()

    def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        return self._run(statement, values, many=False, commit=False, fetch="one")

    def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        return self._run(statement, values, many=False, commit=False, fetch="all")

    def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        return self._run(statement, values, many=False, commit=True, fetch=None)

    def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        return self._run(statement, rows, many=True, commit=True, fetch=None)

    def close(self) -> None:
        pass


def _is_disconnect(engine, exc: BaseException) -> bool:
    return bool(engine.dialect.is_disconnect(exc, None, None))


class ClosedConnections(Connections):
    """What a closed repository holds: every call raises a clear error."""

    def __init__(self, target: str) -> None:
        self._target = target

    def _closed(self, *_args: Any) -> Any:
        raise StoreError(f"the repository on {self._target} is closed", target=self._target)

    fetchone = fetchall = execute = executemany = _closed

    def close(self) -> None:
        pass


def open_connections(store: StoreEngine) -> Connections:
    """The right strategy for ``store``'s engine."""
    return SharedSqliteConnection(store) if store.is_sqlite else PooledConnections(store)
