"""hishel 2.0 storages on animedex-store: hishel's HTTP cache in SQLite, PostgreSQL or MariaDB/MySQL.

```python
import hishel.httpx
from animedex_store.hishel import StoreStorage

client = hishel.httpx.CacheClient(storage=StoreStorage("postgresql+psycopg://app@db/cache"))
```

:class:`StoreStorage` is a hishel ``BaseStorage`` on a :class:`~animedex_store.CacheRepository`,
:class:`AsyncStoreStorage` an ``AsyncBaseStorage`` on an
:class:`~animedex_store.AsyncCacheRepository`. hishel is an optional dependency
(``pip install 'animedex-store[hishel]'``, Python 3.10 and later); importing
:mod:`animedex_store` never imports this module.

How hishel's entries map onto rows (all in ``cache_rows``, under the backends
of one ``namespace``, default ``"hishel"``; see :func:`backends`):

* ``<namespace>:entries``: one row per entry, signature the entry's id (a
  UUID whose first 48 bits are its creation time in milliseconds, so a key's
  entries list oldest first). The payload is msgpack (never pickle): the request
  (method, URL, every header), the response (status, headers as lists, repeated
  values kept), the TTL deadline and TTI as floats, when the TTI last restarted,
  and the body itself when it fits one chunk. The row outlives the entry by
  :data:`ROWS_OUTLIVE_ENTRIES`, so that ``purge`` never removes it before this
  module has reclaimed the entry's chunks.
* ``<namespace>:key:<sha256 of the cache key>``: one empty row per stored entry of
  that key, expiring with the entry (whole seconds, rounded up). A lookup lists
  these (one query) and reads their entries (one more), so a key holds any number
  of entries (``Vary``, every method in RFC mode).
* ``<namespace>:chunks``: a body larger than :data:`CHUNK_SIZE`, a row per chunk
  written as the body is read, so no body is ever held whole in memory.

An entry's rows are written when its body has been read to the end, so an
unfinished one is never seen; a stream abandoned, failed or too large deletes the
chunks it wrote. Removing an entry deletes its key row (new lookups miss at once)
and marks its entry row removed; its chunks stay :data:`GRACE_SECONDS` for readers
already streaming it, then the next entry written anywhere in the namespace
reclaims them, with those of expired entries and of writers that died. Storage
failures are logged and never fail a response: a failed lookup is a miss, a failed
write leaves the response uncached.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Generic, TypeVar, Union

try:
    # The ignores: mypy checks this module where the optional dependency is missing too (Python 3.9).
    import msgpack  # type: ignore[import-untyped,import-not-found,unused-ignore]  # a dependency of hishel
    from hishel import AsyncBaseStorage, BaseStorage, Entry, Headers, Request, Response  # type: ignore[import-not-found,unused-ignore]
except ImportError as exc:  # the optional dependency
    raise ImportError(
        f"animedex_store.hishel needs hishel 2.0: pip install 'animedex-store[hishel]' (Python 3.10+) ({exc})"
    ) from exc

from .async_repository import AsyncCacheRepository
from .core.blocking import run_blocking
from .core.http_caches import ttl_reaching
from .core.response import StoredKey
from .core.validation import KEY_MAX_LENGTH, MAX_TTL_SECONDS, check_count, check_seconds
from .errors import StoreError
from .fastpath.targets import Target
from .repository import CacheRepository

__all__ = [
    "StoreStorage",
    "AsyncStoreStorage",
    "backends",
    "CHUNK_SIZE",
    "GRACE_SECONDS",
    "ROWS_OUTLIVE_ENTRIES",
]

logger = logging.getLogger(__name__)

#: Bytes of body per chunk row; a body up to this size is kept in its entry's row.
CHUNK_SIZE = 256 * 1024
#: Seconds a removed or expired entry's chunks stay for readers already streaming it, and
#: how long a writer may go without renewing its claim on the chunks it is writing.
GRACE_SECONDS = 180.0
#: How long an entry's row outlives the entry, so that ``purge`` leaves it to this module.
ROWS_OUTLIVE_ENTRIES = timedelta(days=365)
#: Entries reclaimed per pass (expired, removed, or left by a writer that died).
RECLAIM_BATCH = 100
#: Chunk rows deleted per statement.
_DELETE_BATCH = 256
_FORMAT = 1
_STORED, _WRITING, _REMOVED = "stored", "writing", "removed"
_STATES = (_STORED, _WRITING, _REMOVED)
#: Longest namespace: its longest backend, ``<namespace>:key:<64 hex digits>``, must be a key.
NAMESPACE_MAX_LENGTH = KEY_MAX_LENGTH - len(":key:") - 64

_R = TypeVar("_R", CacheRepository, AsyncCacheRepository)
Repository = Union[CacheRepository, AsyncCacheRepository]


class Backends:
    """The backends of one namespace's rows (see the module docstring)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.entries = f"{namespace}:entries"
        self.chunks = f"{namespace}:chunks"

    def of_key(self, key: str) -> str:
        """The backend listing ``key``'s entries."""
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.namespace}:key:{digest}"


def backends(namespace: str = "hishel") -> Backends:
    """The backends a namespace's rows are under; ``TypeError``/``ValueError`` for a bad namespace."""
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be str, not {type(namespace).__name__}")
    if not 0 < len(namespace) <= NAMESPACE_MAX_LENGTH:
        raise ValueError(f"namespace must be 1 to {NAMESPACE_MAX_LENGTH} characters long, not {len(namespace)}")
    return Backends(namespace)


class _EntryIds:
    """New entry ids: UUIDs of the version 7 layout, whose first 48 bits are epoch milliseconds and
    whose other 74 free bits are random, except that within a process each id is greater than the
    one before (RFC 9562's monotonic random: an id in the same millisecond as the last, or with the
    clock set back, is the last one plus one). A key's entries are listed oldest first by id."""

    _FREE_BITS = 74  # 12 bits of rand_a and 62 of rand_b, around the version and variant

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = (0, 0)  # (milliseconds, free bits) of the last id

    def new(self) -> uuid.UUID:
        milliseconds = time.time_ns() // 1_000_000
        free = int.from_bytes(os.urandom(10), "big") >> (80 - self._FREE_BITS)
        with self._lock:
            last_milliseconds, last_free = self._last
            if milliseconds <= last_milliseconds:
                milliseconds, free = last_milliseconds, last_free + 1
                if free >> self._FREE_BITS:  # the millisecond's ids are used up: the next one's
                    milliseconds, free = milliseconds + 1, 0
            self._last = (milliseconds, free)
        rand_a, rand_b = free >> 62, free & (1 << 62) - 1
        return uuid.UUID(int=milliseconds << 80 | 0x7 << 76 | rand_a << 64 | 0x2 << 62 | rand_b)


_new_id = _EntryIds().new


def _chunk_signature(entry_id: str, number: int) -> str:
    return f"{entry_id}:{number:08x}"


def _header_lists(headers: Headers) -> dict[str, list[str]]:
    return {name: list(headers.get_list(name) or ()) for name in headers}


@dataclass
class _Stored:
    """An entry's row, decoded."""

    key: str
    state: str
    method: str = ""
    url: str = ""
    request_headers: dict[str, list[str]] = field(default_factory=dict)
    status: int = 0
    response_headers: dict[str, list[str]] = field(default_factory=dict)
    deadline: float | None = None  # the TTL's end, epoch seconds
    tti: float | None = None
    restarted: float = 0.0  # when the TTI last restarted (or, while writing, the writer last renewed its claim)
    chunks: int = 0  # chunk rows; 0: the body is ``body``
    body: bytes = b""

    def expires(self) -> float | None:
        """When the entry expires (removed or unfinished: when it was last claimed), or ``None``."""
        if self.state != _STORED:
            return self.restarted
        idle_until = None if self.tti is None else self.restarted + self.tti
        return min((limit for limit in (self.deadline, idle_until) if limit is not None), default=None)

    def pack(self) -> bytes:
        fields: list[Any] = [_FORMAT, self.key, self.state, self.restarted]
        if self.state == _STORED:
            fields += [self.method, self.url, self.request_headers, self.status, self.response_headers]
            fields += [self.deadline, self.tti, self.chunks, self.body]
        packed: bytes = msgpack.packb(fields, use_bin_type=True)
        return packed


def _unpack(payload: bytes) -> _Stored:
    """An entry's row; ``ValueError`` when it is not one this module wrote (checked field by field:
    a row planted in a shared table must not reach hishel as something else)."""
    try:
        fields = msgpack.unpackb(payload)
    except Exception as exc:  # msgpack raises several unrelated classes for bad input
        raise ValueError(f"an unreadable entry row ({type(exc).__name__})") from exc
    if type(fields) is not list or len(fields) not in (4, 13) or fields[0] != _FORMAT:
        raise ValueError("not an entry row of this format")
    key, state, restarted = fields[1:4]
    if type(key) is not str or state not in _STATES or not _is_seconds(restarted):
        raise ValueError("not an entry row of this format")
    if len(fields) == 4 and state != _STORED:
        return _Stored(key, state, restarted=restarted)
    method, url, request_headers, status, response_headers, deadline, tti, chunks, body = fields[4:]
    if not (
        state == _STORED
        and type(method) is str
        and type(url) is str
        and type(status) is int
        and type(chunks) is int
        and type(body) is bytes
        and (deadline is None or _is_seconds(deadline))
        and (tti is None or _is_seconds(tti))
        and _are_headers(request_headers)
        and _are_headers(response_headers)
    ):
        raise ValueError("an entry row with fields of the wrong types")
    return _Stored(
        key, state, method, url, request_headers, status, response_headers, deadline, tti, restarted, chunks, body
    )


def _is_seconds(value: object) -> bool:
    return type(value) is float or type(value) is int


def _are_headers(value: object) -> bool:
    # Plain loops: checked on every hit, they cost a third of nested all() over generators.
    if type(value) is not dict:
        return False
    for name, items in value.items():
        if type(name) is not str or type(items) is not list:
            return False
        for item in items:
            if type(item) is not str:
                return False
    return True


async def _settled(result: Any) -> Any:
    """A repository call's result: a blocking repository's at once, an async one's awaited."""
    return await result if inspect.isawaitable(result) else result


def _row_ttl(expires: float | None, now: float, outlive: float = 0.0) -> int:
    """``ttl_seconds`` for a row that lasts until ``expires`` (``None``: for ever) plus ``outlive`` seconds,
    rounded up to the whole second rows keep."""
    if expires is None:
        return MAX_TTL_SECONDS
    return ttl_reaching(expires + outlive, now)


@dataclass
class _Body:
    """Where an entry's body is: in its row (``chunks == 0``) or in ``chunks`` chunk rows."""

    entry_id: str
    chunks: int
    inline: bytes

    @property
    def pieces(self) -> int:
        """How many pieces a reader asks for, one at a time."""
        return self.chunks or (1 if self.inline else 0)


class _Store:
    """Everything both storages do, as coroutines over either repository: a
    :class:`CacheRepository`'s calls never suspend, so :class:`StoreStorage` runs these with
    :func:`~animedex_store.core.blocking.run_blocking`; :class:`AsyncStoreStorage` awaits them."""

    def __init__(
        self,
        storage: BaseStorage | AsyncBaseStorage,
        repository: Repository,
        owns_repository: bool,
        namespace: str,
        max_size: int | None,
    ) -> None:
        self.storage = storage
        self.repository = repository
        self.owns_repository = owns_repository
        self.backends = backends(namespace)
        self.max_size = max_size
        self.written_since_sized = 0  # body bytes this storage stored since it last measured the namespace
        self.closed = False

    # -- the repository's calls, on either class ---------------------------------------------------
    def now(self) -> float:
        return self.repository.now().timestamp()

    async def _listed(self, backend: str, **options: Any) -> list[StoredKey]:
        listing = self.repository.keys(backend, **options)
        if isinstance(listing, AsyncIterator):
            return [key async for key in listing]
        return list(listing)

    async def set_row(self, backend: str, signature: str, payload: bytes, ttl: int) -> None:
        await _settled(self.repository.set(backend, signature, payload, ttl_seconds=ttl))

    async def write_entry(self, entry_id: str, stored: _Stored, now: float) -> None:
        """The entry's row, outliving the entry (and a removed one's grace) by :data:`ROWS_OUTLIVE_ENTRIES`."""
        outlive = GRACE_SECONDS + ROWS_OUTLIVE_ENTRIES.total_seconds()
        await self.set_row(self.backends.entries, entry_id, stored.pack(), _row_ttl(stored.expires(), now, outlive))

    def check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"{type(self.storage).__name__} is closed and can no longer be used")

    # -- hishel's operations ----------------------------------------------------------------------
    async def create(self, request: Request, key: str, ttl: float | None, tti: float | None) -> _Saver:
        """A saver for a new entry of ``key``; reclaims what expired first (a failure only logged)."""
        self.check_open()
        now = self.now()
        deadline, tti = self.storage._limits(ttl, tti, now)
        limits = [limit for limit in (self.storage.max_stream_size, self.max_size) if limit is not None]
        try:
            await self.reclaim()
        except StoreError:
            logger.exception("hishel: could not reclaim expired entries")
        return _Saver(self, _new_id(), key, request, deadline, tti, min(limits, default=None))

    async def lookup(self, key: str) -> list[tuple[uuid.UUID, _Stored]]:
        """``key``'s stored, unexpired entries, oldest first, each restarting its TTI; a storage
        failure is a miss, an unreadable entry is dropped."""
        self.check_open()
        try:
            listed = await self._listed(self.backends.of_key(key))
            if not listed:
                return []
            ids = [stored_key.signature for stored_key in listed]
            rows = await self._entry_rows(ids)
            now = self.now()
            found = []
            for entry_id in ids:
                stored = await self._readable(key, entry_id, rows.get(entry_id), now)
                if stored is not None:
                    found.append((uuid.UUID(entry_id), stored))
            return found
        except StoreError:
            logger.exception("hishel: could not read entries, treating this as a cache miss")
            return []

    async def _entry_rows(self, ids: list[str]) -> dict[str, bytes]:
        """The entry rows of ``ids`` (a key's usual one by ``get``, a third cheaper than ``get_many``)."""
        if len(ids) == 1:
            payload: bytes | None = await _settled(self.repository.get(self.backends.entries, ids[0]))
            return {} if payload is None else {ids[0]: payload}
        rows: dict[str, bytes] = await _settled(self.repository.get_many(self.backends.entries, ids))
        return rows

    async def _readable(self, key: str, entry_id: str, payload: bytes | None, now: float) -> _Stored | None:
        """The entry ``entry_id`` of ``key`` if it can be served now, its TTI restarted (written only
        once half of it has passed: hishel allows that much early expiry)."""
        if payload is None:
            return None  # its row was reclaimed after the key was listed
        try:
            stored = _unpack(payload)
        except ValueError:
            logger.exception("hishel: dropping an entry that could not be decoded")
            await _settled(self.repository.delete(self.backends.entries, entry_id))
            await _settled(self.repository.delete(self.backends.of_key(key), entry_id))
            return None
        expires = stored.expires()
        if stored.state != _STORED or stored.key != key or (expires is not None and expires <= now):
            return None
        if stored.tti is not None and now - stored.restarted >= stored.tti / 2:
            stored.restarted = now
            await self.write_entry(entry_id, stored, now)
            await self.set_row(self.backends.of_key(key), entry_id, b"", _row_ttl(stored.expires(), now))
        return stored

    async def piece(self, body: _Body, number: int) -> bytes:
        """Piece ``number`` of a body; ``RuntimeError`` if it was reclaimed while being read."""
        if not body.chunks:
            return body.inline
        data: bytes | None = await _settled(
            self.repository.get(self.backends.chunks, _chunk_signature(body.entry_id, number))
        )
        if data is None:
            raise RuntimeError(
                f"the cached response was reclaimed while it was being read (after {GRACE_SECONDS:.0f} s removed)"
            )
        return data

    async def update_headers(self, entry_id: uuid.UUID, headers: Headers) -> None:
        """Replace a stored entry's response headers; nothing if it is gone, a failure only logged."""
        try:
            stored = await self._entry(entry_id.hex)
            if stored is not None and stored.state == _STORED:
                stored.response_headers = _header_lists(headers)
                await self.write_entry(entry_id.hex, stored, self.now())
        except StoreError:
            logger.exception("hishel: could not update an entry's headers")

    async def remove(self, entry_id: uuid.UUID) -> None:
        """Hide an entry from new lookups at once; its chunks are reclaimed after the grace period."""
        try:
            stored = await self._entry(entry_id.hex)
            if stored is None or stored.state == _REMOVED:
                return
            await _settled(self.repository.delete(self.backends.of_key(stored.key), entry_id.hex))
            now = self.now()
            await self.write_entry(entry_id.hex, _Stored(stored.key, _REMOVED, restarted=now), now)
        except StoreError:
            logger.exception("hishel: could not remove an entry")

    async def _entry(self, entry_id: str) -> _Stored | None:
        payload: bytes | None = await _settled(self.repository.get(self.backends.entries, entry_id))
        if payload is None:
            return None
        try:
            return _unpack(payload)
        except ValueError:
            return None

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.owns_repository:
            await _settled(self.repository.close())

    # -- space ------------------------------------------------------------------------------------
    async def reclaim(self) -> None:
        """Delete up to :data:`RECLAIM_BATCH` entries that expired, were removed or were left unfinished
        :data:`GRACE_SECONDS` ago or more, chunks first: one indexed query when there are none."""
        as_of = self.repository.now() + ROWS_OUTLIVE_ENTRIES
        listed = await self._listed(self.backends.entries, expired_only=True, as_of=as_of, limit=RECLAIM_BATCH)
        if listed:
            await self._delete_entries([stored_key.signature for stored_key in listed])

    async def _delete_entries(self, entry_ids: list[str]) -> None:
        """Delete entries' key rows, chunks and entry rows, in that order (a reader never finds an
        entry row whose chunks are gone before its key row)."""
        rows = await self._entry_rows(entry_ids)
        for entry_id in entry_ids:
            payload = rows.get(entry_id)
            try:
                stored = None if payload is None else _unpack(payload)
            except ValueError:
                stored = None
            if stored is not None:
                await _settled(self.repository.delete(self.backends.of_key(stored.key), entry_id))
            await self.delete_chunks(entry_id)
        await _settled(self.repository.delete_many(self.backends.entries, entry_ids))

    async def delete_chunks(self, entry_id: str, written: int | None = None) -> None:
        """Delete an entry's chunk rows: ``written`` of them, or as many as there are (numbered from 0)."""
        start = 0
        while True:
            end = start + _DELETE_BATCH if written is None else min(start + _DELETE_BATCH, written)
            signatures = [_chunk_signature(entry_id, number) for number in range(start, end)]
            if not signatures:
                return
            deleted: int = await _settled(self.repository.delete_many(self.backends.chunks, signatures))
            if written is None and deleted < len(signatures):
                return
            start = end

    async def after_storing(self, size: int) -> None:
        """``size`` more bytes stored: past an eighth of ``max_size`` since the namespace was last
        measured, measure it (rows of every process sharing the store) and evict down to ``max_size``."""
        if self.max_size is None:
            return
        self.written_since_sized += size
        if self.written_since_sized < self.max_size // 8:
            return
        self.written_since_sized = 0
        total = 0
        for backend in (self.backends.entries, self.backends.chunks):
            total += sum(stored_key.size for stored_key in await self._listed(backend))
        if total <= self.max_size:
            return
        # Entries closest to expiry first (an idle entry's TTI brings it closer), as the repository's size cap.
        listed = await self._listed(self.backends.entries, order_by="expires_at", include_expired=True)
        for stored_key in listed:
            if total <= self.max_size:
                return
            stored = await self._entry(stored_key.signature)
            if stored is None or stored.state == _WRITING:
                continue
            total -= stored_key.size + (stored.chunks * CHUNK_SIZE)
            await self._delete_entries([stored_key.signature])


class _Saver:
    """Saves one new entry's body as the consumer reads it: full chunks as rows, the entry's rows at the
    end. Caching stops (the rows written so far deleted) on a storage failure, or when the body outgrows
    ``limit``; the consumer is never told."""

    def __init__(
        self,
        store: _Store,
        entry_id: uuid.UUID,
        key: str,
        request: Request,
        deadline: float | None,
        tti: float | None,
        limit: int | None,
    ) -> None:
        self.store = store
        self.id = entry_id
        self.key = key
        self.request = request
        self.deadline = deadline
        self.tti = tti
        self.limit = limit
        self.saving = True
        self.buffer = bytearray()
        self.size = 0
        self.chunks = 0
        self.claimed: float | None = None  # when the chunks' claim (a "writing" entry row) was last renewed
        self.written = False  # whether any row of the entry may have been written

    async def add(self, data: bytes) -> None:
        if not self.saving:
            return
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            await self.abort()
            return
        self.buffer += data
        try:
            while len(self.buffer) >= CHUNK_SIZE:
                await self._write_chunk(bytes(self.buffer[:CHUNK_SIZE]))
                del self.buffer[:CHUNK_SIZE]
        except StoreError:
            logger.exception("hishel: could not save a response body, serving it uncached")
            await self.abort()

    async def _write_chunk(self, data: bytes) -> None:
        store = self.store
        now = store.now()
        if self.claimed is None or now - self.claimed >= GRACE_SECONDS / 2:
            # A claim on the chunks: if this writer dies, the entry is reclaimed GRACE_SECONDS later.
            self.claimed = now
            self.written = True
            await store.write_entry(self.id.hex, _Stored(self.key, _WRITING, restarted=now), now)
        signature = _chunk_signature(self.id.hex, self.chunks)
        await store.set_row(store.backends.chunks, signature, data, MAX_TTL_SECONDS)
        self.chunks += 1

    async def finish(self, status: int, response_headers: Headers) -> None:
        """The body was read to its end: store the entry (a failure only logged)."""
        if not self.saving:
            return
        store = self.store
        try:
            body = bytes(self.buffer)
            if self.chunks and body:
                await self._write_chunk(body)
            now = store.now()
            stored = _Stored(
                self.key,
                _STORED,
                method=self.request.method,
                url=self.request.url,
                request_headers=_header_lists(self.request.headers),
                status=status,
                response_headers=_header_lists(response_headers),
                deadline=self.deadline,
                tti=self.tti,
                restarted=now,
                chunks=self.chunks,
                body=b"" if self.chunks else body,
            )
            expires = stored.expires()
            if expires is not None and expires <= now:
                await self.abort()  # expired already (a TTL of 0)
                return
            self.written = True
            await store.write_entry(self.id.hex, stored, now)
            await store.set_row(store.backends.of_key(self.key), self.id.hex, b"", _row_ttl(expires, now))
            self.saving = False
            await store.after_storing(self.size)
        except StoreError:
            logger.exception("hishel: could not store a response, serving it uncached")
            await self.abort()

    async def abort(self) -> None:
        """Stop saving and delete what was written (nothing once the entry is stored); a failure only logged."""
        if not self.saving:
            return
        self.saving = False
        self.buffer = bytearray()
        if not self.written:
            return
        try:
            await self.store.delete_chunks(self.id.hex, self.chunks)
            await _settled(self.store.repository.delete(self.store.backends.entries, self.id.hex))
        except StoreError:
            logger.exception("hishel: could not delete an abandoned response body; it is reclaimed later")


def _options(
    default_ttl: object, default_tti: object, max_stream_size: object, max_size: object
) -> tuple[float | None, float | None, int | None, int | None]:
    """The constructor's options, checked (``TypeError``/``ValueError``)."""
    return (
        None if default_ttl is None else check_seconds("default_ttl", default_ttl),
        None if default_tti is None else check_seconds("default_tti", default_tti),
        None if max_stream_size is None else check_count("max_stream_size", max_stream_size),
        None if max_size is None else check_count("max_size", max_size),
    )


class _Setup(Generic[_R]):
    """What both storages' constructors do: check the options, then open ``target`` as a repository of
    their class (closed with the storage) or take ``repository=`` (left open)."""

    _repository_class: type[_R]

    def __init__(
        self,
        target: Target | Any = None,
        *,
        namespace: str = "hishel",
        default_ttl: float | None = None,
        default_tti: float | None = None,
        max_stream_size: int | None = None,
        max_size: int | None = None,
        repository: _R | None = None,
    ) -> None:
        default_ttl, default_tti, max_stream_size, max_size = _options(
            default_ttl, default_tti, max_stream_size, max_size
        )
        backends(namespace)
        kind = self._repository_class
        if repository is not None and not isinstance(repository, kind):
            raise TypeError(f"repository must be a {kind.__name__}, not {type(repository).__name__}")
        # hishel's base class, next in the MRO, keeps the three options.
        super().__init__(default_ttl=default_ttl, default_tti=default_tti, max_stream_size=max_stream_size)  # type: ignore[call-arg,unused-ignore]
        self.repository: _R = kind(target) if repository is None else repository
        self.namespace = namespace
        self.max_size = max_size
        self._store = _Store(self, self.repository, repository is None, namespace, max_size)  # type: ignore[arg-type,unused-ignore]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.repository.target!r}, namespace={self.namespace!r})"


def _entry(entry_id: uuid.UUID, stored: _Stored, stream: Iterator[bytes] | AsyncIterator[bytes]) -> Entry:
    request = Request(method=stored.method, url=stored.url, headers=Headers(stored.request_headers))
    response = Response(status_code=stored.status, headers=Headers(stored.response_headers), stream=stream)
    return Entry(id=entry_id, request=request, response=response)


class StoreStorage(_Setup[CacheRepository], BaseStorage):  # type: ignore[misc,unused-ignore]  # Any where it is missing
    """hishel's ``BaseStorage`` on a :class:`~animedex_store.CacheRepository`, for ``hishel.httpx.CacheClient``,
    ``hishel.requests.CacheAdapter`` and the rest of hishel's sync clients.

    ``target`` is anything :class:`~animedex_store.CacheRepository` takes (``None``: the
    default); ``repository=`` shares an open one instead (left open by :meth:`close`).
    ``namespace`` keeps these entries apart from every other user of the store.
    ``default_ttl`` and ``default_tti`` (seconds, fractions too) and ``max_stream_size``
    (bytes) are hishel's; ``max_size`` (bytes) caps the namespace's entries and bodies
    across every process sharing the store, evicting those closest to expiry.
    """

    _repository_class = CacheRepository

    def create_entry(
        self, request: Request, response: Response, key: str, *, ttl: float | None = None, tti: float | None = None
    ) -> Entry:
        saver = run_blocking(self._store.create(request, key, ttl, tti))
        body = response.stream if response.stream is not None else ()
        if not isinstance(body, Iterable):
            raise TypeError(f"StoreStorage saves a sync stream, not {type(body).__name__}")
        stream = self._saving(body, saver, response)
        return Entry(id=saver.id, request=request, response=replace(response, stream=stream))

    @staticmethod
    def _saving(body: Iterable[bytes], saver: _Saver, response: Response) -> Iterator[bytes]:
        try:
            for data in body:
                run_blocking(saver.add(data))
                yield data
            run_blocking(saver.finish(response.status_code, response.headers))
        finally:
            run_blocking(saver.abort())  # unfinished: its rows go (nothing once stored)

    def get_entries(self, key: str) -> list[Entry]:
        found = run_blocking(self._store.lookup(key))
        return [_entry(entry_id, stored, self._reading(entry_id, stored)) for entry_id, stored in found]

    def _reading(self, entry_id: uuid.UUID, stored: _Stored) -> Iterator[bytes]:
        body = _Body(entry_id.hex, stored.chunks, stored.body)
        for number in range(body.pieces):
            yield run_blocking(self._store.piece(body, number))

    def update_headers(self, id: uuid.UUID, headers: Headers) -> None:
        run_blocking(self._store.update_headers(id, headers))

    def remove_entry(self, id: uuid.UUID) -> None:
        run_blocking(self._store.remove(id))

    def close(self) -> None:
        """Close the repository, unless it was handed in (``repository=``). Idempotent; the storage can
        no longer be used (hishel's clients close their storage when they close)."""
        run_blocking(self._store.close())


class AsyncStoreStorage(_Setup[AsyncCacheRepository], AsyncBaseStorage):  # type: ignore[misc,unused-ignore]  # Any where it is missing
    """hishel's ``AsyncBaseStorage`` on an :class:`~animedex_store.AsyncCacheRepository`, for
    ``hishel.httpx.AsyncCacheClient`` and hishel's other async clients: :class:`StoreStorage`'s
    arguments and behaviour, as coroutines; ``repository=`` takes an ``AsyncCacheRepository``."""

    _repository_class = AsyncCacheRepository

    async def create_entry(
        self, request: Request, response: Response, key: str, *, ttl: float | None = None, tti: float | None = None
    ) -> Entry:
        saver = await self._store.create(request, key, ttl, tti)
        body = response.stream if response.stream is not None else _nothing()
        if not isinstance(body, AsyncIterator):
            raise TypeError(f"AsyncStoreStorage saves an async stream, not {type(body).__name__}")
        stream = self._saving(body, saver, response)
        return Entry(id=saver.id, request=request, response=replace(response, stream=stream))

    @staticmethod
    async def _saving(body: AsyncIterator[bytes], saver: _Saver, response: Response) -> AsyncIterator[bytes]:
        try:
            async for data in body:
                await saver.add(data)
                yield data
            await saver.finish(response.status_code, response.headers)
        finally:
            await saver.abort()  # unfinished: its rows go (nothing once stored)

    async def get_entries(self, key: str) -> list[Entry]:
        found = await self._store.lookup(key)
        return [_entry(entry_id, stored, self._reading(entry_id, stored)) for entry_id, stored in found]

    async def _reading(self, entry_id: uuid.UUID, stored: _Stored) -> AsyncIterator[bytes]:
        body = _Body(entry_id.hex, stored.chunks, stored.body)
        for number in range(body.pieces):
            yield await self._store.piece(body, number)

    async def update_headers(self, id: uuid.UUID, headers: Headers) -> None:
        await self._store.update_headers(id, headers)

    async def remove_entry(self, id: uuid.UUID) -> None:
        await self._store.remove(id)

    async def close(self) -> None:
        """Close the repository, unless it was handed in (``repository=``). Idempotent."""
        await self._store.close()


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # an async generator that yields nothing
