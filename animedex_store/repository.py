"""``CacheRepository``: the TTL cache that application code imports.

A thin blocking shell: each method runs one operation of
:mod:`animedex_store.rules.operations` to its end on the calling thread
(:func:`~animedex_store.core.blocking.run_blocking`), over connections that never
suspend. Standard library only at import: a repository on an up-to-date SQLite
file runs without SQLAlchemy (see :mod:`animedex_store.fastpath.opening`);
everything else loads what it needs when it opens
(:mod:`animedex_store.migrations.connect`, the one place both repositories open through).

A repository that nobody references any more is closed by its finalizer (its
server connections go back at once); held server connections idle for
:data:`~animedex_store.sql.servers.IDLE_CONNECTION_SECONDS` close on their own.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from .core.blocking import run_blocking
from .core.clock import Clock, epoch_seconds
from .core.connections import Database
from .core.response import CachedResponse, StoredKey
from .core.validation import renamed_argument
from .fastpath.targets import DEFAULT_TIMEOUT_SECONDS, Target
from .migrations.connect import open_blocking
from .rules.flight import Fetched
from .rules.listing import KeyListing, key_query
from .rules.operations import Operations
from .rules.options import Options, check_options, documented_by
from .rules.runtime import BlockingRuntime

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .core.stats import CacheStats

__all__ = ["CacheRepository", "Clock", "epoch_seconds", "repository_on"]

ModelT = TypeVar("ModelT", bound="BaseModel")


class CacheRepository:
    """A TTL cache of raw response bytes keyed by ``(backend, signature)``.

    ``target`` is ``None`` (``$ANIMEDEX_STORE_URL``, else the default cache
    file), a path (a SQLite file, parent directories created), a URL string or
    ``sqlalchemy.URL`` (``sqlite://`` is in memory), or an ``Engine`` (not
    disposed on close). Opening migrates the schema to head unless
    ``migrate=False``. Safe to share between threads.

    ``max_bytes`` caps the total payload size: a write that takes it over
    evicts expired rows first, then the rows closest to expiry (see
    :mod:`animedex_store.rules.size_cap` for how the cost stays bounded).

    ``redact_headers`` names response headers (case-insensitive, e.g.
    ``{"Authorization", "Set-Cookie"}``) that ``set_with_meta`` drops before
    storing: credentials never reach the cache file. Rows already stored are
    left as they are.

    ``compression`` (``None``, ``"zlib"`` or ``"zstd"``) stores payloads of 4 KiB
    and more compressed, when that makes them smaller (see
    :mod:`animedex_store.core.codecs`); every repository reads every codec,
    whatever its own setting. ``"zstd"`` needs ``animedex-store[zstd]`` before
    Python 3.14. Sizes (``max_bytes``, ``stats()``) count bytes as stored.
    """

    def __init__(
        self,
        target: Target = None,
        *,
        clock: Clock | None = None,
        migrate: bool = True,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_bytes: int | None = None,
        redact_headers: Iterable[str] = (),
        compression: str | None = None,
    ) -> None:
        options = check_options(clock, max_bytes, redact_headers, compression)
        self._adopt(open_blocking(target, migrate=migrate, timeout=timeout), options)

    def _adopt(self, database: Database, options: Options) -> None:
        self._db, self._sql = database
        runtime = BlockingRuntime("animedex-store background")
        self._ops = Operations(self._db, self._sql, options, runtime)
        self.target: str = self._db.target
        self._db.schedule_with(runtime.call_later)  # held server connections close once idle
        # Nobody references the repository any more: its connections close at once.
        weakref.finalize(self, self._ops.release)

    # -- writes ---------------------------------------------------------------
    @documented_by(Operations.set)
    def set(self, backend: str, signature: str, payload: bytes, *, ttl_seconds: int) -> None:
        run_blocking(self._ops.set(backend, signature, payload, ttl_seconds=ttl_seconds))

    @documented_by(Operations.set_with_meta)
    def set_with_meta(
        self, backend: str, signature: str, payload: bytes, *, response_headers: Mapping[str, str], ttl_seconds: int
    ) -> None:
        operation = self._ops.set_with_meta(
            backend, signature, payload, response_headers=response_headers, ttl_seconds=ttl_seconds
        )
        run_blocking(operation)

    @documented_by(Operations.set_model)
    def set_model(self, backend: str, signature: str, model: BaseModel, *, ttl_seconds: int) -> None:
        run_blocking(self._ops.set_model(backend, signature, model, ttl_seconds=ttl_seconds))

    @documented_by(Operations.set_many)
    def set_many(
        self, backend: str, items: Mapping[str, bytes] | Iterable[tuple[str, bytes]], *, ttl_seconds: int
    ) -> None:
        run_blocking(self._ops.set_many(backend, items, ttl_seconds=ttl_seconds))

    @documented_by(Operations.replace)
    def replace(self, backend: str, signature: str, payload: bytes, *, ttl_seconds: int) -> bool:
        return run_blocking(self._ops.replace(backend, signature, payload, ttl_seconds=ttl_seconds))

    @documented_by(Operations.set_if_missing)
    def set_if_missing(self, backend: str, signature: str, payload: bytes, *, ttl_seconds: int) -> bool:
        return run_blocking(self._ops.set_if_missing(backend, signature, payload, ttl_seconds=ttl_seconds))

    @documented_by(Operations.touch)
    def touch(self, backend: str, signature: str, *, ttl_seconds: int) -> bool:
        return run_blocking(self._ops.touch(backend, signature, ttl_seconds=ttl_seconds))

    @documented_by(Operations.modify)
    def modify(self, backend: str, signature: str, change: Callable[[bytes], bytes]) -> bytes | None:
        return run_blocking(self._ops.modify(backend, signature, change))

    @documented_by(Operations.purge_expired)
    def purge_expired(self, backend: str | None = None) -> int:
        return run_blocking(self._ops.purge_expired(backend))

    @documented_by(Operations.get_or_fetch)
    def get_or_fetch(
        self,
        backend: str,
        signature: str,
        fetch: Callable[[], Fetched],
        *,
        ttl_seconds: int,
        serve_stale: bool = False,
        wait_seconds: float = 30.0,
        lease_seconds: float = 60.0,
    ) -> CachedResponse:
        operation = self._ops.get_or_fetch(
            backend,
            signature,
            fetch,
            ttl_seconds=ttl_seconds,
            serve_stale=serve_stale,
            wait_seconds=wait_seconds,
            lease_seconds=lease_seconds,
        )
        return run_blocking(operation)

    @documented_by(Operations.delete)
    def delete(self, backend: str, signature: str) -> bool:
        return run_blocking(self._ops.delete(backend, signature))

    @documented_by(Operations.delete_many)
    def delete_many(self, backend: str, signatures: Iterable[str]) -> int:
        return run_blocking(self._ops.delete_many(backend, signatures))

    @documented_by(Operations.clear)
    def clear(self, backend: str | None = None) -> int:
        return run_blocking(self._ops.clear(backend))

    @documented_by(Operations.vacuum)
    def vacuum(self) -> int | None:
        return run_blocking(self._ops.vacuum())

    # -- reads (pure: an expired row is reported missing, never deleted) ------
    @documented_by(Operations.get)
    def get(self, backend: str, signature: str) -> bytes | None:
        return run_blocking(self._ops.get(backend, signature))

    @documented_by(Operations.get_many)
    def get_many(self, backend: str, signatures: Iterable[str]) -> dict[str, bytes]:
        return run_blocking(self._ops.get_many(backend, signatures))

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
    ) -> Iterator[StoredKey]:
        query = key_query(
            self._ops.clock,
            backend,
            include_expired=include_expired,
            expired_only=expired_only,
            as_of=as_of,
            order_by=order_by,
            descending=descending,
            limit=limit,
            page_size=page_size,
        )
        listing = KeyListing(self._ops, query)
        return _pages(listing)

    @documented_by(Operations.count)
    def count(
        self, backend: str, *, include_expired: bool = False, expired_only: bool = False, as_of: datetime | None = None
    ) -> int:
        operation = self._ops.count(backend, include_expired=include_expired, expired_only=expired_only, as_of=as_of)
        return run_blocking(operation)

    @documented_by(Operations.payload_bytes)
    def payload_bytes(self, backend: str) -> int:
        return run_blocking(self._ops.payload_bytes(backend))

    @documented_by(Operations.contains_many)
    def contains_many(
        self, backend: str, signatures: Iterable[str], *, include_expired: bool = False
    ) -> frozenset[str]:
        return run_blocking(self._ops.contains_many(backend, signatures, include_expired=include_expired))

    @documented_by(Operations.get_with_meta)
    def get_with_meta(
        self, backend: str, signature: str, *, include_expired: bool = False, allow_stale: bool | None = None
    ) -> CachedResponse | None:
        if allow_stale is not None:
            include_expired = renamed_argument("allow_stale", "include_expired", allow_stale)
        return run_blocking(self._ops.get_with_meta(backend, signature, include_expired=include_expired))

    @documented_by(Operations.get_model)
    def get_model(self, backend: str, signature: str, model_type: type[ModelT]) -> ModelT | None:
        return run_blocking(self._ops.get_model(backend, signature, model_type))

    @documented_by(Operations.stats)
    def stats(self) -> CacheStats:
        return run_blocking(self._ops.stats())

    @documented_by(Operations.now)
    def now(self) -> datetime:
        return self._ops.now()

    # -- lifetime -------------------------------------------------------------
    def close(self) -> None:
        """Release the connection (and the engine, unless the caller passed it), and stop the
        repository's background thread. Idempotent."""
        operations = getattr(self, "_ops", None)
        if operations is None:
            return
        operations.release()
        self._db = operations.db  # ClosedConnections: every call refuses

    def __enter__(self) -> CacheRepository:
        return self

    def __exit__(self, *_exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CacheRepository({self.target!r})"


def _pages(listing: KeyListing) -> Iterator[StoredKey]:
    while (page := run_blocking(listing.next_page())) is not None:
        yield from page


def repository_on(database: Database, *, clock: Clock | None = None) -> CacheRepository:
    """A repository on a database already open at head (its connections and statements), with default
    options; closing it closes them. The pytest plugin builds its per-test copies so; not public API."""
    repository = CacheRepository.__new__(CacheRepository)
    repository._adopt(database, check_options(clock, None, (), None))
    return repository
