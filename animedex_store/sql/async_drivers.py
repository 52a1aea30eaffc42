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
"""

from __future__ import annotations

import asyncio
import importlib
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..core.compiled import Compiled
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
        return await self.native_connect()

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
        connection = await self.native_connect()
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


class EngineDriver:
    """A caller's ``AsyncEngine``, used as it is: a connection of its pool per call, through
    SQLAlchemy (``exec_driver_sql``); writes commit, reads roll back on return."""

    holds = False

    def __init__(self, engine: AsyncEngine) -> None:
        from sqlalchemy.exc import DBAPIError

        self._engine = engine
        self.sa_dialect = engine.dialect
        self.dialect = engine.dialect.name
        self.error = DBAPIError
        self._closing: set[asyncio.Task[None]] = set()

    async def connect(self, *, autocommit: bool = False) -> AsyncConnection:
        connection = await self._engine.connect()
        if autocommit:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
        return connection

    async def run(self, connection: AsyncConnection, kind: Kind, statement: Compiled, values: Sequence[Any]) -> Any:
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
