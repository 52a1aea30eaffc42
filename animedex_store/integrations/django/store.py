"""The repositories a Django cache runs on: one sync and one async per database, shared in the process.

Django makes a ``StoreCache`` per thread and per alias and calls its ``close()`` after every request,
so the repositories a ``LOCATION`` opens are not each object's own, as the family's convention
(:mod:`animedex_store.integrations.shared`) has it for the other integrations: they are the
process's, shared by every ``StoreCache`` on that database (:func:`shared_store`), and closed at exit
or by :func:`close_repositories`. Repositories handed in (``repository=``, ``async_repository=``) are
borrowed, never closed here. Part of :mod:`animedex_store.integrations.django`; not public API.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from ...async_repository import DEFAULT_MAX_CONNECTIONS, AsyncCacheRepository, close_outside_loop
from ...repository import CacheRepository
from .census import Census

if TYPE_CHECKING:
    from ...core.response import CachedResponse, StoredKey

__all__ = [
    "Rows",
    "BlockingRows",
    "Store",
    "shared_store",
    "close_repositories",
    "logger",
]

#: The integration's logger: ``animedex_store.integrations.django``.
logger = logging.getLogger("animedex_store.integrations.django")


class Rows(Protocol):
    """What the operations use of a repository: :class:`~animedex_store.AsyncCacheRepository`'s methods
    (a :class:`CacheRepository` through :class:`BlockingRows`)."""

    def now(self) -> datetime: ...
    async def get(self, backend: str, signature: str) -> bytes | None: ...
    async def get_many(self, backend: str, signatures: Iterable[str]) -> dict[str, bytes]: ...
    async def contains_many(self, backend: str, signatures: Iterable[str]) -> frozenset[str]: ...
    async def set(self, backend: str, signature: str, payload: bytes, *, ttl_seconds: int) -> None: ...
    async def set_many(self, backend: str, items: Mapping[str, bytes], *, ttl_seconds: int) -> None: ...
    async def set_if_missing(self, backend: str, signature: str, payload: bytes, *, ttl_seconds: int) -> bool: ...
    async def touch(self, backend: str, signature: str, *, ttl_seconds: int) -> bool: ...
    async def modify(self, backend: str, signature: str, change: Callable[[bytes], bytes]) -> bytes | None: ...
    async def get_or_fetch(
        self, backend: str, signature: str, fetch: Callable[[], bytes], *, ttl_seconds: int, wait_seconds: float
    ) -> CachedResponse: ...
    async def delete(self, backend: str, signature: str) -> bool: ...
    async def delete_many(self, backend: str, signatures: Iterable[str]) -> int: ...
    async def clear(self, backend: str | None = None) -> int: ...
    async def purge_expired(self, backend: str | None = None) -> int: ...
    async def count(self, backend: str, *, include_expired: bool = False) -> int: ...
    def keys(
        self, backend: str, *, include_expired: bool = False, order_by: str = "signature", limit: int | None = None
    ) -> AsyncIterator[StoredKey]: ...


class BlockingRows:
    """A :class:`CacheRepository` as :class:`Rows`: its methods as coroutines that never suspend (each
    made once, on first use), so the operations run on it through ``run_blocking``."""

    def __init__(self, repository: CacheRepository) -> None:
        self._repository = repository
        self.now = repository.now

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._repository, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        setattr(self, name, call)
        return call

    async def _keys(self, backend: str, **query: Any) -> AsyncIterator[StoredKey]:
        for key in self._repository.keys(backend, **query):
            yield key

    def keys(self, backend: str, **query: Any) -> AsyncIterator[StoredKey]:
        return self._keys(backend, **query)


class Store:
    """The repositories a :class:`StoreCache` runs on: a :class:`CacheRepository` for the sync methods and
    an :class:`~animedex_store.AsyncCacheRepository` for the async ones, each opened on first use from
    ``target`` (owned: :meth:`close` closes them), or handed in (borrowed: never closed here); and
    the :class:`Census` of each namespace written through them."""

    def __init__(
        self,
        target: Any,
        *,
        compression: str | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        repository: CacheRepository | None = None,
        async_repository: AsyncCacheRepository | None = None,
    ) -> None:
        self._owned = repository is None and async_repository is None
        self._target, self._compression, self._max_connections = target, compression, max_connections
        self._repository, self._async_repository = repository, async_repository
        self._blocking = None if repository is None else BlockingRows(repository)
        self._lock = threading.Lock()
        self._censuses: dict[str, Census] = {}

    def blocking(self) -> Rows:
        """The sync side's repository (as :class:`Rows`), opened if it is not."""
        rows = self._blocking or self._open("_blocking", self._open_blocking, "async_repository=", "repository=")
        return cast(Rows, rows)

    def awaiting(self) -> Rows:
        """The async side's repository (it opens on its first call)."""
        repository = self._async_repository or self._open(
            "_async_repository", self._new_async_repository, "repository=", "async_repository="
        )
        return cast(Rows, repository)

    def _open(self, side: str, make: Callable[[], Any], given: str, wanted: str) -> Any:
        """The side ``side`` (an attribute), made with ``make`` once, under the lock, when owned."""
        with self._lock:
            made = getattr(self, side)
            if made is None:
                if not self._owned:
                    raise TypeError(f"this StoreCache was given {given} only: pass {wanted} too")
                made = make()
                setattr(self, side, made)
            return made

    def _open_blocking(self) -> BlockingRows:
        self._repository = CacheRepository(self._target, compression=self._compression)
        return BlockingRows(self._repository)

    def _new_async_repository(self) -> AsyncCacheRepository:
        return AsyncCacheRepository(self._target, compression=self._compression, max_connections=self._max_connections)

    def census(self, namespace: str) -> Census:
        with self._lock:
            return self._censuses.setdefault(namespace, Census())

    def name(self) -> str:
        """The database as messages name it (a URL with its password masked)."""
        for repository in (self._repository, self._async_repository):
            if repository is not None and repository.target:
                return str(repository.target)
        target = self._target
        if target is None:
            return "the default cache"
        if isinstance(target, str) and "://" in target:
            from ...sql.engine import mask_url

            return mask_url(target)
        return str(target)

    def close(self) -> None:
        """Close the repositories opened here (none when they were handed in); the next call opens again."""
        if not self._owned:
            return
        with self._lock:
            repository, self._repository, self._blocking = self._repository, None, None
            async_repository, self._async_repository = self._async_repository, None
        if repository is not None:
            repository.close()
        if async_repository is not None:
            close_outside_loop(async_repository)


#: The stores opened from a LOCATION, shared by the StoreCaches of this process (Django makes one per
#: thread and alias) that name the same database with the same options. The process id is part of
#: the key: a forked child opens its own, never using its parent's connections.
_STORES: dict[tuple[Any, ...], Store] = {}
_STORES_LOCK = threading.Lock()


def shared_store(target: Any, compression: str | None, max_connections: int) -> Store:
    key = (os.getpid(), target, compression, max_connections)
    store = _STORES.get(key)
    if store is None:
        with _STORES_LOCK:
            store = _STORES.setdefault(key, Store(target, compression=compression, max_connections=max_connections))
    return store


def close_repositories() -> None:
    """Close every repository that StoreCaches of this process opened from a LOCATION (Django's own
    ``close()`` keeps them open, see the module documentation); the next call opens them again.
    For tests and for shutting down; also run at interpreter exit."""
    with _STORES_LOCK:
        stores = [store for (pid, *_options), store in _STORES.items() if pid == os.getpid()]
    for store in stores:
        store.close()


def _close_at_exit() -> None:
    try:
        close_repositories()
    except Exception:  # a server gone first: nothing left to give back, and nobody to tell but the log
        logger.warning("closing the Django cache's repositories at exit failed", exc_info=True)


atexit.register(_close_at_exit)
