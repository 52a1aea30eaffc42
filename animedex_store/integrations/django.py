"""Django's cache framework on animedex-store: a cache backend in SQLite, PostgreSQL or MariaDB/MySQL.

```python
CACHES = {
    "default": {
        "BACKEND": "animedex_store.integrations.django.StoreCache",
        "LOCATION": "postgresql+psycopg://app@db/cache",  # a SQLite path, a database URL; "" = the default cache file
        "TIMEOUT": 300,
        "OPTIONS": {"MAX_ENTRIES": 100_000, "CULL_FREQUENCY": 3, "namespace": "django"},
    },
    "sessions": {  # a second cache in the same database: a namespace of its own
        "BACKEND": "animedex_store.integrations.django.StoreCache",
        "LOCATION": "postgresql+psycopg://app@db/cache",
        "OPTIONS": {"namespace": "sessions", "MAX_ENTRIES": 1_000_000},
    },
}
```

:class:`StoreCache` is a ``django.core.cache.backends.base.BaseCache`` with
Django's semantics throughout (``TIMEOUT``, ``KEY_PREFIX``, ``VERSION``,
``KEY_FUNCTION``, ``make_key``/``validate_key``, ``None`` and ``0`` timeouts,
``add``, ``incr``/``decr``, ``touch``, ``get_or_set``, ``set_many`` returning the
keys that failed (none: all are written in one transaction, or the call
raises)). It passes Django's own ``BaseCacheTests`` on SQLite, PostgreSQL and
MariaDB. Django is an optional dependency (``pip install
'animedex-store[django]'``); importing :mod:`animedex_store` never imports this module.

``OPTIONS`` (besides Django's ``MAX_ENTRIES`` and ``CULL_FREQUENCY``):

* ``namespace`` (default ``"django"``): the rows' ``backend``. Caches on one
  database with one namespace share their entries, as ``DatabaseCache``\\ s on one
  table do (``KEY_PREFIX`` and ``VERSION`` still keep their keys apart); give
  each its own namespace to keep ``clear()`` and culling apart too.
* ``compression`` (``None``, ``"zlib"``, ``"zstd"``): as :class:`~animedex_store.CacheRepository`'s.
* ``max_connections``: server connections the async methods use at once
  (:class:`~animedex_store.AsyncCacheRepository`'s).

**Values are pickled**, as every Django cache backend pickles them (the cache
stores arbitrary Python objects), with ``pickle.HIGHEST_PROTOCOL``. What follows
for a shared database: anyone who can write the cache's rows can run code in
every process that reads them, exactly as with Django's ``DatabaseCache``,
Redis or memcached backends. Give the cache a database (or schema) that only
your application writes. A row that does not unpickle (damaged, or not a
pickle) reads as a miss and is logged on the logger
``animedex_store.integrations.django``; ``incr`` treats it as missing. (Integers
are pickled too: storing them as text would spare ``incr`` 0.3 µs of its
tens of µs, measured, not worth a second format.)

How it differs from Django's ``DatabaseCache``:

* No ``createcachetable``: the schema is created and migrated when the cache
  is first used, as every animedex-store repository does; LOCATION is the
  database, not a table.
* ``MAX_ENTRIES`` culls as ``LocMemCache`` does, when the namespace *reaches*
  it (``DatabaseCache`` culls once it is exceeded): expired rows first, then a
  ``CULL_FREQUENCY``\\ th (all with ``0``) of the rows, those closest to expiry
  first (in ``expires_at`` index order). Rows are not counted on every write
  (``DatabaseCache`` runs ``SELECT COUNT(*)`` on each): each process keeps a
  count, exact when it last counted, plus the rows it wrote since (an
  overwrite counted as a new row), and counts again only when that reaches
  ``MAX_ENTRIES``, or after as many writes as were left below it (fewer when
  other processes' writes grew the count faster than its own; at least a
  hundredth of ``MAX_ENTRIES``). A namespace written by several processes can
  so go over ``MAX_ENTRIES`` by what the others wrote since a process last
  counted.
* Expired rows are removed: every :data:`PURGE_EVERY_WRITES` writes of a
  process, its namespace's expired rows are deleted (through the
  ``(backend, expires_at)`` index). ``DatabaseCache`` removes them only when
  culling, or when ``get_many`` reads them.
* ``get_or_set`` with a callable default calls it once per key across threads,
  processes and machines (the repository's single flight,
  :meth:`~animedex_store.CacheRepository.get_or_fetch`): the others wait for
  its value, up to 30 seconds, then compute their own.
* The async methods (``aget``, ``aset``, ... every one ``BaseCache`` has) run on
  :class:`~animedex_store.AsyncCacheRepository`'s native drivers, not on a
  thread through ``sync_to_async``.
* ``add`` and ``incr``/``decr`` are atomic across processes (one conditional
  statement; a compare-and-swap), and ``incr`` keeps the entry's expiry, as
  memcached, Redis and ``LocMemCache`` do.
* Expiry is stored in whole seconds, rounded up: an entry lives for at least
  its timeout and at most a second more.
* ``close()``, which Django calls at the end of every request, keeps the
  connections: the repositories a LOCATION opens are shared by every
  ``StoreCache`` of the process on it (Django makes one per thread and per
  alias), as Django's Redis backend keeps its pool; they close at exit, or with
  :func:`close_repositories`. ``StoreCache(..., repository=...)`` runs on a
  repository of the caller's, which it never closes.

Keys: a Django key (what ``make_key`` returns) is the row's ``signature`` as it
is; one longer than a row's key (255 characters), one holding what a server's
text column cannot (NUL, a lone surrogate) and one starting with ``sha256:``
is ``sha256:<hex>`` of itself instead (:func:`signature`).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import math
import os
import pickle
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

try:  # the ignores: mypy checks this module where the optional dependency is missing too
    from django.core.cache.backends.base import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        DEFAULT_TIMEOUT,
        BaseCache,
    )
    from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped,import-not-found,unused-ignore]
except ImportError as exc:  # the optional dependency
    raise ImportError(
        f"animedex_store.integrations.django needs Django: pip install 'animedex-store[django]' ({exc})"
    ) from exc

from ..async_repository import DEFAULT_MAX_CONNECTIONS, AsyncCacheRepository, close_outside_loop
from ..core.blocking import run_blocking
from ..core.codecs import check_compression
from ..core.http_caches import ttl_reaching
from ..core.validation import KEY_MAX_LENGTH, MAX_TTL_SECONDS, check_count
from ..errors import FetchTimeoutError
from ..repository import CacheRepository

if TYPE_CHECKING:
    from ..core.response import CachedResponse, StoredKey

__all__ = ["StoreCache", "PURGE_EVERY_WRITES", "close_repositories", "signature"]

logger = logging.getLogger(__name__)

#: A process deletes its namespace's expired rows at least once in this many of its writes.
PURGE_EVERY_WRITES = 1_000
#: The ``OPTIONS`` this backend reads: ours, and Django's culling.
_OPTIONS = frozenset({"namespace", "compression", "max_connections", "MAX_ENTRIES", "CULL_FREQUENCY"})
#: How a key too long (or unfit) for a row's signature starts once hashed.
_HASHED = "sha256:"
#: Seconds ``get_or_set`` waits for another caller's value before computing its own.
_FLIGHT_WAIT_SECONDS = 30.0
_MISSING = object()


def signature(key: str) -> str:
    """The row signature of a Django cache key (``make_key``'s result): the key itself, or
    ``sha256:<hex>`` of it when it is longer than a row's key, starts with ``sha256:``, or holds a NUL
    or a lone surrogate (which PostgreSQL's text refuses)."""
    if len(key) <= KEY_MAX_LENGTH and not key.startswith(_HASHED) and "\x00" not in key:
        if key.isascii():
            return key
        with contextlib.suppress(UnicodeEncodeError):
            key.encode("utf-8")
            return key
    return _HASHED + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _dump(value: Any) -> bytes:
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


class _Unreadable(Exception):
    """A stored payload that does not unpickle (:meth:`_Operations.load` logged it)."""


class StoreCache(BaseCache):  # type: ignore[misc,unused-ignore]  # Any where Django is missing
    """A Django cache backend (``BaseCache``) on animedex-store: a SQLite file, PostgreSQL or MariaDB/MySQL.

    Django makes it from ``CACHES`` (see the module documentation):
    ``location`` is ``LOCATION``, anything :class:`~animedex_store.CacheRepository`
    takes (a path, a URL; ``""``: the default cache); ``params`` the rest of the
    entry. Made by hand, ``repository=`` (for the sync methods) and
    ``async_repository=`` (for the async ones) run it on repositories of the
    caller's, never closed by it, instead of a LOCATION.
    """

    def __init__(
        self,
        location: Any = "",
        params: Mapping[str, Any] | None = None,
        *,
        repository: CacheRepository | None = None,
        async_repository: AsyncCacheRepository | None = None,
    ) -> None:
        params = dict(params or {})
        super().__init__(params)
        options = dict(params.get("OPTIONS") or {})
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise ImproperlyConfigured(
                f"StoreCache does not know the OPTIONS {', '.join(unknown)}; it reads {', '.join(sorted(_OPTIONS))}"
            )
        self.namespace = _check_namespace(options.get("namespace", "django"))
        target = None if location in ("", None) else location
        if repository is None and async_repository is None:
            check_compression(options.get("compression"))  # checked now, not at first use
            connections = check_count("max_connections", options.get("max_connections", DEFAULT_MAX_CONNECTIONS))
            self._store = _shared_store(target, options.get("compression"), connections)
        elif target is not None or {"compression", "max_connections"} & set(options):
            raise ImproperlyConfigured("StoreCache takes a LOCATION (and its OPTIONS) or repository=, not both")
        else:
            self._store = _Store(None, repository=repository, async_repository=async_repository)
        self._sync: _Operations | None = None
        self._async: _Operations | None = None

    def _operations(self) -> _Operations:
        operations = self._sync
        if operations is None:
            operations = self._sync = _Operations(self, self._store.blocking)
        return operations

    def _async_operations(self) -> _Operations:
        operations = self._async
        if operations is None:
            operations = self._async = _Operations(self, self._store.awaiting)
        return operations

    # -- the sync API: each runs its operation to the end with run_blocking ------------------------
    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """The value stored for ``key``, or ``default`` (missing, expired, or unreadable: logged)."""
        return run_blocking(self._operations().get(key, default, version))

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """``{key: value}`` of the ``keys`` stored, in one query per 512 keys."""
        return run_blocking(self._operations().get_many(keys, version))

    def has_key(self, key: Any, version: int | None = None) -> bool:
        """Whether a live entry is stored for ``key`` (its value is not read)."""
        return run_blocking(self._operations().has_key(key, version))

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        """Store ``value`` for ``timeout`` seconds (``None``: for ever; 0 or less: expired at once)."""
        run_blocking(self._operations().set(key, value, timeout, version))

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Store ``value`` only if no live entry is stored for ``key``; ``True`` if stored. Atomic: of
        several processes adding one key at once, one stores it."""
        return run_blocking(self._operations().add(key, value, timeout, version))

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        """Store every item in one transaction; returns the keys that failed: none (or the call raises)."""
        return run_blocking(self._operations().set_many(data, timeout, version))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Give a live entry a new ``timeout`` from now; ``True`` if there was one."""
        return run_blocking(self._operations().touch(key, timeout, version))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        """Add ``delta`` to the value stored for ``key`` and return the sum, atomically (a compare-and-swap:
        increments of several processes at once all count); its expiry is kept. ``ValueError`` when no
        live, readable entry is stored."""
        return run_blocking(self._operations().incr(key, delta, version))

    def get_or_set(self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> Any:
        """The value stored for ``key``, else ``default`` stored (as ``add`` would) and returned. A
        callable ``default`` is called once per key across processes (single flight); the others get
        its value."""
        if not callable(default):
            return super().get_or_set(key, default, timeout=timeout, version=version)
        return run_blocking(self._operations().get_or_set(key, default, timeout, version))

    def delete(self, key: Any, version: int | None = None) -> bool:
        """Delete ``key``'s entry; ``True`` if one was stored (expired or not)."""
        return run_blocking(self._operations().delete(key, version))

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Delete the entries of ``keys``, in one statement per 512 keys."""
        run_blocking(self._operations().delete_many(keys, version))

    def clear(self) -> None:
        """Delete every entry of this cache's namespace (and only of it)."""
        run_blocking(self._operations().clear())

    # -- the async API: the same operations, awaited on AsyncCacheRepository ----------------------
    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """:meth:`get`, on :class:`~animedex_store.AsyncCacheRepository`."""
        return await self._async_operations().get(key, default, version)

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """:meth:`get_many`, on :class:`~animedex_store.AsyncCacheRepository`."""
        return await self._async_operations().get_many(keys, version)

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        """:meth:`has_key`, on :class:`~animedex_store.AsyncCacheRepository`."""
        return await self._async_operations().has_key(key, version)

    async def aset(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        """:meth:`set`, on :class:`~animedex_store.AsyncCacheRepository`."""
        await self._async_operations().set(key, value, timeout, version)

    async def aadd(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """:meth:`add`, on :class:`~animedex_store.AsyncCacheRepository`."""
        return await self._async_operations().add(key, value, timeout, version)

    async def aset_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        """:meth:`set_many`, on :class:`~animedex_store.AsyncCacheRepository`."""
        return await self._async_operations().set_many(data, timeout, version)

    async def atouch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """:meth:`touch`, on :class:`~animedex_store.AsyncCacheRepository`."""
        return await self._async_operations().touch(key, timeout, version)

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        """:meth:`incr`, on :class:`~animedex_store.AsyncCacheRepository`."""
        return await self._async_operations().incr(key, delta, version)

    async def aget_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        """:meth:`get_or_set`, on :class:`~animedex_store.AsyncCacheRepository` (a callable ``default`` is
        called on the event loop, as Django's own ``aget_or_set`` calls it)."""
        if not callable(default):
            return await super().aget_or_set(key, default, timeout=timeout, version=version)
        return await self._async_operations().get_or_set(key, default, timeout, version)

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        """:meth:`delete`, on :class:`~animedex_store.AsyncCacheRepository`."""
        return await self._async_operations().delete(key, version)

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """:meth:`delete_many`, on :class:`~animedex_store.AsyncCacheRepository`."""
        await self._async_operations().delete_many(keys, version)

    async def aclear(self) -> None:
        """:meth:`clear`, on :class:`~animedex_store.AsyncCacheRepository`."""
        await self._async_operations().clear()

    # ``decr``/``adecr``, ``incr_version``/``decr_version`` and their async twins are BaseCache's: they
    # call the methods above (so the async ones stay on the event loop). ``close``/``aclose``:
    # BaseCache's, which release nothing (see the module documentation).

    def __repr__(self) -> str:
        return f"<Django cache StoreCache on {self._store.name()}, namespace {self.namespace!r}>"


class _Rows(Protocol):
    """What the operations use of a repository: :class:`~animedex_store.AsyncCacheRepository`'s methods
    (a :class:`CacheRepository` through :class:`_Blocking`)."""

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


class _Blocking:
    """A :class:`CacheRepository` as :class:`_Rows`: its methods as coroutines that never suspend (each
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


class _Operations:
    """Django's cache semantics over one side's repository, written once as coroutines: the sync
    methods run them to the end with ``run_blocking`` over a :class:`CacheRepository`, the async ones
    await them over an :class:`~animedex_store.AsyncCacheRepository`. ``rows()`` gives that side's
    repository (opened on first use)."""

    def __init__(self, cache: StoreCache, rows: Callable[[], _Rows]) -> None:
        self.cache = cache
        self.namespace = cache.namespace
        self.rows = rows
        self.census = cache._store.census(cache.namespace)

    # -- keys, timeouts, values -----------------------------------------------------------------
    def signature(self, key: Any, version: int | None) -> str:
        """The row signature of ``key``: Django's key (``make_key``, warned about by ``validate_key``), fitted."""
        return signature(self.cache.make_and_validate_key(key, version=version))

    def ttl(self, rows: _Rows, timeout: Any) -> int:
        """Seconds a row lives for Django's ``timeout``: ``None`` for ever, 0 or less not at all, else at
        least ``timeout`` (whole seconds, rounded up: never expired early)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.cache.default_timeout
        if timeout is None or timeout >= MAX_TTL_SECONDS:
            return MAX_TTL_SECONDS
        if timeout <= 0:
            return 0
        now = rows.now().timestamp()
        return ttl_reaching(now + timeout, now)

    def load(self, payload: bytes, row: str) -> Any:
        """The value pickled in ``payload``; :class:`_Unreadable` (logged) when it does not unpickle."""
        try:
            return pickle.loads(payload)  # noqa: S301 - Django's cache values are pickles (module docs)
        except Exception as error:  # any damage: UnpicklingError, EOFError, a class gone, ...
            _log_unreadable(self.namespace, row, self.cache._store.name(), error)
            raise _Unreadable from error

    # -- reads ------------------------------------------------------------------------------------
    async def get(self, key: Any, default: Any, version: int | None) -> Any:
        row = self.signature(key, version)
        payload = await self.rows().get(self.namespace, row)
        if payload is None:
            return default
        try:
            return self.load(payload, row)
        except _Unreadable:
            return default

    async def get_many(self, keys: Iterable[Any], version: int | None) -> dict[Any, Any]:
        rows = {self.signature(key, version): key for key in keys}
        if not rows:
            return {}
        found = {}
        for row, payload in (await self.rows().get_many(self.namespace, rows)).items():
            with contextlib.suppress(_Unreadable):
                found[rows[row]] = self.load(payload, row)
        return found

    async def has_key(self, key: Any, version: int | None) -> bool:
        row = self.signature(key, version)
        return row in await self.rows().contains_many(self.namespace, (row,))

    # -- writes -----------------------------------------------------------------------------------
    async def set(self, key: Any, value: Any, timeout: Any, version: int | None) -> None:
        row, payload, rows = self.signature(key, version), _dump(value), self.rows()
        ttl = self.ttl(rows, timeout)
        await self.make_room(rows, 1)
        await rows.set(self.namespace, row, payload, ttl_seconds=ttl)

    async def add(self, key: Any, value: Any, timeout: Any, version: int | None) -> bool:
        row, payload, rows = self.signature(key, version), _dump(value), self.rows()
        ttl = self.ttl(rows, timeout)
        await self.make_room(rows, 1)
        return await rows.set_if_missing(self.namespace, row, payload, ttl_seconds=ttl)

    async def set_many(self, data: Mapping[Any, Any], timeout: Any, version: int | None) -> list[Any]:
        items = {self.signature(key, version): _dump(value) for key, value in data.items()}
        if items:
            rows = self.rows()
            ttl = self.ttl(rows, timeout)
            await self.make_room(rows, len(items))
            await rows.set_many(self.namespace, items, ttl_seconds=ttl)
        return []

    async def touch(self, key: Any, timeout: Any, version: int | None) -> bool:
        row, rows = self.signature(key, version), self.rows()
        return await rows.touch(self.namespace, row, ttl_seconds=self.ttl(rows, timeout))

    async def incr(self, key: Any, delta: int, version: int | None) -> Any:
        row = self.signature(key, version)
        result: list[Any] = []

        def add_delta(payload: bytes) -> bytes:
            result[:] = [self.load(payload, row) + delta]  # TypeError for a value without "+ int" propagates
            return _dump(result[0])

        try:
            changed = await self.rows().modify(self.namespace, row, add_delta)
        except _Unreadable:
            changed = None
        if changed is None:
            raise ValueError(f"Key '{key}' not found")
        return result[0]

    async def get_or_set(self, key: Any, default: Callable[[], Any], timeout: Any, version: int | None) -> Any:
        row, rows = self.signature(key, version), self.rows()
        ttl = self.ttl(rows, timeout)
        computed: list[Any] = []

        def fetch() -> bytes:
            computed.append(default())
            return _dump(computed[0])

        try:
            response = await rows.get_or_fetch(
                self.namespace, row, fetch, ttl_seconds=ttl, wait_seconds=_FLIGHT_WAIT_SECONDS
            )
        except FetchTimeoutError as error:  # another caller's fetch outlived the wait: compute our own
            logger.warning("get_or_set(%r) in %s computes its own value: %s", key, self._where(), error)
            response = None
        if computed:  # this call computed the value and stored it
            await self.make_room(rows, 1, keep=row)
            return computed[0]
        if response is None:  # the wait ran out: as BaseCache's get_or_set would
            value = default()
            await self.add(key, value, timeout, version)
            return await self.get(key, value, version)
        try:
            return self.load(response.payload, row)
        except _Unreadable:  # a live row that does not unpickle: replaced
            value = default()
            await self.set(key, value, timeout, version)
            return value

    async def delete(self, key: Any, version: int | None) -> bool:
        return await self.rows().delete(self.namespace, self.signature(key, version))

    async def delete_many(self, keys: Iterable[Any], version: int | None) -> None:
        rows = [self.signature(key, version) for key in keys]
        if rows:
            await self.rows().delete_many(self.namespace, rows)

    async def clear(self) -> None:
        await self.rows().clear(self.namespace)
        self.census.cleared()

    # -- culling and expired rows -----------------------------------------------------------------
    async def make_room(self, rows: _Rows, adding: int, *, keep: str | None = None) -> None:
        """Before writing ``adding`` rows: every :data:`PURGE_EVERY_WRITES` writes, delete the namespace's
        expired rows; when its count (as :class:`_Census` knows it) would go over ``MAX_ENTRIES``, count
        exactly and cull (:meth:`cull`), sparing ``keep``."""
        limit = self.cache._max_entries  # read at each call: Django's tests change it on the instance
        work = self.census.claim(adding, limit)
        if work is None:
            return
        counted = culled = None
        try:
            removed = await rows.purge_expired(self.namespace)
            if work == _Census.COUNT:
                counted = await rows.count(self.namespace, include_expired=True)
                culled = await self.cull(rows, counted, keep) if counted + adding > limit else 0
        except BaseException:
            self.census.forget()
            raise
        self.census.done(adding, limit, removed, counted, culled or 0)

    async def cull(self, rows: _Rows, count: int, keep: str | None) -> int:
        """Delete a ``CULL_FREQUENCY``\\ th of the namespace's ``count`` rows (all of them with 0), those
        closest to expiry first, as the ``expires_at`` index lists them; returns how many were deleted."""
        frequency = self.cache._cull_frequency
        wanted = count if frequency <= 0 else count // frequency
        if wanted <= 0:
            return 0
        listing = rows.keys(self.namespace, include_expired=True, order_by="expires_at", limit=wanted + 1)
        chosen = [stored.signature async for stored in listing if stored.signature != keep][:wanted]
        return await rows.delete_many(self.namespace, chosen)

    def _where(self) -> str:
        return f"{self.cache._store.name()} (namespace {self.namespace!r})"


class _Census:
    """What one process knows of one namespace's size, so that its writes count rows rarely.

    ``rows`` is the exact count at the last count, plus the rows this process wrote since (an
    overwrite counted as a new row: it only runs high, and a count corrects it). A write that
    would take it over ``MAX_ENTRIES`` counts exactly first (and culls if the count says so), as
    does the write after the budget of writes left since the last count runs out: the room that was
    left below ``MAX_ENTRIES`` (at least a hundredth of it), divided by how much faster than this
    process's own writes the count grew between its last two counts (other processes writing).
    Every :data:`PURGE_EVERY_WRITES` writes, the expired rows are deleted. One caller at a time
    does that work; the others write on meanwhile. Shared by the threads and event loops of a
    process (a ``threading.Lock`` held for a few assignments, never across an await).
    """

    PURGE, COUNT = "purge", "count"
    #: The most the count is taken to grow per own write (other processes writing too).
    MAX_RATE = 64.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: int | None = None
        self._written = 0  # rows written by this process since the last count
        self._count_in = 0  # writes left before the next count
        self._purge_in = 0  # writes left before the next purge
        self._rate = 1.0
        self._busy = False

    def claim(self, adding: int, limit: int) -> str | None:
        """Account for ``adding`` rows about to be written; ``COUNT`` or ``PURGE`` when the caller must do
        that first (then :meth:`done` or :meth:`forget`), ``None`` when it may just write."""
        with self._lock:
            rows = self._rows
            if self._busy or (
                rows is not None and rows + adding <= limit and self._count_in >= adding and self._purge_in >= adding
            ):
                if rows is not None:
                    self._rows = rows + adding
                self._written += adding
                self._count_in -= adding
                self._purge_in -= adding
                return None
            self._busy = True
            return self.COUNT if rows is None or rows + adding > limit or self._count_in < adding else self.PURGE

    def done(self, adding: int, limit: int, removed: int, counted: int | None, culled: int) -> None:
        """The claimed work is done: ``removed`` expired rows deleted, then (``COUNT``) ``counted`` rows
        found and ``culled`` of them deleted; now ``adding`` rows are written."""
        with self._lock:
            if counted is None:
                self._rows = max((self._rows or 0) - removed, 0) + adding
                self._count_in -= adding
            else:
                if self._rows is not None and self._written > 0:
                    # How much the count grew since the last one (by every process), per row written here.
                    grown = counted + removed - (self._rows - self._written)
                    self._rate = min(max(grown / self._written, 1.0), self.MAX_RATE)
                self._rows = counted - culled + adding
                room = max(limit - self._rows, limit // 100, 1)
                self._count_in = math.ceil(room / self._rate)
                self._written = 0
            self._written += adding
            self._purge_in = PURGE_EVERY_WRITES - adding
            self._busy = False

    def forget(self) -> None:
        """The work failed: count again at the next write."""
        with self._lock:
            self._rows = None
            self._busy = False

    def cleared(self) -> None:
        """This process emptied the namespace."""
        with self._lock:
            if not self._busy:
                self._rows, self._written = 0, 0


# ---------------------------------------------------------------------------------------------------
# Private: owning or borrowing repositories, namespaces, unreadable rows. What the integrations share:
# to be replaced by animedex_store/integrations/shared.py's when it lands.
# ---------------------------------------------------------------------------------------------------


def _check_namespace(namespace: object) -> str:
    """A namespace (the rows' ``backend``): a ``str`` of 1 to 255 characters."""
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be str, not {type(namespace).__name__}")
    if not 0 < len(namespace) <= KEY_MAX_LENGTH:
        raise ValueError(f"namespace must be 1 to {KEY_MAX_LENGTH} characters long, not {len(namespace)}")
    return namespace


def _log_unreadable(namespace: str, row: str, where: str, error: BaseException) -> None:
    """A row that reads as a miss because it cannot be decoded: said once, on the integration's logger."""
    logger.warning(
        "unreadable row %r of %r in %s, read as a miss: %s: %s", row, namespace, where, type(error).__name__, error
    )


class _Store:
    """The repositories a :class:`StoreCache` runs on: a :class:`CacheRepository` for the sync methods and
    an :class:`~animedex_store.AsyncCacheRepository` for the async ones, each opened on first use from
    ``target`` (owned: :meth:`close` closes them), or handed in (borrowed: never closed here); and
    the :class:`_Census` of each namespace written through them."""

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
        self._blocking = None if repository is None else _Blocking(repository)
        self._lock = threading.Lock()
        self._censuses: dict[str, _Census] = {}

    def blocking(self) -> _Rows:
        """The sync side's repository (as :class:`_Rows`), opened if it is not."""
        rows = self._blocking or self._open("_blocking", self._open_blocking, "async_repository=", "repository=")
        return cast(_Rows, rows)

    def awaiting(self) -> _Rows:
        """The async side's repository (it opens on its first call)."""
        repository = self._async_repository or self._open(
            "_async_repository", self._new_async_repository, "repository=", "async_repository="
        )
        return cast(_Rows, repository)

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

    def _open_blocking(self) -> _Blocking:
        self._repository = CacheRepository(self._target, compression=self._compression)
        return _Blocking(self._repository)

    def _new_async_repository(self) -> AsyncCacheRepository:
        return AsyncCacheRepository(self._target, compression=self._compression, max_connections=self._max_connections)

    def census(self, namespace: str) -> _Census:
        with self._lock:
            return self._censuses.setdefault(namespace, _Census())

    def name(self) -> str:
        """The database as messages name it (a URL with its password masked)."""
        for repository in (self._repository, self._async_repository):
            if repository is not None and repository.target:
                return str(repository.target)
        target = self._target
        if target is None:
            return "the default cache"
        if isinstance(target, str) and "://" in target:
            from ..sql.engine import mask_url

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
_STORES: dict[tuple[Any, ...], _Store] = {}
_STORES_LOCK = threading.Lock()


def _shared_store(target: Any, compression: str | None, max_connections: int) -> _Store:
    key = (os.getpid(), target, compression, max_connections)
    store = _STORES.get(key)
    if store is None:
        with _STORES_LOCK:
            store = _STORES.setdefault(key, _Store(target, compression=compression, max_connections=max_connections))
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
