"""How a repository reaches a PostgreSQL or MariaDB/MySQL server for each call.

:class:`ServerConnections` is written once, as coroutines, over a
:class:`Driver`: a connection per call, so threads, tasks and processes never
share one; deadlock victims run again a bounded number of times; a session the
server dropped while it sat idle is retried once on a fresh connection; a
statement over MariaDB's packet limit says so. The blocking drivers here run
SQLAlchemy's DB-API connections (psycopg, PyMySQL) on the calling thread, so
their coroutines never suspend (:class:`~animedex_store.CacheRepository`); the
native async drivers of :mod:`animedex_store.sql.async_drivers` await asyncpg
or asyncmy (:class:`~animedex_store.AsyncCacheRepository`).

On an engine we created, connections are kept between calls in autocommit
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
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

from ..core.compiled import Compiled
from ..core.connections import AsyncConnections, BlockingConnections, Connections
from ..errors import StoreError, UnstorableValueError, is_deadlock, store_error
from ..fastpath.connection import SharedSqliteConnection
from .engine import StoreEngine

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine.interfaces import DBAPIConnection

__all__ = [
    "Driver",
    "ServerConnections",
    "AsyncServerConnections",
    "PooledConnections",
    "HeldServerConnections",
    "DEADLOCK_ATTEMPTS",
    "connections_for",
]

#: Tries of a server statement the server rolled back as a deadlock victim.
DEADLOCK_ATTEMPTS = 5
# MariaDB/MySQL never accept a max_allowed_packet below 1 KiB: smaller statements are not asked about.
_SMALLEST_PACKET_LIMIT = 1024
_MAX_ALLOWED_PACKET = Compiled("SELECT @@max_allowed_packet", tuple)
_POSTGRES_SIZE = Compiled("SELECT pg_total_relation_size('cache_rows')", tuple)
_POSTGRES_VACUUM = Compiled("VACUUM FULL cache_rows", tuple)
_MYSQL_OPTIMIZE = Compiled("OPTIMIZE TABLE cache_rows", tuple)

#: What a statement returns: ``"one"`` row, ``"all"`` rows, the ``"count"`` of rows it changed, or a
#: batch (``"many"``: one transaction, its count).
Kind = str


class Driver(Protocol):
    """One kind of server connection as :class:`ServerConnections` uses it, blocking or async."""

    @property
    def error(self) -> type[BaseException] | tuple[type[BaseException], ...]:
        """What the driver's calls raise (the DB-API ``Error``, or a tuple of the native classes)."""

    @property
    def dialect(self) -> str:
        """The dialect's name, ``postgresql`` or ``mysql``/``mariadb``."""

    @property
    def holds(self) -> bool:
        """``True``: connections are kept between calls, in autocommit; ``False``: one is checked
        out of its pool per call and handed back with :meth:`release`."""

    async def connect(self, *, autocommit: bool = False) -> Any:
        """A connection (held ones are always in autocommit); errors propagate untranslated."""

    async def run(self, connection: Any, kind: Kind, statement: Compiled, values: Sequence[Any]) -> Any:
        """Run one statement (a batch in one transaction), committing writes on a pooled connection."""

    async def release(self, connection: Any) -> None:
        """A pooled connection back to its pool (held ones never come here)."""

    def discard(self, connection: Any) -> None:
        """Drop a connection that is broken, or in a state nobody knows (a cancelled call): at once."""

    def is_disconnect(self, error: BaseException, connection: Any) -> bool:
        """The server dropped the session (restart, idle timeout, a killed backend)."""


class ServerConnections(Connections):
    """A connection per call from ``driver``, with the retries every engine gets.

    ``sleep`` pauses between deadlock retries (the runtime's: blocking or async);
    ``slots``, when given, bounds the connections in use at once (``async with``).
    """

    def __init__(
        self,
        driver: Driver,
        target: str,
        *,
        sleep: Callable[[float], Awaitable[None]],
        slots: Any = None,
    ) -> None:
        self.driver = driver
        self.target = target
        self._sleep = sleep
        self._slots = slots
        self.idle: list[Any] = []  # held connections not in use (list.pop/append are atomic: no lock)
        self.in_use: set[Any] = set()  # connections taken by calls under way (set.add/discard are atomic)
        self._closed = False

    async def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        row: Sequence[Any] | None = await self._run("one", statement, values)
        return row

    async def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        rows: list[Sequence[Any]] = await self._run("all", statement, values)
        return rows

    async def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        count: int = await self._run("count", statement, values)
        return count

    async def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        count: int = await self._run("many", statement, rows)
        return count

    async def _run(self, kind: Kind, statement: Compiled, values: Sequence[Any]) -> Any:
        for attempt in itertools.count(1):
            try:
                if self._slots is None:
                    return await self._once(kind, statement, values)
                async with self._slots:
                    return await self._once(kind, statement, values)
            except self.driver.error as exc:
                if attempt == DEADLOCK_ATTEMPTS or not is_deadlock(exc):
                    raise await self._error_for(exc, values if kind == "many" else [values]) from exc
            # InnoDB expects deadlock victims to re-run; their work was rolled back whole.
            # A random pause keeps the same pair of writers from colliding again at once.
            await self._sleep(random.uniform(0, 0.005 * attempt))

    async def _once(self, kind: Kind, statement: Compiled, values: Sequence[Any]) -> Any:
        """One try on one connection; driver errors propagate untranslated.

        A held connection the server dropped while it sat idle fails with a
        disconnect: then every idle connection is closed and the call runs once
        more on a fresh one. Every statement the repository runs may run twice
        (upserts, reads, deletes by condition)."""
        connection, reused = await self._take()
        try:
            result = await self.driver.run(connection, kind, statement, values)
        except self.driver.error as exc:
            if not self.driver.is_disconnect(exc, connection):
                await self._give_back(connection)
                raise
            self._discard(connection)
            if not reused:
                raise
            self._close_idle()  # the server dropped them too, most likely
            return await self._once(kind, statement, values)
        except BaseException:
            self._discard(connection)  # cancelled part way: what it holds is unknown
            raise
        await self._give_back(connection)
        return result

    async def _take(self, *, autocommit: bool = False) -> tuple[Any, bool]:
        """``(connection, reused)``: an idle held connection, else a new one."""
        if self.driver.holds:
            try:
                connection = self.idle.pop()
                self.in_use.add(connection)
                return connection, True
            except IndexError:
                pass
        try:
            connection = await self.driver.connect(autocommit=autocommit)
        except Exception as exc:
            raise store_error(exc, self.target) from exc
        self.in_use.add(connection)
        return connection, False

    async def _give_back(self, connection: Any) -> None:
        self.in_use.discard(connection)
        if not self.driver.holds:
            await self.driver.release(connection)
        elif self._closed:
            self.driver.discard(connection)
        else:
            self.idle.append(connection)

    def _discard(self, connection: Any) -> None:
        self.in_use.discard(connection)
        self.driver.discard(connection)

    def _close_idle(self) -> None:
        while self.idle:
            try:
                self.driver.discard(self.idle.pop())
            except IndexError:  # another thread took the last one
                break

    async def _error_for(self, exc: BaseException, rows: Sequence[Sequence[Any]]) -> StoreError:
        """:func:`store_error`, except that a statement over MariaDB/MySQL's ``max_allowed_packet``
        says so: the server just drops the connection ("server has gone away")."""
        if self.driver.dialect in ("mysql", "mariadb") and rows:
            size = max(sum(len(value) for value in row if isinstance(value, (bytes, str))) for row in rows)
            limit = await self._max_allowed_packet() if size >= _SMALLEST_PACKET_LIMIT else None
            if limit is not None and size >= limit:
                return UnstorableValueError(
                    f"{self.target} refused a statement of {size} bytes: the server's max_allowed_packet is "
                    f"{limit} bytes. Store smaller payloads or raise max_allowed_packet on the server "
                    "(nothing was written).",
                    target=self.target,
                )
        return store_error(exc, self.target)

    async def _max_allowed_packet(self) -> int | None:
        """The server's limit, read on a fresh connection; ``None`` if it cannot be read."""
        try:
            connection = await self.driver.connect()
        except Exception:
            return None
        try:
            row = await self.driver.run(connection, "one", _MAX_ALLOWED_PACKET, ())
            return None if row is None else int(row[0])
        except self.driver.error:
            return None
        finally:
            self.driver.discard(connection)

    async def vacuum(self) -> int | None:
        """PostgreSQL: ``VACUUM FULL cache_rows`` rewrites the table (plain ``VACUUM`` only marks
        space reusable, it rarely returns any); it holds an exclusive lock on the table while it
        runs and cannot run inside a transaction, so it gets an autocommit connection. Returns the
        bytes ``pg_total_relation_size`` shrank by. MariaDB/MySQL: ``OPTIMIZE TABLE cache_rows``
        (InnoDB rebuilds the table online); ``None``, as the server's size figures are estimates."""
        connection, _reused = await self._take(autocommit=True)
        run = self.driver.run
        try:
            if self.driver.dialect == "postgresql":
                before = await run(connection, "one", _POSTGRES_SIZE, ())
                await run(connection, "count", _POSTGRES_VACUUM, ())
                after = await run(connection, "one", _POSTGRES_SIZE, ())
                reclaimed: int | None = max(int(before[0]) - int(after[0]), 0)
            else:
                # OPTIMIZE reports problems as result rows, not as errors.
                for _table, _op, kind, message in await run(connection, "all", _MYSQL_OPTIMIZE, ()):
                    if str(kind).lower() == "error":
                        raise StoreError(f"OPTIMIZE TABLE failed on {self.target}: {message}", target=self.target)
                reclaimed = None
        except self.driver.error as exc:
            self._discard(connection)
            raise store_error(exc, self.target) from exc
        except BaseException:
            self._discard(connection)
            raise
        await self._give_back(connection)
        return reclaimed

    def discard_all(self) -> None:
        """Close every idle connection, and every connection still in use as it comes back."""
        self._closed = True
        self._close_idle()


class AsyncServerConnections(ServerConnections, AsyncConnections):
    """Server connections of a native async driver (or a caller's ``AsyncEngine``)."""

    async def close(self) -> None:
        self.discard_all()


class _Held(NamedTuple):
    """A pooled DB-API connection and its cursor; ``autocommit``: switched to it by us."""

    connection: Any
    cursor: Any
    autocommit: bool


class _EngineDriver:
    """SQLAlchemy's DB-API connections of an engine, run on the calling thread (never suspending).

    ``holds``: an engine we created; its connections are kept in autocommit
    (checking one out of the pool per call costs a pre-ping round trip, and a
    read's transaction a rollback on return: three round trips where the raw
    driver needs one); batches say ``BEGIN``/``COMMIT``. Otherwise a caller's
    engine: a connection is checked out per call, writes commit, reads roll back
    on return, as its pool's settings say.
    """

    def __init__(self, store: StoreEngine, *, holds: bool) -> None:
        self._engine: Engine = store.engine
        self.error: type[BaseException] = store.engine.dialect.loaded_dbapi.Error  # the DB-API's base error
        self.dialect = store.engine.dialect.name
        self.holds = holds

    async def connect(self, *, autocommit: bool = False) -> _Held:
        raw = self._engine.raw_connection()
        autocommit = self.holds or autocommit
        if autocommit:
            self._engine.dialect.set_isolation_level(cast("DBAPIConnection", raw.dbapi_connection), "AUTOCOMMIT")
        # The cursor is kept too: making one costs psycopg ~5 µs, a tenth of a get.
        return _Held(raw, raw.cursor(), autocommit)

    async def run(self, held: _Held, kind: Kind, statement: Compiled, values: Sequence[Any]) -> Any:
        cursor = held.cursor
        if kind == "many":
            rows = [statement.bind(row) for row in values]
            if not self.holds:
                cursor.executemany(statement.sql, rows)
                held.connection.commit()
                return cursor.rowcount
            cursor.execute("BEGIN")  # one transaction for the batch, autocommit or not
            try:
                cursor.executemany(statement.sql, rows)
                count = cursor.rowcount
                cursor.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(self.error):
                    cursor.execute("ROLLBACK")
                raise
            return count
        cursor.execute(statement.sql, statement.bind(values))
        if kind == "one":
            return cursor.fetchone()
        if kind == "all":
            return cursor.fetchall()
        if not self.holds:
            held.connection.commit()
        return cursor.rowcount

    async def release(self, held: _Held) -> None:
        held.cursor.close()
        if held.autocommit:  # a vacuum's: the pool's other users expect transactions
            self._engine.dialect.reset_isolation_level(cast("DBAPIConnection", held.connection.dbapi_connection))
        held.connection.close()  # back to the pool, which rolls an open read back

    def discard(self, held: _Held) -> None:
        held.connection.invalidate()  # the pool must not hand this connection out again

    def is_disconnect(self, error: BaseException, held: _Held) -> bool:
        # psycopg's dialect can tell only by looking at the connection (closed or broken).
        return bool(self._engine.dialect.is_disconnect(cast(Any, error), held.connection.dbapi_connection, None))


async def _blocking_sleep(seconds: float) -> None:
    time.sleep(seconds)


class PooledConnections(ServerConnections, BlockingConnections):
    """A caller's engine: a pooled DB-API connection per call; writes commit, reads roll back on return."""

    def __init__(self, store: StoreEngine) -> None:
        super().__init__(_EngineDriver(store, holds=False), store.target, sleep=_blocking_sleep)
        self._store = store

    def close(self) -> None:
        self.discard_all()
        self._store.dispose()


class HeldServerConnections(PooledConnections):
    """An engine we created: its connections kept between calls, in autocommit. Autocommit
    connections never go back to the pool, where migrations expect transactions: :meth:`close`
    closes them."""

    def __init__(self, store: StoreEngine) -> None:
        ServerConnections.__init__(self, _EngineDriver(store, holds=True), store.target, sleep=_blocking_sleep)
        self._store = store


def connections_for(store: StoreEngine) -> BlockingConnections:
    """The right strategy for ``store``'s engine; closing it also disposes an engine we created."""
    if store.is_sqlite:
        pooled = store.engine.raw_connection()

        def release() -> None:
            pooled.close()
            store.dispose()

        connection = cast(sqlite3.Connection, pooled.driver_connection)
        return SharedSqliteConnection(connection, store.target, release, store.path)
    return HeldServerConnections(store) if store.owns_engine else PooledConnections(store)
