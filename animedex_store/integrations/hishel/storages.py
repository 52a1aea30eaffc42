"""hishel's two storage classes: thin shells over the coroutines of :mod:`.store` and :mod:`.saver`.

``StoreStorage`` runs each coroutine to its end on the calling thread
(:func:`~animedex_store.core.blocking.run_blocking`: over a
:class:`~animedex_store.CacheRepository` nothing suspends), and turns the async
generators of the streams into sync iterators the same way; ``AsyncStoreStorage``
awaits them. Nothing else differs.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from dataclasses import replace
from typing import Any, ClassVar, Generic, TypeVar

from hishel import AsyncBaseStorage, BaseStorage, Entry, Headers, Request, Response  # type: ignore[import-not-found,unused-ignore]

from ...async_repository import AsyncCacheRepository
from ...core.blocking import run_blocking
from ...core.validation import check_count, check_seconds
from ...fastpath.targets import Target
from ...repository import CacheRepository
from ..shared import AsyncOwner, Owner, R, _Holding
from .rows import Stored, backends
from .saver import Saver, saving, start
from .store import Body, Store

__all__ = ["StoreStorage", "AsyncStoreStorage"]

T = TypeVar("T")


class _Storage(_Holding[R], Generic[R]):
    """What both storages are: the constructor (checked options, then the convention of
    :mod:`animedex_store.integrations.shared`) and the entries hishel gets."""

    LIBRARY = "hishel"
    #: hishel's base class of the storage, whose constructor keeps its three options.
    _hishel_base: ClassVar[type[Any]]

    def __init__(
        self,
        target: Target | Any = None,
        *,
        namespace: str = "hishel",
        default_ttl: float | None = None,
        default_tti: float | None = None,
        max_stream_size: int | None = None,
        max_size: int | None = None,
        repository: R | None = None,
    ) -> None:
        backends(namespace)  # checked before anything opens
        self._hishel_base.__init__(
            self,
            default_ttl=None if default_ttl is None else check_seconds("default_ttl", default_ttl),
            default_tti=None if default_tti is None else check_seconds("default_tti", default_tti),
            max_stream_size=None if max_stream_size is None else check_count("max_stream_size", max_stream_size),
        )
        self.max_size = None if max_size is None else check_count("max_size", max_size)
        self.namespace = namespace
        self._hold(target, repository)
        self._store = Store(self.repository, namespace, self.max_size)

    async def _start(self, request: Request, key: str, ttl: float | None, tti: float | None) -> Saver:
        store = self._open_store()
        deadline, tti = self._limits(ttl, tti, store.now())  # type: ignore[attr-defined]  # hishel's
        limits = [limit for limit in (self.max_stream_size, self.max_size) if limit is not None]  # type: ignore[attr-defined]
        return await start(store, request, key, deadline, tti, min(limits, default=None))

    def _open_store(self) -> Store:
        if self._store.closed:
            raise RuntimeError(f"{type(self).__name__} is closed and can no longer be used")
        return self._store

    def _arguments(self) -> str:
        return f"namespace={self.namespace!r}"


def _entry(entry_id: uuid.UUID, stored: Stored, stream: Iterator[bytes] | AsyncIterator[bytes]) -> Entry:
    request = Request(method=stored.method, url=stored.url, headers=Headers(stored.request_headers))
    response = Response(status_code=stored.status, headers=Headers(stored.response_headers), stream=stream)
    return Entry(id=entry_id, request=request, response=response)


async def _reading(store: Store, body: Body) -> AsyncGenerator[bytes, None]:
    """A stored body, a piece at a time (a chunk row each, or the body in the entry's row)."""
    for number in range(body.pieces):
        yield await store.piece(body, number)


class StoreStorage(_Storage[CacheRepository], Owner, BaseStorage):  # type: ignore[misc,unused-ignore]  # Any where it is missing
    """hishel's ``BaseStorage`` on a :class:`~animedex_store.CacheRepository`, for ``hishel.httpx.CacheClient``,
    ``hishel.requests.CacheAdapter`` and the rest of hishel's sync clients.

    ``target`` is anything :class:`~animedex_store.CacheRepository` takes;
    ``repository=`` shares an open one instead (see :mod:`animedex_store.integrations`
    for closing: a closed storage can no longer be used, and hishel's clients close
    their storage when they close). ``namespace`` keeps these entries apart from every
    other user of the store. ``default_ttl`` and ``default_tti`` (seconds, fractions
    too) and ``max_stream_size`` (bytes) are hishel's; ``max_size`` (bytes) caps the
    namespace's entries and bodies across every process sharing the store, evicting
    those closest to expiry.
    """

    _hishel_base = BaseStorage

    def create_entry(
        self, request: Request, response: Response, key: str, *, ttl: float | None = None, tti: float | None = None
    ) -> Entry:
        saver = run_blocking(self._start(request, key, ttl, tti))
        body = response.stream if response.stream is not None else ()
        if not isinstance(body, Iterable):
            raise TypeError(f"StoreStorage saves a sync stream, not {type(body).__name__}")
        stream = _blocking(saving(_never_suspending(body), saver, response.status_code, response.headers))
        return Entry(id=saver.id, request=request, response=replace(response, stream=stream))

    def get_entries(self, key: str) -> list[Entry]:
        store = self._open_store()
        found = run_blocking(store.lookup(key))
        return [_entry(entry_id, stored, self._stream(store, Body(entry_id.hex, stored))) for entry_id, stored in found]

    @staticmethod
    def _stream(store: Store, body: Body) -> Iterator[bytes]:
        # A body in its entry's row needs no step of its own (most hits): a third of a hit's overhead.
        return _blocking(_reading(store, body)) if body.chunks else iter((body.inline,) if body.inline else ())

    def update_headers(self, id: uuid.UUID, headers: Headers) -> None:
        run_blocking(self._store.update_headers(id, headers))

    def remove_entry(self, id: uuid.UUID) -> None:
        run_blocking(self._store.remove(id))

    def close(self) -> None:
        self._store.closed = True
        super().close()


class AsyncStoreStorage(_Storage[AsyncCacheRepository], AsyncOwner, AsyncBaseStorage):  # type: ignore[misc,unused-ignore]  # Any where it is missing
    """hishel's ``AsyncBaseStorage`` on an :class:`~animedex_store.AsyncCacheRepository`, for
    ``hishel.httpx.AsyncCacheClient`` and hishel's other async clients: :class:`StoreStorage`'s
    arguments and behaviour, as coroutines; ``repository=`` takes an ``AsyncCacheRepository``."""

    _hishel_base = AsyncBaseStorage

    async def create_entry(
        self, request: Request, response: Response, key: str, *, ttl: float | None = None, tti: float | None = None
    ) -> Entry:
        saver = await self._start(request, key, ttl, tti)
        body = response.stream if response.stream is not None else _never_suspending(())
        if not isinstance(body, AsyncIterator):
            raise TypeError(f"AsyncStoreStorage saves an async stream, not {type(body).__name__}")
        stream = saving(body, saver, response.status_code, response.headers)
        return Entry(id=saver.id, request=request, response=replace(response, stream=stream))

    async def get_entries(self, key: str) -> list[Entry]:
        store = self._open_store()
        found = await store.lookup(key)
        return [_entry(entry_id, stored, _reading(store, Body(entry_id.hex, stored))) for entry_id, stored in found]

    async def update_headers(self, id: uuid.UUID, headers: Headers) -> None:
        await self._store.update_headers(id, headers)

    async def remove_entry(self, id: uuid.UUID) -> None:
        await self._store.remove(id)

    async def close(self) -> None:
        self._store.closed = True
        await super().close()


# -- the sync storage's view of the coroutines ----------------------------------------------------------
async def _never_suspending(body: Iterable[bytes]) -> AsyncGenerator[bytes, None]:
    """A sync body as the async iterator :func:`~.saver.saving` reads (its steps never suspend)."""
    for data in body:
        yield data


def _blocking(steps: AsyncGenerator[T, None]) -> Iterator[T]:
    """An async generator whose awaits never suspend, as a sync iterator: each step run to its end on
    the calling thread, as a blocking repository runs its operations; closing it closes ``steps``."""
    try:
        while True:
            try:
                yield run_blocking(_next(steps))
            except StopAsyncIteration:
                return
    finally:
        run_blocking(_close(steps))


async def _next(steps: AsyncGenerator[T, None]) -> T:
    return await steps.__anext__()


async def _close(steps: AsyncGenerator[T, None]) -> None:
    await steps.aclose()
