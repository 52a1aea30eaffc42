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

A held connection that sits idle for :data:`IDLE_CONNECTION_SECONDS` is closed
(by the repository's background thread, or by its event loop's timer), so a
repository that goes quiet gives its server sessions back. An async
repository's connections belong to the event loop that made them:
:class:`AsyncServerConnections` keeps a :class:`ServerConnections` per loop, and
drops those of a loop that is gone without awaiting it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

from ..core.compiled import Compiled
from ..core.connections import AsyncConnections, BlockingConnections, Connections, Schedule
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
    "IDLE_CONNECTION_SECONDS",
    "connections_for",
]

#: Tries of a server statement the server rolled back as a deadlock victim.
DEADLOCK_ATTEMPTS = 5
#: A held server connection unused this long is closed. A minute: a burst's extra connections go
#: back soon after it, a repository that goes quiet holds no session, and one in steady use (a call a
#: minute or more) keeps its connection; and far below the servers' own idle cuts (MariaDB's
#: ``wait_timeout`` is 8 hours, PgBouncer's ``server_idle_timeout`` 10 minutes), so a connection we
#: keep is one the server keeps too. A module constant, not an option: nothing to tune per repository.
IDLE_CONNECTION_SECONDS = 60.0
# MariaDB/MySQL never accept a max_allowed_packet below 1 KiB: smaller statements are not asked about.
_SMALLEST_PACKET_LIMIT = 1024
_MAX_ALLOWED_PACKET = Compiled("SELECT @@max_allowed_packet", tuple)
_PING = Compiled("SELECT 1", tuple)
#: What the driver runs for the kinds of call that only :class:`ServerConnections` tells apart.
_DRIVER_KINDS = {"removed": "count", "once": "count"}
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

    def is_closed(self, connection: Any) -> bool:
        """Known closed before use (an event loop saw the server hang up): not worth a try."""


class ServerConnections(Connections):
    """A connection per call from ``driver``, with the retries every engine gets.

    ``sleep`` pauses between deadlock retries (the runtime's: blocking or async);
    ``slots``, when given, bounds the connections in use at once (``async with``);
    ``schedule``, when given, closes held connections idle for
    :data:`IDLE_CONNECTION_SECONDS` (see :meth:`schedule_with`).
    """

    def __init__(
        self,
        driver: Driver,
        target: str,
        *,
        sleep: Callable[[float], Awaitable[None]],
        slots: Any = None,
        schedule: Schedule | None = None,
    ) -> None:
        self.driver = driver
        self.target = target
        self._sleep = sleep
        self._slots = slots
        # Held connections not in use, each with when it went idle, the most recent last
        # (list.pop/append/insert are atomic: no lock).
        self.idle: list[tuple[Any, float]] = []
        self.in_use: set[Any] = set()  # connections taken by calls under way (set.add/discard are atomic)
        self._closed = False
        self._schedule = schedule
        self._sweep_due = False

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

    async def remove(self, statement: Compiled, values: Sequence[Any]) -> bool:
        removed: bool = await self._run("removed", statement, values)
        return removed

    async def execute_once(self, statement: Compiled, values: Sequence[Any]) -> int:
        count: int = await self._run("once", statement, values)
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

    async def _once(self, kind: Kind, statement: Compiled, values: Sequence[Any], *, again: bool = False) -> Any:
        """One try on one connection; driver errors propagate untranslated.

        A held connection the server dropped (while it sat idle, or during the
        call: its reply lost) fails with a disconnect: then every idle
        connection is closed and the call runs once more on a fresh one. Every
        statement the repository runs has the same effect run twice (upserts,
        reads, deletes by condition, a claim by the same holder, renewals and
        releases of its own claim); a ``"removed"`` delete that ran ``again``
        answers ``True`` when the row is gone (see
        :meth:`~animedex_store.core.connections.Connections.remove`). A ``"once"``
        statement is never run again: a held connection is asked whether it still
        answers before it is risked, and a lost reply is an error (see
        :meth:`~animedex_store.core.connections.Connections.execute_once`)."""
        connection, reused = await self._take()
        if kind == "once" and reused and not await self._answers(connection):
            return await self._once(kind, statement, values)  # dropped while idle: nothing was sent on it
        try:
            result = await self.driver.run(connection, _DRIVER_KINDS.get(kind, kind), statement, values)
        except self.driver.error as exc:
            if not self.driver.is_disconnect(exc, connection):
                await self._give_back(connection)
                raise
            self._discard(connection)
            if not reused or kind == "once":
                raise
            self._close_idle()  # the server dropped them too, most likely
            return await self._once(kind, statement, values, again=True)
        except BaseException:
            self._discard(connection)  # cancelled part way: what it holds is unknown
            raise
        await self._give_back(connection)
        return (result > 0 or again) if kind == "removed" else result

    async def _answers(self, connection: Any) -> bool:
        """Whether a held connection still answers (one round trip); one that does not is dropped, with
        the other idle ones (the server dropped them too, most likely)."""
        try:
            await self.driver.run(connection, "one", _PING, ())
        except self.driver.error as exc:
            if not self.driver.is_disconnect(exc, connection):
                await self._give_back(connection)
                raise
            self._discard(connection)
            self._close_idle()
            return False
        return True

    async def _take(self, *, autocommit: bool = False) -> tuple[Any, bool]:
        """``(connection, reused)``: an idle held connection, else a new one."""
        if self.driver.holds:
            while True:
                try:
                    connection, _since = self.idle.pop()
                except IndexError:
                    break
                if self.driver.is_closed(connection):  # hung up while idle: no statement is risked on it
                    self.driver.discard(connection)
                    continue
                self.in_use.add(connection)
                return connection, True
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
            self.idle.append((connection, time.monotonic()))
            if not self._sweep_due and self._schedule is not None:
                self._sweep_due = True
                self._schedule(IDLE_CONNECTION_SECONDS, self.sweep)

    def _discard(self, connection: Any) -> None:
        self.in_use.discard(connection)
        self.driver.discard(connection)

    def _close_idle(self) -> None:
        for connection in self.take_idle():
            self.driver.discard(connection)

    def take_idle(self) -> list[Any]:
        """Every idle connection, taken out of the idle list."""
        taken = []
        while True:
            try:
                taken.append(self.idle.pop()[0])
            except IndexError:  # empty (another thread may have taken the last one)
                return taken

    def schedule_with(self, schedule: Schedule) -> None:
        """Close held connections idle for :data:`IDLE_CONNECTION_SECONDS`, looked at through
        ``schedule`` (the repository's background thread)."""
        self._schedule = schedule

    def sweep(self) -> None:
        """Close the held connections idle for :data:`IDLE_CONNECTION_SECONDS` or more, oldest first, and
        look again when the next one will be."""
        self._sweep_due = False
        limit = time.monotonic() - IDLE_CONNECTION_SECONDS
        while True:
            try:
                connection, since = self.idle.pop(0)
            except IndexError:
                return
            if since > limit:  # in use since: back, and look again when it will have sat long enough
                self.idle.insert(0, (connection, since))
                if self._schedule is not None and not self._closed:
                    self._sweep_due = True
                    self._schedule(since - limit, self.sweep)
                return
            self.driver.discard(connection)

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


class AsyncServerConnections(AsyncConnections):
    """Server connections of a native async driver (or a caller's ``AsyncEngine``), one
    :class:`ServerConnections` per event loop that calls: its held connections, its bound of
    ``max_connections`` in use at once, its idle timer. Those of a loop that is gone (closed) are
    dropped without it: the sockets are closed directly, and the server ends the sessions at once."""

    def __init__(self, driver: Any, target: str, *, max_connections: int) -> None:
        import asyncio

        from ..rules.loops import PerLoop

        self.driver = driver
        self.target = target
        self.any_loop = getattr(driver, "any_loop", True)
        self._asyncio = asyncio
        self._max_connections = max_connections
        self._loops: PerLoop[ServerConnections] = PerLoop(self._new_loop, self._drop_loop)
        self._pid = os.getpid()

    def _new_loop(self) -> ServerConnections:
        from ..rules.loops import schedule_on

        asyncio = self._asyncio
        return ServerConnections(
            self.driver,
            self.target,
            sleep=asyncio.sleep,
            slots=asyncio.Semaphore(self._max_connections),
            schedule=schedule_on(asyncio.get_running_loop()),
        )

    def _drop_loop(self, state: ServerConnections, loop: Any) -> None:
        from ..rules.loops import call_on, same_process

        state._closed = True  # connections still in use there close as they come back
        idle = state.take_idle()
        if not idle or not same_process(self._pid):
            return  # after os.fork: the parent's sessions, not ours to end
        driver = self.driver
        for connection in idle:
            driver.end_session(connection)  # the server ends it now, whatever becomes of the loop

        def discard() -> None:
            for connection in idle:
                driver.discard(connection)

        if not call_on(loop, discard):
            for connection in idle:
                driver.abandon(connection)  # its loop is closed: nothing will run there again

    @property
    def in_use(self) -> set[Any]:
        """Connections taken by calls under way, on every loop."""
        return set().union(*(state.in_use for state in self._loops.states()))

    async def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        return await self._loops.get().fetchone(statement, values)

    async def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        return await self._loops.get().fetchall(statement, values)

    async def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        return await self._loops.get().execute(statement, values)

    async def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        return await self._loops.get().executemany(statement, rows)

    async def remove(self, statement: Compiled, values: Sequence[Any]) -> bool:
        return await self._loops.get().remove(statement, values)

    async def execute_once(self, statement: Compiled, values: Sequence[Any]) -> int:
        return await self._loops.get().execute_once(statement, values)

    async def vacuum(self) -> int | None:
        return await self._loops.get().vacuum()

    async def close(self) -> None:
        self.close_now()  # this loop's connections close at once too: closing one never waits

    def close_now(self) -> None:
        self._loops.drop_all()


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

    def is_closed(self, held: _Held) -> bool:
        return False  # a blocking driver learns of a hang-up only by using the connection

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
