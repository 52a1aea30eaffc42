"""``CacheRepository``: the TTL cache that application code imports.

Standard library only at import: a repository on an up-to-date SQLite file runs
without SQLAlchemy (see :mod:`animedex_store.fastpath.opening`); everything else
loads what it needs when it opens (:mod:`animedex_store.migrations.opening`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from .core.clock import Clock, epoch_millis, epoch_seconds, utc_datetime
from .core.codecs import check_compression, decode, encode
from .core.connections import ClosedConnections, Database
from .core.listing import EVERY_ROW, KEY_ORDERS, KeyPage
from .core.response import CachedResponse, StoredKey
from .core.validation import (
    MAX_TTL_SECONDS,
    MAX_WAIT_SECONDS,
    check_choice,
    check_count,
    check_header_names,
    check_key,
    check_moment,
    check_payload,
    check_seconds,
    check_ttl,
    encode_headers,
    renamed_argument,
)
from .fastpath.opening import Resolved, open_database
from .fastpath.targets import DEFAULT_TIMEOUT_SECONDS, Target
from .migrations.revisions import HEAD_REVISION
from .ops.eviction import SizeCap, check_max_bytes
from .single_flight import Fetched, Flight, Key

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .core.stats import CacheStats

__all__ = ["CacheRepository", "Clock", "epoch_seconds", "repository_on"]

ModelT = TypeVar("ModelT", bound="BaseModel")
_EMPTY_HEADERS = b"{}"
#: Rows removed per transaction by :meth:`CacheRepository.purge_expired`.
PURGE_BATCH = 1_000
_EVERY_ROW = EVERY_ROW


def _pairs(items: object) -> Iterator[tuple[Any, Any]]:
    """``(signature, payload)`` pairs from an iterable, refusing anything else with ``TypeError``."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(
            f"items must be a mapping or an iterable of (signature, payload) pairs, not {type(items).__name__}"
        )
    for item in items:
        try:
            signature, payload = item
        except (TypeError, ValueError):
            raise TypeError(f"each item must be a (signature, payload) pair, not {item!r:.80}") from None
        yield signature, payload


def _utc_or_none(seconds: int | None) -> datetime | None:
    return None if seconds is None else utc_datetime(seconds)


def _open_migrated(target: Resolved, *, migrate: bool, timeout: float) -> Database:
    """The slow path, handed to the fast path: SQLAlchemy and Alembic load here, when it is taken."""
    from .migrations.opening import open_migrated

    return open_migrated(target, migrate=migrate, timeout=timeout)


class CacheRepository:
    """A TTL cache of raw response bytes keyed by ``(backend, signature)``.

    ``target`` is ``None`` (``$ANIMEDEX_STORE_URL``, else the default cache
    file), a path (a SQLite file, parent directories created), a URL string or
    ``sqlalchemy.URL`` (``sqlite://`` is in memory), or an ``Engine`` (not
    disposed on close). Opening migrates the schema to head unless
    ``migrate=False``. Safe to share between threads.

    ``max_bytes`` caps the total payload size: a write that takes it over
    evicts expired rows first, then the rows closest to expiry (see
    :mod:`animedex_store.ops.eviction` for how the cost stays bounded).

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
        self._configure(clock, max_bytes, redact_headers, compression)
        self._db, self._sql = open_database(
            target, migrate=migrate, timeout=timeout, head=HEAD_REVISION, slow_path=_open_migrated
        )
        self.target: str = self._db.target

    def _configure(
        self, clock: Clock | None, max_bytes: int | None, redact_headers: Iterable[str], compression: str | None
    ) -> None:
        """Check and keep the options that do not depend on the database."""
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be a callable returning a datetime, not {type(clock).__name__}")
        self._redacted = check_header_names(redact_headers)
        self._codec = check_compression(compression)
        cap = check_max_bytes(max_bytes)
        self._cap = None if cap is None else SizeCap(cap)
        self._clock = clock
        self._flights = _FlightStore(self)

    # -- time ---------------------------------------------------------------
    def _now(self) -> int:
        if self._clock is None:
            return int(time.time())
        return epoch_seconds(self._clock())

    def _now_ms(self) -> int:
        """Now in epoch milliseconds, by the same clock: ``get_or_fetch``'s leases last seconds."""
        if self._clock is None:
            return time.time_ns() // 1_000_000
        return epoch_millis(self._clock())

    # -- writes ---------------------------------------------------------------
    def set(self, backend: str, signature: str, payload: bytes, *, ttl_seconds: int) -> None:
        """Store or overwrite a row, with empty headers and ``fetched_at`` = now."""
        self._write(backend, signature, payload, _EMPTY_HEADERS, ttl_seconds)

    def set_with_meta(
        self,
        backend: str,
        signature: str,
        payload: bytes,
        *,
        response_headers: Mapping[str, str],
        ttl_seconds: int,
    ) -> None:
        """Store or overwrite a row with its response headers (a str→str mapping)."""
        self._write(backend, signature, payload, encode_headers(response_headers, self._redacted), ttl_seconds)

    def _write(self, backend: str, signature: str, payload: object, headers: bytes, ttl_seconds: object) -> None:
        check_key("backend", backend)
        check_key("signature", signature)
        stored, codec = encode(check_payload(payload), self._codec)
        ttl = check_ttl(ttl_seconds)
        now = self._now()
        values = (backend, signature, now + ttl, now, codec, headers, stored)
        cap = self._cap
        if cap is None:
            self._db.execute(self._sql.upsert, values)
            return
        cap.check_fits(len(stored))
        previous = cap.previous_size(self._db, self._sql, backend, signature)
        self._db.execute(self._sql.upsert, values)
        cap.grew(self._db, self._sql, len(stored) - previous, (backend, signature))

    def set_model(self, backend: str, signature: str, model: BaseModel, *, ttl_seconds: int) -> None:
        """Store a pydantic model as ``model.model_dump_json()`` in UTF-8."""
        from pydantic import BaseModel

        if not isinstance(model, BaseModel):
            raise TypeError(f"model must be a pydantic BaseModel, not {type(model).__name__}")
        self.set(backend, signature, model.model_dump_json().encode("utf-8"), ttl_seconds=ttl_seconds)

    def set_many(
        self,
        backend: str,
        items: Mapping[str, bytes] | Iterable[tuple[str, bytes]],
        *,
        ttl_seconds: int,
    ) -> None:
        """Store or overwrite many rows of one backend in one transaction, as :meth:`set` would.

        ``items`` maps signatures to payloads, or is an iterable of
        ``(signature, payload)`` pairs (a repeated signature: the last wins).
        Every item is checked before anything is written.
        """
        check_key("backend", backend)
        pairs = items.items() if isinstance(items, Mapping) else _pairs(items)
        encoded: dict[str, tuple[bytes, int]] = {}  # signature -> (payload as stored, codec)
        for signature, payload in pairs:
            check_key("signature", signature)
            encoded[signature] = encode(check_payload(payload), self._codec)
        ttl = check_ttl(ttl_seconds)
        if not encoded:
            return
        cap = self._cap
        if cap is not None:
            for stored, _codec in encoded.values():
                cap.check_fits(len(stored))
        now = self._now()
        expires_at = now + ttl
        rows = [
            (backend, signature, expires_at, now, codec, _EMPTY_HEADERS, stored)
            for signature, (stored, codec) in encoded.items()
        ]
        self._db.executemany(self._sql.upsert, rows)
        if cap is not None:
            # Counted as if nothing was overwritten: the cap's estimate only runs
            # high, and it counts exactly before evicting anything.
            last_written = (backend, next(reversed(encoded)))
            cap.grew(self._db, self._sql, sum(len(stored) for stored, _codec in encoded.values()), last_written)

    def purge_expired(self) -> int:
        """Delete every row with ``expires_at <= now``; returns how many rows were removed.

        Also deletes the ``get_or_fetch`` claims whose lease has ended (left by
        callers that died), which the returned count does not include.

        Deletes in batches of :data:`PURGE_BATCH` rows found through the
        ``expires_at`` index, each its own transaction, so writers never wait
        long for the lock however many rows expired.
        """
        now = self._now()
        removed = 0
        while True:
            count = self._db.execute(self._sql.purge_expired, (now, PURGE_BATCH))
            removed += count
            if count < PURGE_BATCH:
                break
        # Claims left by get_or_fetch callers that died: not counted, they are not rows.
        self._db.execute(self._sql.purge_claims, (self._now_ms(),))
        return removed

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
        """The live row, else ``fetch()``'s result stored with ``ttl_seconds``: one fetch per key
        across threads, processes and machines sharing the database (single flight).

        ``fetch()`` takes no arguments and returns the payload (``bytes``), or a
        ``(payload, headers)`` pair stored as :meth:`set_with_meta` would. A live
        row is returned as :meth:`get_with_meta` returns it, at the same cost.
        Otherwise this call claims the key (one atomic statement, in the table
        ``cache_locks``), reads the row again, calls ``fetch()``, stores the
        result and releases the claim; if ``fetch()`` raises, the claim is
        released and the exception propagates. A caller that cannot claim the
        key polls for the row (10 ms doubling to 250 ms), takes the claim over
        once its lease ends (``lease_seconds`` after it was taken: a holder that
        died blocks nobody longer), and raises
        :class:`~animedex_store.errors.FetchTimeoutError` after ``wait_seconds``.

        With ``serve_stale=True`` an expired row still stored is returned
        (``is_stale=True``) instead of waiting for another caller's fetch, or
        when ``fetch()`` raises. ``wait_seconds`` (≥ 0) and ``lease_seconds``
        (> 0) are numbers of seconds; leases follow the repository's clock, the
        wait real time. No transaction is held while ``fetch()`` runs or while
        waiting. See :mod:`animedex_store.single_flight`.
        """
        if not callable(fetch):
            raise TypeError(f"fetch must be a callable taking no arguments, not {type(fetch).__name__}")
        # The usual values pass on a type check and a comparison each, the rest through the full
        # checks: a hit must cost what get_with_meta costs, and three calls are a twentieth of it.
        ttl, wait, lease = ttl_seconds, wait_seconds, lease_seconds
        if type(ttl) is not int or not 0 <= ttl <= MAX_TTL_SECONDS:
            ttl = check_ttl(ttl)
        if type(wait) is not float or not 0.0 <= wait <= MAX_WAIT_SECONDS:
            wait = check_seconds("wait_seconds", wait)
        if type(lease) is not float or not 0.0 < lease <= MAX_WAIT_SECONDS:
            lease = check_seconds("lease_seconds", lease, positive=True)
        found = self.get_with_meta(backend, signature, include_expired=True)  # checks the key
        if found is not None and not found.is_stale:
            return found  # a hit: one read, nothing else
        flight = Flight(
            self._flights, (backend, signature), fetch, ttl=ttl, serve_stale=serve_stale, lease_seconds=lease
        )
        return flight.run(wait, found)

    def delete(self, backend: str, signature: str) -> bool:
        """Delete one row, expired or not; ``True`` if it existed."""
        check_key("backend", backend)
        check_key("signature", signature)
        return self._db.execute(self._sql.delete, (backend, signature)) > 0

    def delete_many(self, backend: str, signatures: Iterable[str]) -> int:
        """Delete the rows of ``signatures`` (expired or not, missing ones ignored) in one statement per
        :data:`~animedex_store.sql.statements.GET_MANY_CHUNK` keys; returns how many were removed.
        Every key is checked before anything is deleted."""
        return sum(
            self._db.execute(self._sql.delete_many(size), (backend, *chunk))
            for size, chunk in self._padded_chunks(backend, signatures)
        )

    def clear(self, backend: str | None = None) -> int:
        """Delete every row, or only ``backend``'s; returns how many were removed."""
        if backend is None:
            return self._db.execute(self._sql.clear, ())
        check_key("backend", backend)
        return self._db.execute(self._sql.clear_backend, (backend,))

    def vacuum(self) -> int | None:
        """Give the space of deleted rows back to the disk; bytes reclaimed, or ``None`` where the
        engine cannot tell (MariaDB/MySQL). Locks the table while it runs: SQLite rewrites the file
        (``VACUUM``), PostgreSQL the table (``VACUUM FULL``), MariaDB/MySQL ``OPTIMIZE TABLE``."""
        return self._db.vacuum()

    # -- reads (pure: an expired row is reported missing, never deleted) ------
    def get(self, backend: str, signature: str) -> bytes | None:
        """The payload, or ``None`` when the row is missing or expired."""
        check_key("backend", backend)
        check_key("signature", signature)
        row = self._db.fetchone(self._sql.get, (backend, signature))
        if row is None or row[1] <= self._now():
            return None
        payload: bytes = row[0]
        return payload if not row[2] else decode(payload, row[2], self.target, (backend, signature))

    def get_many(self, backend: str, signatures: Iterable[str]) -> dict[str, bytes]:
        """``{signature: payload}`` of the live rows among ``signatures`` (missing and expired left out)."""
        chunks = self._padded_chunks(backend, signatures)
        now = self._now()
        found: dict[str, bytes] = {}
        for size, chunk in chunks:
            for signature, expires_at, codec, payload in self._db.fetchall(self._sql.get_many(size), (backend, *chunk)):
                if expires_at > now:
                    found[signature] = (
                        payload if not codec else decode(payload, codec, self.target, (backend, signature))
                    )
        return found

    def _padded_chunks(self, backend: str, signatures: Iterable[str]) -> list[tuple[int, list[str]]]:
        """``signatures`` checked, without repeats, in chunks padded to a power of two by repeating a
        key: a handful of compiled variants of ``get_many``/``delete_many`` serve every size."""
        check_key("backend", backend)
        if isinstance(signatures, str):
            raise TypeError("signatures must be an iterable of str, not a single str")
        keys = list(dict.fromkeys(signatures))  # in order, without repeats
        for signature in keys:
            check_key("signature", signature)
        chunk_size = self._sql.get_many_chunk
        chunks = []
        for start in range(0, len(keys), chunk_size):
            chunk = keys[start : start + chunk_size]
            size = 1 << (len(chunk) - 1).bit_length()
            chunks.append((size, chunk + chunk[-1:] * (size - len(chunk))))
        return chunks

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
        """The keys of ``backend``'s live rows as :class:`StoredKey` ``(signature, expires_at, size)``;
        payloads are not read. Every argument is checked when the call is made.

        Which rows: live ones (``expires_at`` after ``as_of``, by default the repository's
        now); with ``include_expired=True`` every row; with ``expired_only=True`` only the
        rows expired as of ``as_of`` (``include_expired`` then changes nothing). In the
        order of ``order_by`` (``"signature"``, ``"expires_at"`` or ``"size"`` as stored;
        ties by signature), ``descending`` reversing it, at most ``limit`` keys. Read in pages
        of ``page_size`` rows, each one query continuing after the last row seen: rows written
        or deleted meanwhile are seen or not, never twice. Ordered by expiry, the index
        ``ix_cache_rows_backend_expires_at`` reads only the rows returned.
        """
        check_key("backend", backend)
        expired, bound = self._expiry_bound(include_expired, expired_only, as_of)
        order = check_choice("order_by", order_by, KEY_ORDERS)
        page_size = check_count("page_size", page_size)
        remaining = None if limit is None else check_count("limit", limit)
        pages = (order, bool(descending), expired)
        return self._key_pages(backend, bound, pages, page_size, remaining)

    def _key_pages(
        self, backend: str, bound: int, pages: tuple[str, bool, bool], page_size: int, remaining: int | None
    ) -> Iterator[StoredKey]:
        order, descending, expired = pages
        sort_column = KEY_ORDERS.index(order)  # a listed row is (signature, expires_at, size)
        statement = self._sql.keys_page(KeyPage(order, descending, expired, after=False))
        after: tuple[Any, str | None] = (None, None)
        while remaining is None or remaining > 0:
            wanted = page_size if remaining is None else min(page_size, remaining)
            rows = self._db.fetchall(statement, (backend, bound, *after, wanted))
            for signature, expires_at, size in rows:
                yield StoredKey(signature, utc_datetime(expires_at), int(size))
            if len(rows) < wanted:
                return
            if remaining is not None:
                remaining -= len(rows)
            after = (rows[-1][sort_column], rows[-1][0])
            statement = self._sql.keys_page(KeyPage(order, descending, expired, after=True))

    def count(
        self, backend: str, *, include_expired: bool = False, expired_only: bool = False, as_of: datetime | None = None
    ) -> int:
        """How many rows :meth:`keys` would list with the same arguments; one query, through the
        index ``ix_cache_rows_backend_expires_at``."""
        check_key("backend", backend)
        expired, bound = self._expiry_bound(include_expired, expired_only, as_of)
        row = self._db.fetchone(self._sql.count_expired if expired else self._sql.count_live, (backend, bound))
        return int(row[0]) if row is not None else 0

    def contains_many(
        self, backend: str, signatures: Iterable[str], *, include_expired: bool = False
    ) -> frozenset[str]:
        """Which of ``signatures`` ``backend`` holds live rows of (``include_expired``: any rows); one
        statement per :data:`~animedex_store.sql.statements.GET_MANY_CHUNK` keys, payloads not read.
        Every key is checked first."""
        bound = _EVERY_ROW if include_expired else self._now()
        return frozenset(
            signature
            for size, chunk in self._padded_chunks(backend, signatures)
            for signature, expires_at, _size in self._db.fetchall(self._sql.present_many(size), (backend, *chunk))
            if expires_at > bound
        )

    def _expiry_bound(self, include_expired: bool, expired_only: bool, as_of: datetime | None) -> tuple[bool, int]:
        """``(expired, bound)``: rows with ``expires_at <= bound`` if ``expired``, else ``> bound``."""
        moment = self._now() if as_of is None else epoch_seconds(check_moment("as_of", as_of))
        if expired_only:
            return True, moment
        return False, _EVERY_ROW if include_expired else moment

    def now(self) -> datetime:
        """The current time by the repository's clock (aware UTC): a row with ``expires_at`` at or
        before it reads as missing. Adapters that store absolute expiry times convert them with it."""
        if self._clock is None:
            return datetime.now(timezone.utc)
        moment = self._clock()
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)

    def get_with_meta(
        self, backend: str, signature: str, *, include_expired: bool = False, allow_stale: bool | None = None
    ) -> CachedResponse | None:
        """``(payload, headers, fetched_at)`` as a :class:`CachedResponse`, or ``None``.

        The result unpacks as that 3-tuple and also has ``expires_at`` and
        ``is_stale``. With ``include_expired=True`` an expired row still stored is
        returned with ``is_stale=True`` (serve the last good response when the
        upstream is down); otherwise it reads as missing. Pre-v2 rows give
        ``({}, None)``. Never deletes or rewrites a row. ``allow_stale`` is the
        deprecated name of ``include_expired``.
        """
        if allow_stale is not None:
            include_expired = renamed_argument("allow_stale", "include_expired", allow_stale)
        check_key("backend", backend)
        check_key("signature", signature)
        row = self._db.fetchone(self._sql.get_with_meta, (backend, signature))
        if row is None:
            return None
        payload, headers, fetched_at, expires_at, codec = row
        now = self._now()
        if expires_at <= now and not include_expired:
            return None
        if codec:
            payload = decode(payload, codec, self.target, (backend, signature))
        return CachedResponse.from_row(payload, headers, fetched_at, expires_at, now)

    def get_model(self, backend: str, signature: str, model_type: type[ModelT]) -> ModelT | None:
        """The stored model re-validated with ``model_type.model_validate_json``, or ``None``."""
        if not isinstance(model_type, type) or not hasattr(model_type, "model_validate_json"):
            raise TypeError(f"model_type must be a pydantic model class, not {model_type!r}")
        raw = self.get(backend, signature)
        return None if raw is None else model_type.model_validate_json(raw)

    def stats(self) -> CacheStats:
        """Rows, expired rows, payload bytes and oldest/newest ``fetched_at``, in total and per backend,
        and how many ``get_or_fetch`` claims are held (live leases).

        One aggregate query (a pass over the rows, payloads not read), and a count of the claims.
        """
        from .core.stats import BackendStats, CacheStats

        backends = {
            backend: BackendStats(
                rows=int(rows),
                expired_rows=int(expired),
                payload_bytes=int(size),
                oldest_fetched_at=_utc_or_none(oldest),
                newest_fetched_at=_utc_or_none(newest),
            )
            for backend, rows, expired, size, oldest, newest in self._db.fetchall(self._sql.stats, (self._now(),))
        }
        held = self._db.fetchone(self._sql.claims_held, (self._now_ms(),))
        return CacheStats.from_backends(backends, claims_held=int(held[0]) if held else 0)

    # -- lifetime -------------------------------------------------------------
    def close(self) -> None:
        """Release the connection (and the engine, unless the caller passed it). Idempotent."""
        db = getattr(self, "_db", None)
        if db is None or isinstance(db, ClosedConnections):
            return
        self._db = ClosedConnections(self.target)
        db.close()

    def __enter__(self) -> CacheRepository:
        return self

    def __exit__(self, *_exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CacheRepository({self.target!r})"


def repository_on(database: Database, *, clock: Clock | None = None) -> CacheRepository:
    """A repository on a database already open at head (its connections and statements), with default
    options; closing it closes them. The pytest plugin builds its per-test copies so; not public API."""
    repository = CacheRepository.__new__(CacheRepository)
    repository._configure(clock, None, (), None)
    repository._db, repository._sql = database
    repository.target = repository._db.target
    return repository


class _FlightStore:
    """The repository as :class:`~animedex_store.single_flight.FlightStore` sees it: one key's row
    and its claim in ``cache_locks``, nothing else."""

    __slots__ = ("_repository",)

    def __init__(self, repository: CacheRepository) -> None:
        self._repository = repository

    @property
    def target(self) -> str:
        return self._repository.target

    def read(self, key: Key) -> CachedResponse | None:
        return self._repository.get_with_meta(*key, include_expired=True)

    def write(self, key: Key, payload: bytes, headers: Mapping[str, str] | None, ttl: int) -> CachedResponse:
        repository = self._repository
        if headers is None:
            repository.set(*key, payload, ttl_seconds=ttl)
        else:
            repository.set_with_meta(*key, payload, response_headers=headers, ttl_seconds=ttl)
        stored = repository.get_with_meta(*key, include_expired=True)
        if stored is not None:
            return stored
        # Deleted (clear, purge) right after we wrote it: what a read just after our write returned.
        now = repository._now()
        blob = encode_headers({} if headers is None else headers, repository._redacted)
        return CachedResponse.from_row(payload, blob, now, now + ttl, now)

    def claim(self, key: Key, holder: str, lease_ms: int) -> bool:
        # One atomic statement (two on MariaDB/MySQL, each atomic): a new claim, or a
        # takeover of one whose lease has ended.
        repository = self._repository
        sql = repository._sql
        now_ms = repository._now_ms()
        values = (*key, holder, now_ms + lease_ms, now_ms)
        if repository._db.execute(sql.claim, values) == 1:
            return True
        takeover = sql.claim_takeover
        return takeover is not None and repository._db.execute(takeover, values) == 1

    def release(self, key: Key, holder: str) -> None:
        repository = self._repository
        repository._db.execute(repository._sql.release, (*key, holder))
