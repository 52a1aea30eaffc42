"""hishel 2.0 on animedex-store: hishel's HTTP cache in SQLite, PostgreSQL or MariaDB/MySQL.

.. code-block:: python

    import hishel.httpx
    from animedex_store.integrations.hishel import StoreStorage

    client = hishel.httpx.CacheClient(storage=StoreStorage("postgresql+psycopg://app@db/cache"))

:class:`StoreStorage` is a hishel ``BaseStorage`` on a :class:`~animedex_store.CacheRepository`,
:class:`AsyncStoreStorage` an ``AsyncBaseStorage`` on an
:class:`~animedex_store.AsyncCacheRepository`. hishel is an optional dependency
(``pip install 'animedex-store[hishel]'``, Python 3.10 and later); importing
:mod:`animedex_store` never imports this package.

How hishel's entries map onto rows (all in ``cache_rows``, under the backends
of one ``namespace``, default ``"hishel"``; see :func:`backends`):

* ``<namespace>:entries``: one row per entry, signature the entry's id (a
  UUID whose first 48 bits are its creation time in milliseconds, so a key's
  entries list oldest first). The payload is msgpack (never pickle): the request
  (method, URL, every header), the response (status, headers as lists, repeated
  values kept), the TTL deadline and TTI as floats, when the TTI last restarted,
  and the body itself when it fits one chunk. The row outlives the entry by
  :data:`GRACE_SECONDS` and :data:`ROWS_OUTLIVE_ENTRIES`, so that ``purge`` never
  removes it before this package has reclaimed the entry's chunks.
* ``<namespace>:key:<sha256 of the cache key>``: one empty row per stored entry of
  that key, expiring with the entry (whole seconds, rounded up). A lookup lists
  these (one query) and reads their entries (one more), so a key holds any number
  of entries (``Vary``, every method in RFC mode).
* ``<namespace>:chunks``: a body larger than :data:`CHUNK_SIZE`, a row per chunk
  written as the body is read, so no body is ever held whole in memory.
* ``<namespace>:removed``: what a removed entry leaves (its key and chunk count)
  until its readers are done.

An entry's rows are written when its body has been read to the end, so an
unfinished one is never seen; a stream abandoned, failed or too large deletes the
chunks it wrote. While it writes chunks, a writer holds a claim (its entry's row,
``writing``) that it renews by the clock, every half of :data:`GRACE_SECONDS`,
however slowly the body comes; a claim not renewed for that long is reclaimed, and
its writer, finding it gone, stores nothing. Removing an entry deletes its key and
entry rows (new lookups miss at once); its chunks stay :data:`GRACE_SECONDS` for
readers already streaming it, then the next entry written anywhere in the namespace
reclaims them, with those of expired entries and of lapsed claims (each store looks
at most a hundred of each, through the expiry index, whatever the namespace holds).

Every write that could undo another is conditional: restarting an entry's TTI and
updating its headers overwrite its rows only while they exist, so a removed entry
is never brought back. Rows of a format this version does not know (written by a
later one) are skipped, never deleted. Storage failures are logged on
``animedex_store.integrations.hishel`` and never fail a response: a failed lookup is
a miss, a failed write leaves the response uncached; an unreadable row is logged
and dropped.

The package, by concern: :mod:`.rows` (entry ids, backends, the rows' encoding),
:mod:`.store` (lookups, updates, removal, reclaiming, the size cap), :mod:`.saver`
(saving a body as it streams) and :mod:`.storages` (the two public classes). The
store and the saver are written once, as coroutines over the repository's
operations, as the repositories themselves are: the sync storage runs them to their
end on the calling thread, the async one awaits them.
"""

from __future__ import annotations

try:
    # The ignores: mypy checks this package where the optional dependency is missing too (Python 3.9).
    import hishel  # type: ignore[import-not-found,unused-ignore]  # noqa: F401 - to say what is missing first
    import msgpack  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: F401 - a dependency of hishel
except ImportError as exc:  # the optional dependency
    raise ImportError(
        "animedex_store.integrations.hishel needs hishel 2.0: "
        f"pip install 'animedex-store[hishel]' (Python 3.10+) ({exc})"
    ) from exc

from .rows import CHUNK_SIZE, GRACE_SECONDS, ROWS_OUTLIVE_ENTRIES, backends
from .storages import AsyncStoreStorage, StoreStorage

__all__ = [
    "StoreStorage",
    "AsyncStoreStorage",
    "backends",
    "CHUNK_SIZE",
    "GRACE_SECONDS",
    "ROWS_OUTLIVE_ENTRIES",
]
