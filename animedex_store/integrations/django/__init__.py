"""Django's cache framework on animedex-store: a cache backend in SQLite, PostgreSQL or MariaDB/MySQL.

.. code-block:: python

    CACHES = {  # a SQLite file
        "default": {
            "BACKEND": "animedex_store.integrations.django.StoreCache",
            "LOCATION": "/var/cache/mysite/django-cache.sqlite",  # "" (or none): the default cache file
            "TIMEOUT": 300,
            "OPTIONS": {"MAX_ENTRIES": 100_000, "CULL_FREQUENCY": 3},
        },
    }
    CACHE_DATABASE = "postgresql+psycopg://app@db/mysite?options=-csearch_path%3Dcache"  # a schema of its own
    CACHES = {  # PostgreSQL: two caches in one database, a namespace each
        "default": {
            "BACKEND": "animedex_store.integrations.django.StoreCache",
            "LOCATION": CACHE_DATABASE,
            "OPTIONS": {"MAX_ENTRIES": 1_000_000, "namespace": "django"},
        },
        "sessions": {
            "BACKEND": "animedex_store.integrations.django.StoreCache",
            "LOCATION": CACHE_DATABASE,
            "OPTIONS": {"MAX_ENTRIES": 10_000_000, "namespace": "sessions"},
        },
    }

``LOCATION`` is anything :class:`~animedex_store.CacheRepository` takes, and the
database must be animedex-store's own: a repository refuses one holding tables
it did not create (Django's, for one), so give it a SQLite file, a PostgreSQL
schema (``search_path`` as above) or a MariaDB database of its own.

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
* Expired rows are removed: once in every :data:`PURGE_EVERY_WRITES` rows a
  process writes, its namespace's expired rows are deleted (through the
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

from collections.abc import Iterable, Mapping
from typing import Any

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

from ...async_repository import DEFAULT_MAX_CONNECTIONS, AsyncCacheRepository
from ...core.blocking import run_blocking
from ...core.codecs import check_compression
from ...core.validation import check_count
from ...repository import CacheRepository
from ..shared import check_namespace
from .census import PURGE_EVERY_WRITES
from .operations import Operations, signature
from .store import Store, close_repositories, shared_store

__all__ = ["StoreCache", "PURGE_EVERY_WRITES", "close_repositories", "signature"]

#: The ``OPTIONS`` this backend reads: ours, and Django's culling.
_OPTIONS = frozenset({"namespace", "compression", "max_connections", "MAX_ENTRIES", "CULL_FREQUENCY"})


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
        self.namespace = check_namespace(options.get("namespace", "django"))
        target = None if location in ("", None) else location
        if repository is None and async_repository is None:
            check_compression(options.get("compression"))  # checked now, not at first use
            connections = check_count("max_connections", options.get("max_connections", DEFAULT_MAX_CONNECTIONS))
            self._store = shared_store(target, options.get("compression"), connections)
        elif target is not None or {"compression", "max_connections"} & set(options):
            raise ImproperlyConfigured("StoreCache takes a LOCATION (and its OPTIONS) or repository=, not both")
        else:
            self._store = Store(None, repository=repository, async_repository=async_repository)
        store = self._store
        census = store.census(self.namespace)
        # The operations of each side: the sync methods' on the store's CacheRepository, the async
        # ones' on its AsyncCacheRepository, each opened on first use.
        self._sync = Operations(self, store.blocking, census, store.name)
        self._async = Operations(self, store.awaiting, census, store.name)

    # -- the sync API: each runs its operation to the end with run_blocking ------------------------
    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """The value stored for ``key``, or ``default`` (missing, expired, or unreadable: logged)."""
        return run_blocking(self._sync.get(key, default, version))

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """``{key: value}`` of the ``keys`` stored, in one query per 512 keys."""
        return run_blocking(self._sync.get_many(keys, version))

    def has_key(self, key: Any, version: int | None = None) -> bool:
        """Whether a live entry is stored for ``key`` (its value is not read)."""
        return run_blocking(self._sync.has_key(key, version))

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        """Store ``value`` for ``timeout`` seconds (``None``: for ever; 0 or less: expired at once)."""
        run_blocking(self._sync.set(key, value, timeout, version))

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Store ``value`` only if no live entry is stored for ``key``; ``True`` if stored. Atomic: of
        several processes adding one key at once, one stores it."""
        return run_blocking(self._sync.add(key, value, timeout, version))

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        """Store every item in one transaction; returns the keys that failed: none (or the call raises)."""
        return run_blocking(self._sync.set_many(data, timeout, version))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Give a live entry a new ``timeout`` from now; ``True`` if there was one."""
        return run_blocking(self._sync.touch(key, timeout, version))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        """Add ``delta`` to the value stored for ``key`` and return the sum, atomically (a compare-and-swap:
        increments of several processes at once all count); its expiry is kept. ``ValueError`` when no
        live, readable entry is stored."""
        return run_blocking(self._sync.incr(key, delta, version))

    def get_or_set(self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> Any:
        """The value stored for ``key``, else ``default`` stored (as ``add`` would) and returned. A
        callable ``default`` is called once per key across processes (single flight); the others get
        its value."""
        return run_blocking(self._sync.get_or_set(key, default, timeout, version))

    def delete(self, key: Any, version: int | None = None) -> bool:
        """Delete ``key``'s entry; ``True`` if one was stored (expired or not)."""
        return run_blocking(self._sync.delete(key, version))

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Delete the entries of ``keys``, in one statement per 512 keys."""
        run_blocking(self._sync.delete_many(keys, version))

    def clear(self) -> None:
        """Delete every entry of this cache's namespace (and only of it)."""
        run_blocking(self._sync.clear())

    # -- the async API: the same operations, awaited on AsyncCacheRepository ----------------------
    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """:meth:`get`, on :class:`~animedex_store.AsyncCacheRepository`."""
        return await self._async.get(key, default, version)

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """:meth:`get_many`, on :class:`~animedex_store.AsyncCacheRepository`."""
        return await self._async.get_many(keys, version)

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        """:meth:`has_key`, on :class:`~animedex_store.AsyncCacheRepository`."""
        return await self._async.has_key(key, version)

    async def aset(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        """:meth:`set`, on :class:`~animedex_store.AsyncCacheRepository`."""
        await self._async.set(key, value, timeout, version)

    async def aadd(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """:meth:`add`, on :class:`~animedex_store.AsyncCacheRepository`."""
        return await self._async.add(key, value, timeout, version)

    async def aset_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        """:meth:`set_many`, on :class:`~animedex_store.AsyncCacheRepository`."""
        return await self._async.set_many(data, timeout, version)

    async def atouch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """:meth:`touch`, on :class:`~animedex_store.AsyncCacheRepository`."""
        return await self._async.touch(key, timeout, version)

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        """:meth:`incr`, on :class:`~animedex_store.AsyncCacheRepository`."""
        return await self._async.incr(key, delta, version)

    async def aget_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        """:meth:`get_or_set`, on :class:`~animedex_store.AsyncCacheRepository` (a callable ``default`` is
        called on the event loop, as Django's own ``aget_or_set`` calls it)."""
        return await self._async.get_or_set(key, default, timeout, version)

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        """:meth:`delete`, on :class:`~animedex_store.AsyncCacheRepository`."""
        return await self._async.delete(key, version)

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """:meth:`delete_many`, on :class:`~animedex_store.AsyncCacheRepository`."""
        await self._async.delete_many(keys, version)

    async def aclear(self) -> None:
        """:meth:`clear`, on :class:`~animedex_store.AsyncCacheRepository`."""
        await self._async.clear()

    async def aclose(self, **kwargs: Any) -> None:
        """As ``close()``: nothing to release (see the module documentation), and no thread hop for it."""

    # ``decr``/``adecr``, ``incr_version``/``decr_version`` and their async twins are BaseCache's: they
    # call the methods above (so the async ones stay on the event loop). ``close``: BaseCache's, which
    # releases nothing.

    def __repr__(self) -> str:
        return f"<Django cache StoreCache on {self._store.name()}, namespace {self.namespace!r}>"
