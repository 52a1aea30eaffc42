"""How the repository reaches a PostgreSQL or MariaDB/MySQL server for each call.

A DB-API connection per call, so threads and processes never share one: on an
engine we created, kept between calls in autocommit
(:class:`HeldServerConnections`); on a caller's engine, checked out of its pool
as its settings say (:class:`PooledConnections`). A SQLite ``Engine`` (in
memory, or a caller's) runs on one held connection like the fast path.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from ..core.compiled import Compiled
from ..core.connections import BlockingConnections
from ..errors import StoreError, UnstorableValueError, is_deadlock, store_error
from ..fastpath.connection import SharedSqliteConnection
from .engine import StoreEngine

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine
    from sqlalchemy.engine.interfaces import DBAPIConnection

__all__ = ["PooledConnections", "HeldServerConnections", "DEADLOCK_ATTEMPTS", "connections_for"]


# MariaDB/MySQL never accept a max_allowed_packet below 1 KiB: smaller statements are not asked about.
_SMALLEST_PACKET_LIMIT = 1024


#: Tries of a server statement the server rolled back as a deadlock victim.
DEADLOCK_ATTEMPTS = 5


class PooledConnections(BlockingConnections):
    """A pooled DB-API connection per call; writes commit, reads roll back on return."""

    def __init__(self, store: StoreEngine) -> None:
        self._store = store
        self._engine = store.engine
        self.target = store.target
        self._error = store.engine.dialect.loaded_dbapi.Error

    def _run(self, statement: Compiled, values: Sequence[Any], *, many: bool, commit: bool, fetch: str | None) -> Any:
        for attempt in itertools.count(1):
            try:
                return self._once(statement, values, many=many, commit=commit, fetch=fetch)
            except self._error as exc:
                if attempt == DEADLOCK_ATTEMPTS or not is_deadlock(exc):
                    raise self._error_for(exc, values if many else [values]) from exc
            # InnoDB expects deadlock victims to re-run; their work was rolled back whole.
            # A random pause keeps the same pair of writers from colliding again at once.
            time.sleep(random.uniform(0, 0.005 * attempt))

    def _once(self, statement: Compiled, values: Sequence[Any], *, many: bool, commit: bool, fetch: str | None) -> Any:
        """One try on one pooled connection; driver errors propagate untranslated."""
        try:
            raw = self._engine.raw_connection()
        except Exception as exc:
            raise store_error(exc, self.target) from exc
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
            if _is_disconnect(self._engine, exc, raw):
                raw.invalidate()  # the pool must not hand this connection out again
            raise
        finally:
            raw.close()

    def _error_for(self, exc: BaseException, rows: Sequence[Sequence[Any]]) -> StoreError:
        """:func:`store_error`, except that a statement over MariaDB/MySQL's ``max_allowed_packet``
        says so: the server just drops the connection ("server has gone away")."""
        if self._engine.dialect.name in ("mysql", "mariadb") and rows:
            size = max(sum(len(value) for value in row if isinstance(value, (bytes, str))) for row in rows)
            limit = self._max_allowed_packet() if size >= _SMALLEST_PACKET_LIMIT else None
            if limit is not None and size >= limit:
                return UnstorableValueError(
                    f"{self.target} refused a statement of {size} bytes: the server's max_allowed_packet is "
                    f"{limit} bytes. Store smaller payloads or raise max_allowed_packet on the server "
                    "(nothing was written).",
                    target=self.target,
                )
        return store_error(exc, self.target)

    def _max_allowed_packet(self) -> int | None:
        """The server's limit, read on a fresh connection; ``None`` if it cannot be read."""
        try:
            raw = self._engine.raw_connection()
        except Exception:
            return None
        try:
            cursor = raw.cursor()
            cursor.execute("SELECT @@max_allowed_packet")
            row = cursor.fetchone()
            return None if row is None else int(row[0])
        except self._error:
            return None
        finally:
            raw.close()

    # Connections: each coroutine runs its call to the end on the calling thread, never suspending.
    async def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        row: Sequence[Any] | None = self._run(statement, values, many=False, commit=False, fetch="one")
        return row

    async def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        rows: list[Sequence[Any]] = self._run(statement, values, many=False, commit=False, fetch="all")
        return rows

    async def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        count: int = self._run(statement, values, many=False, commit=True, fetch=None)
        return count

    async def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        count: int = self._run(statement, rows, many=True, commit=True, fetch=None)
        return count

    async def vacuum(self) -> int | None:
        """PostgreSQL: ``VACUUM FULL cache_rows`` rewrites the table (plain ``VACUUM`` only marks
        space reusable, it rarely returns any); it holds an exclusive lock on the table while it
        runs and cannot run inside a transaction, so it gets an autocommit connection. Returns the
        bytes ``pg_total_relation_size`` shrank by. MariaDB/MySQL: ``OPTIMIZE TABLE cache_rows``
        (InnoDB rebuilds the table online); ``None``, as the server's size figures are estimates."""
        try:
            with self._engine.connect() as connection:
                autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
                if self._engine.dialect.name == "postgresql":
                    return _vacuum_postgresql(autocommit)
                _optimize_mysql(autocommit, self.target)
                return None
        except StoreError:
            raise
        except Exception as exc:
            raise store_error(exc, self.target) from exc

    def close(self) -> None:
        self._store.dispose()


class HeldServerConnections(PooledConnections):
    """Server connections of an engine we created, kept between calls in autocommit.

    Checking a connection out of SQLAlchemy's pool for every call costs a
    pre-ping round trip, and a read's transaction a rollback on return: three
    round trips where the raw driver needs one. Here a call takes an idle
    connection (autocommit: each statement is its own transaction; batches say
    ``BEGIN``/``COMMIT``) and puts it back. One the server dropped while it sat
    idle (restart, idle timeout, killed session) fails with a disconnect: then
    every idle connection is closed and the call runs once more on a fresh one,
    which the pool pre-pings. Every statement the repository runs may run twice
    (upserts, reads, deletes by condition). Autocommit connections never go back
    to the pool, where migrations expect transactions: :meth:`close` closes them.
    """

    def __init__(self, store: StoreEngine) -> None:
        super().__init__(store)
        self._idle: list[_Held] = []  # list.pop/append are atomic: no lock needed
        self._closed = False

    def _once(self, statement: Compiled, values: Sequence[Any], *, many: bool, commit: bool, fetch: str | None) -> Any:
        try:
            held, reused = self._idle.pop(), True
        except IndexError:
            held, reused = self._fresh(), False
        try:
            result = self._run_on(held.cursor, statement, values, many=many, fetch=fetch)
        except self._error as exc:
            if not _is_disconnect(self._engine, exc, held.connection):
                self._put_back(held)
                raise
            held.connection.invalidate()
            if not reused:
                raise
            self._close_idle()  # the server dropped them too, most likely
            return self._once(statement, values, many=many, commit=commit, fetch=fetch)
        self._put_back(held)
        return result

    def _fresh(self) -> _Held:
        try:
            raw = self._engine.raw_connection()
            self._engine.dialect.set_isolation_level(cast("DBAPIConnection", raw.dbapi_connection), "AUTOCOMMIT")
            # The cursor is kept too: making one costs psycopg ~5 µs, a tenth of a get.
            return _Held(raw, raw.cursor())
        except Exception as exc:
            raise store_error(exc, self.target) from exc

    def _run_on(self, cursor: Any, statement: Compiled, values: Sequence[Any], *, many: bool, fetch: str | None) -> Any:
        if not many:
            cursor.execute(statement.sql, statement.bind(values))
            return cursor.fetchone() if fetch == "one" else cursor.fetchall() if fetch == "all" else cursor.rowcount
        cursor.execute("BEGIN")  # one transaction for the batch, autocommit or not
        try:
            cursor.executemany(statement.sql, [statement.bind(row) for row in values])
            count = cursor.rowcount
            cursor.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(self._error):
                cursor.execute("ROLLBACK")
            raise
        return count

    def _put_back(self, held: _Held) -> None:
        if self._closed:
            held.connection.invalidate()
        else:
            self._idle.append(held)

    def _close_idle(self) -> None:
        while self._idle:
            try:
                self._idle.pop().connection.invalidate()
            except IndexError:  # another thread took the last one
                break

    def close(self) -> None:
        self._closed = True
        self._close_idle()
        super().close()


class _Held(NamedTuple):
    """A pooled connection (in autocommit) and its cursor, kept between calls."""

    connection: Any
    cursor: Any


def _is_disconnect(engine: Engine, exc: BaseException, raw: Any) -> bool:
    # psycopg's dialect can tell only by looking at the connection (closed or broken).
    return bool(engine.dialect.is_disconnect(cast(Any, exc), raw.dbapi_connection, None))


_POSTGRES_SIZE = "SELECT pg_total_relation_size('cache_rows')"


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


def connections_for(store: StoreEngine) -> BlockingConnections:
    """The right strategy for ``store``'s engine; closing it also disposes an engine we created."""
    if store.is_sqlite:
        pooled = store.engine.raw_connection()

        def release() -> None:
            pooled.close()
            store.dispose()

        return SharedSqliteConnection(cast(sqlite3.Connection, pooled.driver_connection), store.target, release)
    return HeldServerConnections(store) if store.owns_engine else PooledConnections(store)
