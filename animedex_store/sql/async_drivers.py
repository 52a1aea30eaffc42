"""The native async drivers behind :class:`~animedex_store.AsyncCacheRepository` on a server.

PostgreSQL runs on asyncpg, MariaDB/MySQL on asyncmy: measured on our own
statements and animedex's real payloads against psycopg's async mode and
aiomysql, they were the faster of each pair (README, "Async"; ``python -m
benchmarks --only async``). A URL naming a sync driver (``postgresql+psycopg://``,
``mysql+pymysql://``) or none is served by them; each is an extra
(``animedex-store[postgres-async]``, ``[mysql-async]``). Every statement is the
SQLAlchemy construct compiled for that driver's dialect, run on the driver's own
connection: :class:`~animedex_store.sql.servers.ServerConnections` holds them
between calls in autocommit and adds what every engine gets (retries, limits).

A caller's ``AsyncEngine`` is used as it is (:class:`EngineDriver`): a connection
of its pool per call, through SQLAlchemy.

A connection belongs to the event loop it was made on (its transport is
registered there). Dropping one whose loop is gone (:meth:`AsyncpgDriver.abandon`)
shuts its socket down (the server ends the session at once) and closes it
directly: the transport's own ``abort()`` would need the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import shlex
import socket
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ..core.compiled import Compiled
from ..errors import EventLoopError
from .servers import Kind

if TYPE_CHECKING:
    from sqlalchemy import Dialect
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["ASYNC_DRIVERS", "async_url", "driver_for", "AsyncpgDriver", "AsyncmyDriver", "EngineDriver"]

#: The async driver serving each kind of server, and the extra that installs it.
ASYNC_DRIVERS = {
    "postgresql": ("asyncpg", "postgres-async"),
    "mysql": ("asyncmy", "mysql-async"),
    "mariadb": ("asyncmy", "mysql-async"),
}
#: Query parameters of a URL that only a sync driver understands.
_SYNC_ONLY_QUERY = frozenset({"ssl_disabled"})
T = TypeVar("T")
# MariaDB/MySQL client errors that mean the connection is gone: 2006 server has gone away,
# 2013 lost connection during query, 2055 lost connection at reading.
_MYSQL_GONE = frozenset({2006, 2013, 2055})
# As every MariaDB session of ours runs (see animedex_store.sql.engine): no gap locks between purges and upserts.
_READ_COMMITTED = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"


def async_url(url: URL) -> URL:
    """``url`` spelled for its async driver: ``postgresql+asyncpg``, ``mysql+asyncmy``.

    Raises ``ValueError`` for a kind of database that has none here.
    """
    backend = url.get_backend_name()
    if backend not in ASYNC_DRIVERS:
        raise ValueError(f"the async repository runs on SQLite, PostgreSQL or MariaDB/MySQL, not {backend!r}")
    return url.set(drivername=f"{backend}+{ASYNC_DRIVERS[backend][0]}")


def driver_for(url: URL) -> AsyncpgDriver | AsyncmyDriver:
    """The driver for ``url`` (any spelling of its kind of database)."""
    url = async_url(url)
    module, extra = ASYNC_DRIVERS[url.get_backend_name()]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"the async repository on {url.get_backend_name()} needs {module}: "
            f"pip install 'animedex-store[{extra}]' ({exc})"
        ) from exc
    return AsyncpgDriver(url) if module == "asyncpg" else AsyncmyDriver(url)


def _connect_arguments(url: URL) -> tuple[Dialect, dict[str, Any]]:
    """The driver's dialect, and its connect keywords as SQLAlchemy would pass them."""
    dialect = url.get_dialect()()
    _args, keywords = dialect.create_connect_args(url.difference_update_query(_SYNC_ONLY_QUERY))
    return dialect, dict(keywords)


class AsyncpgDriver:
    """asyncpg: statements prepared and cached per connection by asyncpg; rows as ``Record``s."""

    holds = True
    dialect = "postgresql"

    def __init__(self, url: URL) -> None:
        import asyncpg  # type: ignore[import-untyped,import-not-found,unused-ignore]  # no type information

        self.url = url
        self.sa_dialect, keywords = _connect_arguments(url)
        # libpq's "options" (the test sandboxes' search_path) are server settings to asyncpg.
        options = keywords.pop("options", None)
        if options:
            settings = dict(keywords.pop("server_settings", None) or {})
            words = shlex.split(options)
            for word, following in zip(words, [*words[1:], ""]):
                setting = word[2:] if word.startswith("-c") and len(word) > 2 else following if word == "-c" else ""
                if "=" in setting:
                    name, value = setting.split("=", 1)
                    settings[name] = value
            keywords["server_settings"] = settings
        for name in ("prepared_statement_cache_size", "prepared_statement_name_func", "async_creator_fn"):
            keywords.pop(name, None)
        self._keywords = keywords
        self._asyncpg = asyncpg
        self.error = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)

    async def native_connect(self, *, autocommit: bool = True) -> Any:
        """A new asyncpg connection (outside a ``transaction()`` block every statement commits)."""
        return await self._asyncpg.connect(**self._keywords)

    async def connect(self, *, autocommit: bool = False) -> Any:
        return await _connect_apart(self.native_connect(), self.discard)

    async def run(self, connection: Any, kind: Kind, statement: Compiled, values: Sequence[Any]) -> Any:
        # Cancelled while asyncpg waits for the server, the call would have asyncpg cancel the query
        # and wait for the server to confirm, which can hang (seen with executemany). The call runs
        # as a task of its own instead: a cancelled caller closes the connection at once (the server
        # rolls back what was open) and stops waiting.
        call = asyncio.ensure_future(self._run(connection, kind, statement, values))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            connection.terminate()
            call.add_done_callback(_consume)
            raise

    async def _run(self, connection: Any, kind: Kind, statement: Compiled, values: Sequence[Any]) -> Any:
        if kind == "many":
            # Atomic on its own: asyncpg wraps it in a transaction.
            rows = [statement.bind(row) for row in values]
            await connection.executemany(statement.sql, rows)
            return len(rows)
        parameters = statement.bind(values)
        if any(type(value) is str and "\x00" in value for value in parameters):
            # What psycopg says before sending (the server's own words name only the byte).
            raise self._asyncpg.exceptions.CharacterNotInRepertoireError(
                "PostgreSQL text fields cannot contain NUL (0x00) bytes"
            )
        if kind == "one":
            return await connection.fetchrow(statement.sql, *parameters)
        if kind == "all":
            return await connection.fetch(statement.sql, *parameters)
        status: str = await connection.execute(statement.sql, *parameters)  # e.g. "DELETE 3", "INSERT 0 1"
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def release(self, connection: Any) -> None:
        raise NotImplementedError("asyncpg connections are held, never released")

    def discard(self, connection: Any) -> None:
        connection.terminate()  # closes the socket at once; the server rolls back what was open

    def is_disconnect(self, error: BaseException, connection: Any) -> bool:
        gone = (self._asyncpg.ConnectionDoesNotExistError, self._asyncpg.ConnectionFailureError, OSError)
        return bool(connection.is_closed()) or isinstance(error, gone)

    def is_closed(self, connection: Any) -> bool:
        return bool(connection.is_closed())

    def end_session(self, connection: Any) -> None:
        """Tell the server the session ends (its socket shut down), from any thread, at once."""
        _shut_down(connection._transport)

    def abandon(self, connection: Any) -> None:
        """Close a connection whose event loop is closed: its socket directly."""
        _close_without_loop(connection._transport)
        connection._aborted = True  # what terminate() records; asyncpg's __del__ then has nothing to warn about


async def _connect_apart(connecting: Coroutine[Any, Any, T], close: Callable[[T], object]) -> T:
    """``await connecting`` in a task of its own. The drivers connect through ``asyncio.wait_for``,
    which before Python 3.12 swallows a cancellation that arrives as the connection completes (the
    caller then goes on as if never cancelled); shielded, the caller is cancelled at once, and a
    connection that arrives after that is closed."""
    task = asyncio.ensure_future(connecting)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:

        def close_unwanted(done: asyncio.Future[T]) -> None:
            if not done.cancelled() and done.exception() is None:
                close(done.result())

        task.add_done_callback(close_unwanted)
        raise


def _close_asyncmy(connection: Any) -> None:
    connection.close()  # the socket, at once


def _shut_down(transport: Any) -> None:
    """Shut a connection's socket down: the server sees the session end now. The file descriptor
    stays open for the transport (or :func:`_close_without_loop`) to close."""
    sock = None if transport is None else transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _close_without_loop(transport: Any) -> None:
    """Close a transport's socket when its event loop is closed (``abort()`` would schedule the close
    on that loop and raise). asyncio's selector transports keep the socket as ``_sock``; cleared, the
    transport's ``__del__`` has nothing left to close or warn about."""
    if transport is None:
        return
    _shut_down(transport)
    sock = getattr(transport, "_sock", None)
    if isinstance(sock, socket.socket):
        sock.close()
        with contextlib.suppress(AttributeError):
            transport._sock = None


def _consume(call: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a call nobody waits for any more (its connection was closed)."""
    if not call.cancelled():
        call.exception()


class _Cursored(NamedTuple):
    """An asyncmy connection and its cursor, kept together between calls."""

    connection: Any
    cursor: Any


class AsyncmyDriver:
    """asyncmy: PyMySQL's protocol in Cython; rows counted as matched (``CLIENT_FOUND_ROWS``), as
    SQLAlchemy's MySQL drivers count them."""

    holds = True

    def __init__(self, url: URL) -> None:
        import asyncmy  # type: ignore[import-untyped,import-not-found,unused-ignore]  # no type information
        from asyncmy.constants import CLIENT  # type: ignore[import-untyped,import-not-found,unused-ignore]

        self.url = url
        self.sa_dialect, keywords = _connect_arguments(url)
        keywords["client_flag"] = int(keywords.get("client_flag", 0)) | CLIENT.FOUND_ROWS
        keywords.setdefault("charset", "utf8mb4")
        keywords["init_command"] = _READ_COMMITTED
        keywords.pop("autocommit", None)
        self._keywords = keywords
        self._asyncmy = asyncmy
        self.dialect = url.get_backend_name()
        self.error = (asyncmy.errors.MySQLError, OSError)

    async def native_connect(self, *, autocommit: bool = True) -> Any:
        """A new asyncmy connection, in autocommit unless told otherwise (a migration's)."""
        return await self._asyncmy.connect(**self._keywords, autocommit=autocommit)

    async def connect(self, *, autocommit: bool = False) -> _Cursored:
        connection = await _connect_apart(self.native_connect(), _close_asyncmy)
        return _Cursored(connection, connection.cursor())

    async def run(self, held: _Cursored, kind: Kind, statement: Compiled, values: Sequence[Any]) -> Any:
        cursor = held.cursor
        if kind == "many":
            await held.connection.begin()
            try:
                await cursor.executemany(statement.sql, [statement.bind(row) for row in values])
                count = cursor.rowcount
                await held.connection.commit()
            except self.error:
                await held.connection.rollback()
                raise
            return count
        await cursor.execute(statement.sql, statement.bind(values))
        if kind == "one":
            return await cursor.fetchone()
        if kind == "all":
            return await cursor.fetchall()
        return cursor.rowcount

    async def release(self, held: _Cursored) -> None:
        raise NotImplementedError("asyncmy connections are held, never released")

    def discard(self, held: _Cursored) -> None:
        held.connection.close()  # the socket, at once; the server rolls back what was open

    def is_disconnect(self, error: BaseException, held: _Cursored) -> bool:
        code = error.args[0] if error.args and isinstance(error.args[0], int) else None
        return not held.connection.connected or code in _MYSQL_GONE or isinstance(error, OSError)

    def is_closed(self, held: _Cursored) -> bool:
        return not held.connection.connected

    def end_session(self, held: _Cursored) -> None:
        """Tell the server the session ends (its socket shut down), from any thread, at once."""
        _shut_down(held.connection._transport)

    def abandon(self, held: _Cursored) -> None:
        """Close a connection whose event loop is closed: its socket directly."""
        connection = held.connection
        _close_without_loop(connection._transport)
        connection._transport = None  # what close() records
        connection._connected = False


class EngineDriver:
    """A caller's ``AsyncEngine``, used as it is: a connection of its pool per call, through
    SQLAlchemy (``exec_driver_sql``); writes commit, reads roll back on return.

    Its pooled connections belong to the event loop that made them (SQLAlchemy:
    "Using multiple asyncio event loops"), and a driver used from another loop
    fails, or hangs (asyncmy). So a pooled engine serves one loop at a time: from
    another loop while its pool still holds the first one's connections, the call
    raises an :class:`~animedex_store.errors.EventLoopError` that says what to do
    (an engine per loop, ``poolclass=NullPool``, or ``await engine.dispose()``
    between loops), before the driver is touched."""

    holds = False
    any_loop = False  # the repository renews leases on the caller's loop

    def __init__(self, engine: AsyncEngine) -> None:
        from sqlalchemy.exc import DBAPIError

        self._engine = engine
        self.sa_dialect = engine.dialect
        self.dialect = engine.dialect.name
        self.error = DBAPIError
        self._closing: set[asyncio.Task[None]] = set()
        self._pooled = type(engine.sync_engine.pool).__name__ != "NullPool"
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop a pooled engine serves now

    def _check_loop(self) -> None:
        """Refuse a pooled engine's use from a second loop while it holds the first one's connections."""
        loop = asyncio.get_running_loop()
        if not self._pooled or self._loop is loop:
            return
        pool: Any = self._engine.sync_engine.pool
        held = getattr(pool, "checkedin", lambda: 0)() + getattr(pool, "checkedout", lambda: 0)()
        if self._loop is not None and held:
            raise self._other_loop(RuntimeError("its pool holds connections made on another event loop"))
        self._loop = loop

    async def connect(self, *, autocommit: bool = False) -> AsyncConnection:
        self._check_loop()
        try:
            connection = await self._engine.connect()
            if autocommit:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
        except RuntimeError as exc:
            raise self._other_loop(exc) from exc
        return connection

    async def run(self, connection: AsyncConnection, kind: Kind, statement: Compiled, values: Sequence[Any]) -> Any:
        try:
            return await self._run(connection, kind, statement, values)
        except RuntimeError as exc:
            raise self._other_loop(exc) from exc

    def _other_loop(self, error: RuntimeError) -> EventLoopError:
        from .engine import target_name

        name = target_name(self._engine.sync_engine)
        return EventLoopError(
            f"{name}: the AsyncEngine's connection belongs to another event loop ({error}); give each event "
            "loop an AsyncEngine of its own, create the engine with poolclass=NullPool, await "
            "engine.dispose() before another loop uses it, or pass a URL (the repository then keeps "
            "connections per loop)",
            target=name,
        )

    async def _run(self, connection: AsyncConnection, kind: Kind, statement: Compiled, values: Sequence[Any]) -> Any:
        if kind == "many":
            await connection.exec_driver_sql(statement.sql, [statement.bind(row) for row in values])
            await connection.commit()
            return len(values)
        result = await connection.exec_driver_sql(statement.sql, statement.bind(values))
        if kind == "one":
            return result.fetchone()
        if kind == "all":
            return result.fetchall()
        await connection.commit()
        return result.rowcount

    async def release(self, connection: AsyncConnection) -> None:
        await connection.close()

    def discard(self, connection: AsyncConnection) -> None:
        # Invalidating awaits; a cancelled call cannot wait for it, so it runs on its own.
        closing = asyncio.ensure_future(connection.invalidate())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def is_disconnect(self, error: BaseException, connection: AsyncConnection) -> bool:
        return bool(getattr(error, "connection_invalidated", False))

    def is_closed(self, connection: AsyncConnection) -> bool:
        return False  # never held: checked out of the pool, which pre-pings as its owner set it

    def end_session(self, connection: AsyncConnection) -> None:
        """Never called: nothing is held."""

    def abandon(self, connection: AsyncConnection) -> None:
        """Never called: nothing is held."""
