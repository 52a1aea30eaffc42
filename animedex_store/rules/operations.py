"""Every operation of a repository, written once, as a coroutine over its connections.

:class:`Operations` checks the arguments, builds the values, runs the compiled
statements through a :class:`~animedex_store.core.connections.Connections` and
turns rows into results: validation, codecs, headers, the clock and expiry, the
size cap, single flight. It does no I/O of its own. :class:`~animedex_store.CacheRepository`
runs each operation to its end on the calling thread over blocking connections
(:func:`~animedex_store.core.blocking.run_blocking`);
:class:`~animedex_store.AsyncCacheRepository` awaits it on its event loop. Both
document their methods with the docstrings written here. Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.clock import clock_millis, clock_now, clock_seconds, utc_datetime
from ..core.codecs import decode, encode
from ..core.compiled import StatementSet
from ..core.connections import ClosedConnections, Connections
from ..core.listing import EVERY_ROW
from ..core.response import CachedResponse
from ..core.validation import (
    MAX_TTL_SECONDS,
    MAX_WAIT_SECONDS,
    check_key,
    check_pairs,
    check_payload,
    check_seconds,
    check_ttl,
    encode_headers,
)
from .flight import Flight, Key, timed_out
from .listing import expiry_bound
from .options import Options
from .runtime import FlightGone, Runtime
from .size_cap import SizeCap

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..core.stats import CacheStats

__all__ = ["Operations", "PURGE_BATCH"]

ModelT = TypeVar("ModelT", bound="BaseModel")
_EMPTY_HEADERS = b"{}"
#: How :meth:`Operations._write` writes: always (the upsert), over a row that exists only, or only where no
#: live row is.
_SET, _REPLACE, _IF_MISSING = "set", "replace", "if missing"
#: Rows removed per transaction by :meth:`Operations.purge_expired`.
PURGE_BATCH = 1_000


def _utc_or_none(seconds: int | None) -> datetime | None:
    return None if seconds is None else utc_datetime(seconds)


class Operations:
    """A repository's operations on one database: ``db`` (its connections), ``sql`` (its statements
    compiled for them), its checked :class:`Options` and the ``runtime`` of the side that runs them."""

    def __init__(self, db: Connections, sql: StatementSet, options: Options, runtime: Runtime) -> None:
        self.db = db
        self.sql = sql
        self.target = db.target
        self.clock = options.clock
        self.redacted = options.redacted
        self.codec = options.codec
        self.runtime = runtime
        self.cap = None if options.max_bytes is None else SizeCap(options.max_bytes, runtime.new_lock())
        self._pid = os.getpid()

    # -- lifetime -------------------------------------------------------------
    def detach(self) -> Connections:
        """The connections, replaced by ones that refuse every call (the repository is closed)."""
        db, self.db = self.db, ClosedConnections(self.target)
        return db

    def release(self) -> None:
        """Close what these operations hold, without waiting or awaiting anything: their connections
        (an async repository's on every event loop, those of a loop that is gone without it) and the
        runtime's background thread. What a repository's finalizer runs when nobody references it any
        more, and what it runs when closed outside its event loop. Idempotent. In a child process after
        ``os.fork`` nothing is closed: the connections are the parent's (only forgotten)."""
        db = self.detach()
        if os.getpid() == self._pid:
            db.close_now()
        self.runtime.stop()  # after: what the connections handed its event loop runs before it closes

    # -- time ---------------------------------------------------------------
    def now(self) -> datetime:
        """The current time by the repository's clock (aware UTC): a row with ``expires_at`` at or
        before it reads as missing. Adapters that store absolute expiry times convert them with it."""
        return clock_now(self.clock)

    def now_seconds(self) -> int:
        return clock_seconds(self.clock)

    def now_ms(self) -> int:
        """Now in epoch milliseconds, by the same clock: ``get_or_fetch``'s leases last seconds."""
        return clock_millis(self.clock)

    # -- writes ---------------------------------------------------------------
    async def set(self, backend: str, signature: str, payload: bytes, *, ttl_seconds: int) -> None:
        """Store or overwrite a row, with empty headers and ``fetched_at`` = now."""
        await self._write(backend, signature, payload, _EMPTY_HEADERS, ttl_seconds)

    async def set_with_meta(
        self,
        backend: str,
        signature: str,
        payload: bytes,
        *,
        response_headers: Mapping[str, str],
        ttl_seconds: int,
    ) -> None:
        """Store or overwrite a row with its response headers (a str→str mapping)."""
        await self._write(backend, signature, payload, encode_headers(response_headers, self.redacted), ttl_seconds)

    async def replace(self, backend: str, signature: str, payload: bytes, *, ttl_seconds: int) -> bool:
        """Overwrite a row that exists (expired or not) as :meth:`set` would, never creating one: ``True``
        if it existed. One statement: a row deleted meanwhile stays deleted (a conditional write)."""
        return await self._write(backend, signature, payload, _EMPTY_HEADERS, ttl_seconds, _REPLACE)

    async def set_if_missing(self, backend: str, signature: str, payload: bytes, *, ttl_seconds: int) -> bool:
        """Store a row as :meth:`set` would, but only where no live row is: the key missing, or its row
        expired. ``True`` if this call stored it, ``False`` if a live row was there (left as it was).

        Atomic: of several callers (threads, processes, machines) adding one key at once, one stores
        it. One statement on SQLite and PostgreSQL (an upsert that replaces only an expired row), two
        on MariaDB/MySQL (``INSERT IGNORE``, then the replacement of an expired row), each atomic.
        Never run twice: a server connection lost during the call raises
        :class:`~animedex_store.errors.ConnectionFailedError`, the row stored once or not at all.
        """
        return await self._write(backend, signature, payload, _EMPTY_HEADERS, ttl_seconds, _IF_MISSING)

    async def _write(
        self, backend: str, signature: str, payload: object, headers: bytes, ttl_seconds: object, how: str = _SET
    ) -> bool:
        """Write a row :data:`_SET` (the upsert), :data:`_REPLACE` or :data:`_IF_MISSING`; whether it wrote."""
        check_key("backend", backend)
        check_key("signature", signature)
        stored, codec = encode(check_payload(payload), self.codec)
        ttl = check_ttl(ttl_seconds)
        now = self.now_seconds()
        values = (backend, signature, now + ttl, now, codec, headers, stored)
        cap = self.cap
        if cap is None and how == _SET:  # the hot path: one statement
            await self.db.execute(self.sql.upsert, values)
            return True
        if cap is not None:
            cap.check_fits(len(stored))
            previous = await cap.previous_size(self.db, self.sql, backend, signature)
        written = await self._store(values, how)
        if cap is not None and written:
            await cap.grew(self.db, self.sql, len(stored) - previous, (backend, signature))
        return written

    async def _store(self, values: tuple[Any, ...], how: str) -> bool:
        """Run the write of ``values`` (:data:`~animedex_store.sql.statements.VALUE_NAMES`) the way ``how``
        says; ``False`` if it found no row to replace, or a live row it must not replace."""
        if how == _SET:
            await self.db.execute(self.sql.upsert, values)
            return True
        if how == _REPLACE:
            return await self.db.execute(self.sql.replace, values) > 0
        # Never run twice (a second run would find this call's own row and answer False).
        if await self.db.execute_once(self.sql.insert_missing, values) == 1:
            return True
        replace_expired = self.sql.replace_expired
        return replace_expired is not None and await self.db.execute_once(replace_expired, values) == 1

    async def touch(self, backend: str, signature: str, *, ttl_seconds: int) -> bool:
        """Give a live row ``ttl_seconds`` more from now, its payload and headers as they are; ``True`` if
        a live row was there (a missing or expired one stays so). One statement."""
        check_key("backend", backend)
        check_key("signature", signature)
        ttl = check_ttl(ttl_seconds)
        now = self.now_seconds()
        return await self.db.execute(self.sql.touch, (backend, signature, now + ttl, now)) == 1

    async def modify(self, backend: str, signature: str, change: Callable[[bytes], bytes]) -> bytes | None:
        """Replace a live row's payload with ``change(payload)``, atomically; returns the new payload, or
        ``None`` (and nothing changes) when the row is missing or expired. Its expiry, headers and
        ``fetched_at`` are kept.

        A compare-and-swap: the row is read, ``change`` is called, and the new payload is written only
        while the row still holds the payload read (one ``UPDATE`` on every engine). When another
        writer changed it in between, the row is read again and ``change`` called again with what it
        holds now, so ``change`` must be a pure function of the payload; an exception from it
        propagates, nothing written. Two callers adding one to a counter at once both count. The swap
        is never run twice: a server connection lost during it raises
        :class:`~animedex_store.errors.ConnectionFailedError`, the change made once or not at all.
        """
        check_key("backend", backend)
        check_key("signature", signature)
        if not callable(change):
            raise TypeError(f"change must be a callable taking the payload, not {type(change).__name__}")
        key = (backend, signature)
        cap = self.cap
        # Each round that fails to swap does so because another writer's statement committed in between:
        # the writers as a whole always progress, so the loop ends without a deadline of its own.
        while True:
            row = await self.db.fetchone(self.sql.get, key)
            now = self.now_seconds()
            if row is None or row[1] <= now:
                return None
            expected, _expires_at, expected_codec = row
            current = expected if not expected_codec else decode(expected, expected_codec, self.target, key)
            changed = check_payload(change(current))
            stored, codec = encode(changed, self.codec)
            if cap is not None:
                cap.check_fits(len(stored))
            values = (backend, signature, stored, codec, expected, expected_codec, now)
            # Never run twice: a second run would find this call's own payload, and change it again.
            if await self.db.execute_once(self.sql.swap, values) == 1:
                if cap is not None:
                    await cap.grew(self.db, self.sql, len(stored) - len(expected), key)
                return changed

    async def set_model(self, backend: str, signature: str, model: BaseModel, *, ttl_seconds: int) -> None:
        """Store a pydantic model as ``model.model_dump_json()`` in UTF-8."""
        from pydantic import BaseModel

        if not isinstance(model, BaseModel):
            raise TypeError(f"model must be a pydantic BaseModel, not {type(model).__name__}")
        await self.set(backend, signature, model.model_dump_json().encode("utf-8"), ttl_seconds=ttl_seconds)

    async def set_many(
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
        pairs = items.items() if isinstance(items, Mapping) else check_pairs(items)
        encoded: dict[str, tuple[bytes, int]] = {}  # signature -> (payload as stored, codec)
        for signature, payload in pairs:
            check_key("signature", signature)
            encoded[signature] = encode(check_payload(payload), self.codec)
        ttl = check_ttl(ttl_seconds)
        if not encoded:
            return
        cap = self.cap
        if cap is not None:
            for stored, _codec in encoded.values():
                cap.check_fits(len(stored))
        now = self.now_seconds()
        expires_at = now + ttl
        rows = [
            (backend, signature, expires_at, now, codec, _EMPTY_HEADERS, stored)
            for signature, (stored, codec) in encoded.items()
        ]
        await self.db.executemany(self.sql.upsert, rows)
        if cap is not None:
            # Counted as if nothing was overwritten: the cap's estimate only runs
            # high, and it counts exactly before evicting anything.
            last_written = (backend, next(reversed(encoded)))
            await cap.grew(self.db, self.sql, sum(len(stored) for stored, _codec in encoded.values()), last_written)

    async def purge_expired(self, backend: str | None = None) -> int:
        """Delete every row with ``expires_at <= now``, or only ``backend``'s; returns how many rows were
        removed.

        Without ``backend``, also deletes the ``get_or_fetch`` claims whose lease
        has ended (left by callers that died), which the returned count does not
        include.

        Deletes in batches of :data:`PURGE_BATCH` rows found through the
        ``expires_at`` index (with ``backend``, ``ix_cache_rows_backend_expires_at``),
        each its own transaction, so writers never wait long for the lock however
        many rows expired.
        """
        scope: tuple[str, ...] = ()
        statement = self.sql.purge_expired
        if backend is not None:
            check_key("backend", backend)
            statement, scope = self.sql.purge_expired_backend, (backend,)
        now = self.now_seconds()
        removed = 0
        while True:
            count = await self.db.execute(statement, (*scope, now, PURGE_BATCH))
            removed += count
            if count < PURGE_BATCH:
                break
        if backend is None:
            # Claims left by get_or_fetch callers that died: not counted, they are not rows.
            await self.db.execute(self.sql.purge_claims, (self.now_ms(),))
        return removed

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
        """The live row, else ``fetch()``'s result stored with ``ttl_seconds``: one fetch per key
        across threads, processes and machines sharing the database (single flight).

        ``fetch()`` takes no arguments and returns the payload (``bytes``), or a
        ``(payload, headers)`` pair stored as :meth:`set_with_meta` would (on the
        async repository it may be a coroutine function). A live row is returned
        as :meth:`get_with_meta` returns it, at the same cost. Otherwise this
        call claims the key (one atomic statement, in the table ``cache_locks``),
        reads the row again, calls ``fetch()`` while renewing the claim every third
        of ``lease_seconds`` (a slow upstream is still fetched once), stores the
        result and releases the claim; if ``fetch()`` raises, the claim is
        released and the exception propagates. A caller that cannot claim the
        key polls for the row (10 ms doubling to 250 ms), takes the claim over
        once its lease ends (a holder that died stops renewing and blocks nobody
        longer), and raises :class:`~animedex_store.errors.FetchTimeoutError`
        after ``wait_seconds``.

        With ``serve_stale=True`` an expired row still stored is returned
        (``is_stale=True``) instead of waiting for another caller's fetch, or
        when ``fetch()`` raises. ``wait_seconds`` (≥ 0) and ``lease_seconds``
        (> 0) are numbers of seconds; leases follow the repository's clock, the
        wait and the renewals real time. No transaction is held while ``fetch()``
        runs or while waiting. See :mod:`animedex_store.rules.flight`.
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
        while True:
            found = await self.get_with_meta(backend, signature, include_expired=True)  # checks the key
            if found is not None and not found.is_stale:
                return found  # a hit: one read, nothing else
            key = (backend, signature)
            runtime = self.runtime
            try:
                if runtime.in_flight(key):  # a caller of this process is on it: share its flight
                    if serve_stale and found is not None:
                        return found
                    try:
                        return await runtime.join(key, wait)
                    except TimeoutError:
                        raise timed_out(self.target, key, wait) from None
                flight = Flight(
                    _Flights(self), runtime, key, fetch, ttl=ttl, serve_stale=serve_stale, lease_seconds=lease
                )
                return await runtime.lead(key, flight.run(wait, found))
            except FlightGone:
                continue  # cancelled by someone else (close, or its loop ending): start over

    async def delete(self, backend: str, signature: str) -> bool:
        """Delete one row, expired or not; whether the row is gone because of this call: ``True`` if
        this call deleted it, ``False`` if there was none (or another caller deleted it first).

        On a server, a statement whose connection was lost during the call (the
        server may have run it, and its reply never came) runs once more on a
        new connection; then ``True`` means the row is gone after that second
        run, which cannot tell whether the first run deleted it or another
        caller did in between (it was there when this call began, or it was not
        and the first run never reached the server).
        """
        check_key("backend", backend)
        check_key("signature", signature)
        return await self.db.remove(self.sql.delete, (backend, signature))

    async def delete_many(self, backend: str, signatures: Iterable[str]) -> int:
        """Delete the rows of ``signatures`` (expired or not, missing ones ignored) in one statement per
        :data:`~animedex_store.sql.statements.GET_MANY_CHUNK` keys; returns how many were removed.
        Every key is checked before anything is deleted."""
        removed = 0
        for size, chunk in self._padded_chunks(backend, signatures):
            removed += await self.db.execute(self.sql.delete_many(size), (backend, *chunk))
        return removed

    async def clear(self, backend: str | None = None) -> int:
        """Delete every row, or only ``backend``'s; returns how many were removed."""
        if backend is None:
            return await self.db.execute(self.sql.clear, ())
        check_key("backend", backend)
        return await self.db.execute(self.sql.clear_backend, (backend,))

    async def vacuum(self) -> int | None:
        """Give the space of deleted rows back to the disk; bytes reclaimed, or ``None`` where the
        engine cannot tell (MariaDB/MySQL). Locks the table while it runs: SQLite rewrites the file
        (``VACUUM``), PostgreSQL the table (``VACUUM FULL``), MariaDB/MySQL ``OPTIMIZE TABLE``."""
        return await self.db.vacuum()

    # -- reads (pure: an expired row is reported missing, never deleted) ------
    async def get(self, backend: str, signature: str) -> bytes | None:
        """The payload, or ``None`` when the row is missing or expired."""
        check_key("backend", backend)
        check_key("signature", signature)
        row = await self.db.fetchone(self.sql.get, (backend, signature))
        if row is None or row[1] <= self.now_seconds():
            return None
        payload: bytes = row[0]
        return payload if not row[2] else decode(payload, row[2], self.target, (backend, signature))

    async def get_many(self, backend: str, signatures: Iterable[str]) -> dict[str, bytes]:
        """``{signature: payload}`` of the live rows among ``signatures`` (missing and expired left out)."""
        chunks = self._padded_chunks(backend, signatures)
        now = self.now_seconds()
        found: dict[str, bytes] = {}
        for size, chunk in chunks:
            for signature, expires_at, codec, payload in await self.db.fetchall(
                self.sql.get_many(size), (backend, *chunk)
            ):
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
        chunk_size = self.sql.get_many_chunk
        chunks = []
        for start in range(0, len(keys), chunk_size):
            chunk = keys[start : start + chunk_size]
            size = 1 << (len(chunk) - 1).bit_length()
            chunks.append((size, chunk + chunk[-1:] * (size - len(chunk))))
        return chunks

    async def count(
        self, backend: str, *, include_expired: bool = False, expired_only: bool = False, as_of: datetime | None = None
    ) -> int:
        """How many rows ``keys`` would list with the same arguments
        (:func:`~animedex_store.rules.listing.key_query`); one query, through the index
        ``ix_cache_rows_backend_expires_at``."""
        check_key("backend", backend)
        expired, bound = expiry_bound(self.clock, include_expired, expired_only, as_of)
        row = await self.db.fetchone(self.sql.count_expired if expired else self.sql.count_live, (backend, bound))
        return int(row[0]) if row is not None else 0

    async def payload_bytes(self, backend: str) -> int:
        """Bytes ``backend``'s payloads take as stored, expired rows included; one statement over the
        backend's rows (the payloads' lengths, not their bytes)."""
        check_key("backend", backend)
        row = await self.db.fetchone(self.sql.backend_payload_total, (backend,))
        return int(row[0]) if row is not None else 0

    async def contains_many(
        self, backend: str, signatures: Iterable[str], *, include_expired: bool = False
    ) -> frozenset[str]:
        """Which of ``signatures`` ``backend`` holds live rows of (``include_expired``: any rows); one
        statement per :data:`~animedex_store.sql.statements.GET_MANY_CHUNK` keys, payloads not read.
        Every key is checked first."""
        bound = EVERY_ROW if include_expired else self.now_seconds()
        present: set[str] = set()
        for size, chunk in self._padded_chunks(backend, signatures):
            rows = await self.db.fetchall(self.sql.present_many(size), (backend, *chunk))
            present.update(signature for signature, expires_at, _size in rows if expires_at > bound)
        return frozenset(present)

    async def get_with_meta(
        self, backend: str, signature: str, *, include_expired: bool = False
    ) -> CachedResponse | None:
        """``(payload, headers, fetched_at)`` as a :class:`CachedResponse`, or ``None``.

        The result unpacks as that 3-tuple and also has ``expires_at`` and
        ``is_stale``. With ``include_expired=True`` an expired row still stored is
        returned with ``is_stale=True`` (serve the last good response when the
        upstream is down); otherwise it reads as missing. Pre-v2 rows give
        ``({}, None)``. Never deletes or rewrites a row. ``allow_stale`` is the
        deprecated name of ``include_expired``.
        """
        check_key("backend", backend)
        check_key("signature", signature)
        row = await self.db.fetchone(self.sql.get_with_meta, (backend, signature))
        if row is None:
            return None
        payload, headers, fetched_at, expires_at, codec = row
        now = self.now_seconds()
        if expires_at <= now and not include_expired:
            return None
        if codec:
            payload = decode(payload, codec, self.target, (backend, signature))
        return CachedResponse.from_row(payload, headers, fetched_at, expires_at, now, (self.target, backend, signature))

    async def get_model(self, backend: str, signature: str, model_type: type[ModelT]) -> ModelT | None:
        """The stored model re-validated with ``model_type.model_validate_json``, or ``None``."""
        if not isinstance(model_type, type) or not hasattr(model_type, "model_validate_json"):
            raise TypeError(f"model_type must be a pydantic model class, not {model_type!r}")
        raw = await self.get(backend, signature)
        return None if raw is None else model_type.model_validate_json(raw)

    async def stats(self) -> CacheStats:
        """Rows, expired rows, payload bytes and oldest/newest ``fetched_at``, in total and per backend,
        and how many ``get_or_fetch`` claims are held (live leases).

        One aggregate query (a pass over the rows, payloads not read), and a count of the claims.
        """
        from ..core.stats import BackendStats, CacheStats

        rows = await self.db.fetchall(self.sql.stats, (self.now_seconds(),))
        backends = {
            backend: BackendStats(
                rows=int(count),
                expired_rows=int(expired),
                payload_bytes=int(size),
                oldest_fetched_at=_utc_or_none(oldest),
                newest_fetched_at=_utc_or_none(newest),
            )
            for backend, count, expired, size, oldest, newest in rows
        }
        held = await self.db.fetchone(self.sql.claims_held, (self.now_ms(),))
        return CacheStats.from_backends(backends, claims_held=int(held[0]) if held else 0)


class _Flights:
    """The operations as one flight's :class:`~animedex_store.rules.flight.FlightStore` sees them: one
    key's row and its claim in ``cache_locks``, nothing else.

    Made per flight (the operations keep no reference to it: no cycle keeps a
    dropped repository alive), on the connections of the moment: a flight that
    a closing repository cancels still releases its claim on them as it unwinds.
    """

    __slots__ = ("_operations", "_db")

    def __init__(self, operations: Operations) -> None:
        self._operations = operations
        self._db = operations.db

    @property
    def target(self) -> str:
        return self._operations.target

    async def read(self, key: Key) -> CachedResponse | None:
        return await self._operations.get_with_meta(*key, include_expired=True)

    async def write(self, key: Key, payload: bytes, headers: Mapping[str, str] | None, ttl: int) -> CachedResponse:
        operations = self._operations
        if headers is None:
            await operations.set(*key, payload, ttl_seconds=ttl)
        else:
            await operations.set_with_meta(*key, payload, response_headers=headers, ttl_seconds=ttl)
        stored = await operations.get_with_meta(*key, include_expired=True)
        if stored is not None:
            return stored
        # Deleted (clear, purge) right after we wrote it: what a read just after our write returned.
        now = operations.now_seconds()
        blob = encode_headers({} if headers is None else headers, operations.redacted)
        return CachedResponse.from_row(payload, blob, now, now + ttl, now)

    async def claim(self, key: Key, holder: str, lease_ms: int) -> bool:
        # One atomic statement (two on MariaDB/MySQL, each atomic): a new claim, a takeover of one
        # whose lease has ended, or our own again (the same statement run twice: its first reply lost).
        operations = self._operations
        now_ms = operations.now_ms()
        values = (*key, holder, now_ms + lease_ms, now_ms)
        if await self._db.execute(operations.sql.claim, values) == 1:
            return True
        takeover = operations.sql.claim_takeover
        return takeover is not None and await self._db.execute(takeover, values) == 1

    async def renew(self, key: Key, holder: str, lease_ms: int) -> bool:
        operations = self._operations
        values = (*key, holder, operations.now_ms() + lease_ms)
        return await self._db.execute(operations.sql.renew, values) == 1

    async def release(self, key: Key, holder: str) -> None:
        await self._db.execute(self._operations.sql.release, (*key, holder))
