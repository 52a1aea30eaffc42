"""``AsyncCacheRepository``: the same cache for asyncio applications, never blocking their event loop.

A thin shell of I/O around the operations of :mod:`animedex_store.rules.operations`,
which :class:`~animedex_store.CacheRepository` runs too: the same options,
methods, arguments, checks, errors and results, as coroutines. Constructing does
no I/O; ``async with`` or ``await repo.open()`` opens (the first call opens if
neither did), off the loop. What runs where:

* a SQLite file: reads inline on the loop through a connection that never
  waits, writes on a thread of the repository's own
  (:mod:`animedex_store.fastpath.async_connection`); ``sqlite://`` in memory inline;
* PostgreSQL and MariaDB/MySQL: asyncpg and asyncmy, whatever driver the URL
  names (:mod:`animedex_store.sql.async_drivers`), at most ``max_connections`` at
  once; a caller's ``AsyncEngine`` as it is;
* opening, migrating and a caller's sync ``Engine``: on a thread.

Coroutines of one process asking ``get_or_fetch`` for one key share one fetch;
across processes the claim in ``cache_locks`` decides, as for the sync class.

Importing this module loads ``asyncio``; ``import animedex_store`` does not
(``AsyncCacheRepository`` is imported from here on first use).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from .core.clock import Clock, clock_now
from .core.compiled import StatementSet
from .core.connections import AsyncConnections, ClosedConnections, Connections, Database
from .core.response import CachedResponse, StoredKey
from .core.validation import check_count, renamed_argument
from .fastpath.async_connection import InlineConnections, SqliteFileConnections, ThreadedConnections
from .fastpath.connection import SharedSqliteConnection
from .fastpath.opening import open_database
from .fastpath.targets import DEFAULT_TIMEOUT_SECONDS, Target, resolve_target
from .migrations.revisions import HEAD_REVISION
from .repository import open_slow_path
from .rules.flight import Key
from .rules.operations import KeyListing, KeyQuery, Operations, check_options, documented_by, key_query

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .core.stats import CacheStats

__all__ = ["AsyncCacheRepository", "DEFAULT_MAX_CONNECTIONS", "async_repository_on", "close_outside_loop"]

ModelT = TypeVar("ModelT", bound="BaseModel")
#: Server connections an async repository opens at most (a SQLite file uses two).
DEFAULT_MAX_CONNECTIONS = 10


class AsyncCacheRepository:
    """:class:`~animedex_store.CacheRepository` for asyncio: the same ``target`` and options, the same
    methods as coroutines (``keys`` an async iterator).

    ``target`` also takes an ``AsyncEngine`` (used as it is, not disposed on
    close). ``max_connections`` bounds the server connections in use at once.
    Use one repository from one event loop.
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
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop it opened on
        self._runtime = _AsyncRuntime()
        self._opening: asyncio.Task[Operations] | None = None
        self._closed = False
        self.target: str | None = None  #: the database's name (path, or URL with the password masked) once open

    # -- lifetime -------------------------------------------------------------
    async def open(self) -> AsyncCacheRepository:
        """Open the database (and migrate it, unless ``migrate=False``) if that was not done yet."""
        await self._operations()
        return self

    async def _operations(self) -> Operations:
        if self._ops is not None:
            return self._ops
        if self._closed:
            ClosedConnections(str(self.target or self._target)).refuse()
        if self._opening is None:  # callers arriving while it opens wait for the same open
            self._opening = asyncio.ensure_future(self._open())
        try:
            return await asyncio.shield(self._opening)
        except BaseException:
            if self._opening.done():
                self._opening = None  # a failed open is tried again by the next call
            raise

    async def _open(self) -> Operations:
        connections, statements = await _open_connections(
            self._target, migrate=self._migrate, timeout=self._timeout, max_connections=self._max_connections
        )
        self._ops = Operations(connections, statements, self._options, self._runtime)
        self.target = connections.target
        self._loop = asyncio.get_running_loop()
        return self._ops

    async def close(self) -> None:
        """Close the connections (and the repository's thread). Idempotent."""
        self._closed = True
        if self._opening is not None and not self._opening.done():
            with contextlib.suppress(Exception):  # an open under way finishes, and is closed below
                await self._opening
        operations, self._ops = self._ops, None
        if operations is None:
            return
        await self._runtime.stop_flights()  # each gives its claim up first
        connections = operations.db
        operations.db = ClosedConnections(operations.target)
        await _close(connections)

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
    """An async repository on a blocking database already open at head (in memory: nothing on it
    waits), ready without an ``await``, for any event loop; the pytest plugin's per-test copies.
    Not public API."""
    repository = AsyncCacheRepository(clock=clock)
    blocking, statements = database
    repository._ops = Operations(InlineConnections(blocking), statements, repository._options, repository._runtime)
    repository.target = blocking.target
    return repository


def close_outside_loop(repository: AsyncCacheRepository) -> None:
    """Close ``repository`` from synchronous code (a fixture's teardown): blocking connections at
    once, the others on the loop they opened on while it can still run, else as far as can be
    without it (a server's sockets are closed when they are collected)."""
    loop = repository._loop
    if loop is not None and not loop.is_closed() and not loop.is_running():
        loop.run_until_complete(repository.close())
        return
    operations, repository._ops = repository._ops, None
    repository._closed = True
    if operations is not None and isinstance(operations.db, InlineConnections):
        operations.db.blocking.close()


async def _open_connections(
    target: Any, *, migrate: bool, timeout: float, max_connections: int
) -> tuple[Connections, StatementSet]:
    """The connections an async repository runs on, and their statements; see the module docstring."""
    engine = _async_engine(target)
    resolved = engine if engine is not None else resolve_target(target)
    if engine is not None or (hasattr(resolved, "get_backend_name") and resolved.get_backend_name() != "sqlite"):
        from .migrations.opening import open_server_async

        server: Any = resolved  # an AsyncEngine, or a server URL
        return await open_server_async(server, migrate=migrate, max_connections=max_connections)
    blocking, statements = await asyncio.to_thread(
        open_database, resolved, migrate=migrate, timeout=timeout, head=HEAD_REVISION, slow_path=open_slow_path
    )
    if isinstance(blocking, SharedSqliteConnection):
        if blocking.path is None:
            return InlineConnections(blocking), statements  # in memory: nothing else can lock it
        return await asyncio.to_thread(SqliteFileConnections, blocking), statements
    return ThreadedConnections(blocking), statements  # a caller's sync server Engine


def _async_engine(target: object) -> Any:
    """``target`` if it is an ``AsyncEngine`` (whose module its holder has already imported)."""
    module = sys.modules.get("sqlalchemy.ext.asyncio")
    return target if module is not None and isinstance(target, module.AsyncEngine) else None


async def _close(connections: Connections) -> None:
    if isinstance(connections, AsyncConnections):
        await connections.close()


class _Shared:
    """One key's flight in this process, and how many callers wait for it."""

    def __init__(self, task: asyncio.Future[CachedResponse]) -> None:
        self.task = task
        self.waiters = 0
        self.abandoned = False  # cancelled once its last waiter left: it is unwinding already

    async def wait(self, timeout: float | None) -> CachedResponse:
        self.waiters += 1
        try:
            shielded = asyncio.shield(self.task)
            if timeout is None:
                return await shielded
            try:
                return await asyncio.wait_for(shielded, timeout)
            except asyncio.TimeoutError:  # not yet the builtin TimeoutError before Python 3.11
                raise TimeoutError from None
        finally:
            self.waiters -= 1
            if self.waiters == 0 and not self.task.done():
                self.abandoned = True
                self.task.cancel()  # nobody wants it any more: the flight releases its claim


class _AsyncRuntime:
    """The rules' :class:`~animedex_store.rules.runtime.Runtime` on an event loop."""

    def __init__(self) -> None:
        self._flights: dict[Key, _Shared] = {}

    def new_lock(self) -> asyncio.Lock:
        return asyncio.Lock()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def fetch(
        self, fetch: Callable[[], Any], renew: Callable[[], Coroutine[Any, Any, bool]], every: float
    ) -> Any:
        async def renewing() -> None:
            # A failed renewal (the database unreachable) ends the renewals: the lease then runs out.
            while True:
                await asyncio.sleep(every)
                try:
                    if not await renew():
                        return
                except Exception:
                    return

        renewer = asyncio.ensure_future(renewing())
        try:
            result = fetch()
            return await result if inspect.isawaitable(result) else result
        finally:
            renewer.cancel()

    def in_flight(self, key: Key) -> bool:
        return key in self._flights

    async def stop_flights(self) -> None:
        """Cancel the flights under way and wait until each has released its claim."""
        flights = list(self._flights.values())
        for shared in flights:
            if not shared.abandoned:  # a second cancellation would cut its release short
                shared.task.cancel()
        await asyncio.gather(*(shared.task for shared in flights), return_exceptions=True)

    async def join(self, key: Key, wait: float) -> CachedResponse:
        return await self._flights[key].wait(wait)

    async def lead(self, key: Key, flight: Coroutine[Any, Any, CachedResponse]) -> CachedResponse:
        shared = self._flights[key] = _Shared(asyncio.ensure_future(flight))

        def done(_task: object) -> None:
            if self._flights.get(key) is shared:
                del self._flights[key]

        shared.task.add_done_callback(done)
        return await shared.wait(None)
