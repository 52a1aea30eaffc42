"""``AsyncCacheRepository``: the same cache for asyncio applications, never blocking their event loop.

A thin shell of I/O around the operations of :mod:`animedex_store.rules.operations`,
which :class:`~animedex_store.CacheRepository` runs too: the same options,
methods, arguments, checks, errors and results, as coroutines. Constructing does
no I/O; ``async with`` or ``await repo.open()`` opens (the first call opens if
neither did), on a thread (:mod:`animedex_store.migrations.connect`). What runs where:

* a SQLite file: reads inline on the loop through a connection that never
  waits, writes on a thread of the repository's own, and any statement that
  runs past a bound of time measured by SQLite itself on that thread too
  (:mod:`animedex_store.fastpath.async_connection`); ``sqlite://`` in memory
  inline, under the same bound;
* PostgreSQL and MariaDB/MySQL: asyncpg and asyncmy, whatever driver the URL
  names (:mod:`animedex_store.sql.async_drivers`), at most ``max_connections``
  at once per event loop; a caller's ``AsyncEngine`` as it is;
* opening, migrating, a caller's sync ``Engine``, a plain (non-``async``)
  ``fetch``: on a thread; lease renewals: on the repository's background thread.

**Any event loop.** A repository works from whichever loop calls it: a new loop
after ``asyncio.run()`` ended, one loop per test, loops in several threads at
once. What belongs to a loop (server connections, the ``max_connections`` bound,
the inline reads' budget, in-process flights) is kept per loop
(:mod:`animedex_store.rules.loops`); what a closed loop held is dropped without
it (a server connection's socket is closed directly). The exception: a caller's
``AsyncEngine`` with a connection pool serves the loop its connections were made
on, and another loop gets an :class:`~animedex_store.errors.EventLoopError`
saying so.

Coroutines of one loop asking ``get_or_fetch`` for one key share one fetch
(:mod:`animedex_store.rules.async_runtime`); across loops and processes the
claim in ``cache_locks`` decides, as for the sync class.

**Lifetime.** ``close()`` closes everything; a repository nobody references any
more is closed by its finalizer, without a loop (so is one closed with
:func:`close_outside_loop`). Held server connections idle for
:data:`~animedex_store.sql.servers.IDLE_CONNECTION_SECONDS` close on their own.

Importing this module loads ``asyncio``; ``import animedex_store`` does not
(``AsyncCacheRepository`` is imported from here on first use).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from .core.clock import Clock, clock_now
from .core.compiled import StatementSet
from .core.connections import AsyncConnections, ClosedConnections, Database
from .core.response import CachedResponse, StoredKey
from .core.validation import check_count, renamed_argument
from .fastpath.async_connection import InlineConnections
from .fastpath.connection import SharedSqliteConnection
from .fastpath.targets import DEFAULT_TIMEOUT_SECONDS, Target
from .migrations.connect import async_engine, open_async, open_async_engine
from .rules.async_runtime import AsyncRuntime
from .rules.listing import KeyListing, KeyQuery, key_query
from .rules.operations import Operations
from .rules.options import check_options, documented_by

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .core.stats import CacheStats

__all__ = ["AsyncCacheRepository", "DEFAULT_MAX_CONNECTIONS", "async_repository_on", "close_outside_loop"]

ModelT = TypeVar("ModelT", bound="BaseModel")
#: Server connections an async repository opens at most, per event loop (a SQLite file uses two).
DEFAULT_MAX_CONNECTIONS = 10


class _Abandoned(Exception):
    """An open on a caller's ``AsyncEngine`` ended with its event loop: the next caller opens again."""


class AsyncCacheRepository:
    """:class:`~animedex_store.CacheRepository` for asyncio: the same ``target`` and options, the same
    methods as coroutines (``keys`` an async iterator).

    ``target`` also takes an ``AsyncEngine`` (used as it is, not disposed on
    close). ``max_connections`` bounds the server connections in use at once on
    each event loop. Usable from any event loop, and from several at once.
    """

    def __init__(
        self,
        target: Target | Any = None,
        *,
        clock: Clock | None = None,
        migrate: bool = True,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_bytes: int | None = None,
        redact_headers: Iterable[str] = (),
        compression: str | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self._options = check_options(clock, max_bytes, redact_headers, compression)
        self._max_connections = check_count("max_connections", max_connections)
        self._target, self._migrate, self._timeout = target, migrate, timeout
        self._ops: Operations | None = None
        self._runtime = AsyncRuntime("animedex-store background")
        self._lock = threading.Lock()  # guards the opening and closing below, from any thread or loop
        self._opening: concurrent.futures.Future[Operations] | None = None  # any loop can wait for it
        self._closed = False
        self.target: str | None = None  #: the database's name (path, or URL with the password masked) once open

    # -- lifetime -------------------------------------------------------------
    async def open(self) -> AsyncCacheRepository:
        """Open the database (and migrate it, unless ``migrate=False``) if that was not done yet."""
        await self._operations()
        return self

    async def _operations(self) -> Operations:
        while True:
            operations = self._ops
            if operations is not None:
                return operations
            if self._closed:
                ClosedConnections(str(self.target or self._target)).refuse()
            try:
                # Shielded: a cancelled caller stops waiting, the open goes on for the others. What it
                # opened, even if the repository was closed meanwhile (its calls then say so).
                return await asyncio.shield(asyncio.wrap_future(self._start_opening()))
            except _Abandoned:
                continue

    def _start_opening(self) -> concurrent.futures.Future[Operations]:
        """The open under way, started if none is (callers arriving meanwhile wait for the same one)."""
        with self._lock:
            opening = self._opening
            if opening is not None:
                return opening
            opening = self._opening = concurrent.futures.Future()
        engine = async_engine(self._target)
        if engine is None:
            threading.Thread(target=self._open_on_thread, args=(opening,), name="animedex-store open").start()
        else:  # its pool belongs to this loop: open here
            asyncio.ensure_future(self._open_on_loop(engine, opening))
        return opening

    def _open_on_thread(self, opening: concurrent.futures.Future[Operations]) -> None:
        try:
            connections, statements = open_async(
                self._target, migrate=self._migrate, timeout=self._timeout, max_connections=self._max_connections
            )
        except BaseException as exc:
            self._failed(opening, exc)
            return
        self._opened(connections, statements, opening)

    async def _open_on_loop(self, engine: Any, opening: concurrent.futures.Future[Operations]) -> None:
        try:
            connections, statements = await open_async_engine(
                engine, migrate=self._migrate, max_connections=self._max_connections
            )
        except asyncio.CancelledError:
            self._failed(opening, _Abandoned())
            raise
        except BaseException as exc:
            self._failed(opening, exc)
            return
        self._opened(connections, statements, opening)

    def _failed(self, opening: concurrent.futures.Future[Operations], error: BaseException) -> None:
        with self._lock:
            if self._opening is opening:
                self._opening = None  # a failed open is tried again by the next call
        opening.set_exception(error)

    def _opened(
        self,
        connections: AsyncConnections,
        statements: StatementSet,
        opening: concurrent.futures.Future[Operations] | None,
    ) -> None:
        operations = Operations(connections, statements, self._options, self._runtime)
        self._runtime.any_loop = connections.any_loop
        with self._lock:
            closed = self._closed
            if not closed:
                self._ops = operations
                self.target = connections.target
        if closed:
            operations.release()  # closed while it opened: close what the open made
        else:
            # Nobody references the repository any more: its connections close at once, without a loop.
            weakref.finalize(self, operations.release)
        if opening is not None:
            opening.set_result(operations)

    async def close(self) -> None:
        """Close the connections (and the repository's threads). Idempotent."""
        with self._lock:
            self._closed = True
            opening = self._opening
        if opening is not None and not opening.done():
            with contextlib.suppress(Exception):  # an open under way finishes, and closes what it made
                await asyncio.shield(asyncio.wrap_future(opening))
        operations, self._ops = self._ops, None
        if operations is None:
            return
        connections = operations.detach()
        await self._runtime.stop_flights()  # each releases its claim as it unwinds, on the connections
        await connections.close()  # type: ignore[attr-defined]  # an open repository's are AsyncConnections
        self._runtime.stop()  # after: what the connections handed its event loop runs before it closes

    def _close_now(self) -> None:
        """:meth:`close` without a loop (see :func:`close_outside_loop`)."""
        with self._lock:
            self._closed = True
            operations, self._ops = self._ops, None
        if operations is not None:
            self._runtime.abandon_flights()
            operations.release()

    async def __aenter__(self) -> AsyncCacheRepository:
        return await self.open()

    async def __aexit__(self, *_exc_info: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncCacheRepository({self.target or self._target!r})"

    # -- writes ---------------------------------------------------------------
    @documented_by(Operations.set)
    async def set(self, backend: str, signature: str, payload: bytes, *, ttl_seconds: int) -> None:
        await (self._ops or await self._operations()).set(backend, signature, payload, ttl_seconds=ttl_seconds)

    @documented_by(Operations.set_with_meta)
    async def set_with_meta(
        self, backend: str, signature: str, payload: bytes, *, response_headers: Mapping[str, str], ttl_seconds: int
    ) -> None:
        operations = self._ops or await self._operations()
        await operations.set_with_meta(
            backend, signature, payload, response_headers=response_headers, ttl_seconds=ttl_seconds
        )

    @documented_by(Operations.set_model)
    async def set_model(self, backend: str, signature: str, model: BaseModel, *, ttl_seconds: int) -> None:
        await (self._ops or await self._operations()).set_model(backend, signature, model, ttl_seconds=ttl_seconds)

    @documented_by(Operations.set_many)
    async def set_many(
        self, backend: str, items: Mapping[str, bytes] | Iterable[tuple[str, bytes]], *, ttl_seconds: int
    ) -> None:
        await (self._ops or await self._operations()).set_many(backend, items, ttl_seconds=ttl_seconds)

    @documented_by(Operations.replace)
    async def replace(self, backend: str, signature: str, payload: bytes, *, ttl_seconds: int) -> bool:
        return await (self._ops or await self._operations()).replace(
            backend, signature, payload, ttl_seconds=ttl_seconds
        )

    @documented_by(Operations.set_if_missing)
    async def set_if_missing(self, backend: str, signature: str, payload: bytes, *, ttl_seconds: int) -> bool:
        operations = self._ops or await self._operations()
        return await operations.set_if_missing(backend, signature, payload, ttl_seconds=ttl_seconds)

    @documented_by(Operations.touch)
    async def touch(self, backend: str, signature: str, *, ttl_seconds: int) -> bool:
        return await (self._ops or await self._operations()).touch(backend, signature, ttl_seconds=ttl_seconds)

    @documented_by(Operations.modify)
    async def modify(self, backend: str, signature: str, change: Callable[[bytes], bytes]) -> bytes | None:
        return await (self._ops or await self._operations()).modify(backend, signature, change)

    @documented_by(Operations.purge_expired)
    async def purge_expired(self, backend: str | None = None) -> int:
        return await (self._ops or await self._operations()).purge_expired(backend)

    @documented_by(Operations.get_or_fetch)
    async def get_or_fetch(
        self,
        backend: str,
        signature: str,
        fetch: Callable[[], Any],
        *,
        ttl_seconds: int,
        serve_stale: bool = False,
        wait_seconds: float = 30.0,
        lease_seconds: float = 60.0,
    ) -> CachedResponse:
        operations = self._ops or await self._operations()
        return await operations.get_or_fetch(
            backend,
            signature,
            fetch,
            ttl_seconds=ttl_seconds,
            serve_stale=serve_stale,
            wait_seconds=wait_seconds,
            lease_seconds=lease_seconds,
        )

    @documented_by(Operations.delete)
    async def delete(self, backend: str, signature: str) -> bool:
        return await (self._ops or await self._operations()).delete(backend, signature)

    @documented_by(Operations.delete_many)
    async def delete_many(self, backend: str, signatures: Iterable[str]) -> int:
        return await (self._ops or await self._operations()).delete_many(backend, signatures)

    @documented_by(Operations.clear)
    async def clear(self, backend: str | None = None) -> int:
        return await (self._ops or await self._operations()).clear(backend)

    @documented_by(Operations.vacuum)
    async def vacuum(self) -> int | None:
        return await (self._ops or await self._operations()).vacuum()

    # -- reads (pure: an expired row is reported missing, never deleted) ------
    @documented_by(Operations.get)
    async def get(self, backend: str, signature: str) -> bytes | None:
        return await (self._ops or await self._operations()).get(backend, signature)

    @documented_by(Operations.get_many)
    async def get_many(self, backend: str, signatures: Iterable[str]) -> dict[str, bytes]:
        return await (self._ops or await self._operations()).get_many(backend, signatures)

    @documented_by(key_query)
    def keys(
        self,
        backend: str,
        *,
        include_expired: bool = False,
        expired_only: bool = False,
        as_of: datetime | None = None,
        order_by: str = "signature",
        descending: bool = False,
        limit: int | None = None,
        page_size: int = 1_000,
    ) -> AsyncIterator[StoredKey]:
        query = key_query(  # checked now, when the call is made, open or not
            self._options.clock,
            backend,
            include_expired=include_expired,
            expired_only=expired_only,
            as_of=as_of,
            order_by=order_by,
            descending=descending,
            limit=limit,
            page_size=page_size,
        )
        return self._pages(query)

    async def _pages(self, query: KeyQuery) -> AsyncIterator[StoredKey]:
        listing = KeyListing(self._ops or await self._operations(), query)
        while (page := await listing.next_page()) is not None:
            for key in page:
                yield key

    @documented_by(Operations.count)
    async def count(
        self, backend: str, *, include_expired: bool = False, expired_only: bool = False, as_of: datetime | None = None
    ) -> int:
        operations = self._ops or await self._operations()
        return await operations.count(backend, include_expired=include_expired, expired_only=expired_only, as_of=as_of)

    @documented_by(Operations.payload_bytes)
    async def payload_bytes(self, backend: str) -> int:
        return await (self._ops or await self._operations()).payload_bytes(backend)

    @documented_by(Operations.contains_many)
    async def contains_many(
        self, backend: str, signatures: Iterable[str], *, include_expired: bool = False
    ) -> frozenset[str]:
        operations = self._ops or await self._operations()
        return await operations.contains_many(backend, signatures, include_expired=include_expired)

    @documented_by(Operations.get_with_meta)
    async def get_with_meta(
        self, backend: str, signature: str, *, include_expired: bool = False, allow_stale: bool | None = None
    ) -> CachedResponse | None:
        if allow_stale is not None:
            include_expired = renamed_argument("allow_stale", "include_expired", allow_stale)
        operations = self._ops or await self._operations()
        return await operations.get_with_meta(backend, signature, include_expired=include_expired)

    @documented_by(Operations.get_model)
    async def get_model(self, backend: str, signature: str, model_type: type[ModelT]) -> ModelT | None:
        return await (self._ops or await self._operations()).get_model(backend, signature, model_type)

    @documented_by(Operations.stats)
    async def stats(self) -> CacheStats:
        return await (self._ops or await self._operations()).stats()

    @documented_by(Operations.now)
    def now(self) -> datetime:
        return clock_now(self._options.clock)


def async_repository_on(database: Database, *, clock: Clock | None = None) -> AsyncCacheRepository:
    """An async repository on a blocking in-memory database already open at head, ready without an
    ``await``, for any event loop; the pytest plugin's per-test copies. Not public API."""
    repository = AsyncCacheRepository(clock=clock)
    blocking, statements = database
    if not isinstance(blocking, SharedSqliteConnection):
        raise TypeError("async_repository_on takes an in-memory SQLite database")
    repository._opened(InlineConnections(blocking), statements, None)
    return repository


def close_outside_loop(repository: AsyncCacheRepository) -> None:
    """Close ``repository`` from synchronous code (a fixture's teardown), without awaiting any event
    loop: what belongs to a loop still running is closed there, what a closed loop held is closed
    without it (a server connection's socket directly)."""
    repository._close_now()
