"""The entries of one namespace on one repository: lookups, bodies, header updates, removal, reclaiming
and the size cap, written once as coroutines over the repository's operations.

Both storages run these (:mod:`.storages`): :class:`~animedex_store.CacheRepository`'s operations
never suspend, so ``StoreStorage`` runs each to its end with
:func:`~animedex_store.core.blocking.run_blocking`; ``AsyncStoreStorage`` awaits them. Every write
that could undo a concurrent one is conditional (:meth:`~animedex_store.CacheRepository.replace`
overwrites a row only while it exists): a removed entry is never brought back by a reader that
restarts its TTI or a client that updates its headers.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from ...core.response import StoredKey
from ...errors import StoreError
from ...rules.listing import KeyListing, key_query
from ...rules.operations import Operations
from ..shared import Repository, log_swallowed, log_unreadable, operations, row_ttl
from .rows import (
    CHUNK_SIZE,
    GRACE_SECONDS,
    ROWS_OUTLIVE_ENTRIES,
    STORED,
    WRITING,
    Leftovers,
    NewerFormat,
    Stored,
    backends,
    chunk_signature,
    header_lists,
    unpack_entry,
    unpack_leftovers,
)

if TYPE_CHECKING:
    from hishel import Headers  # type: ignore[import-not-found,unused-ignore]

__all__ = ["Store", "Body", "RECLAIM_BATCH", "logger"]

# One logger for the package's modules: every failure the hishel integration swallows is logged here, once.
logger = logging.getLogger("animedex_store.integrations.hishel")

#: Entries reclaimed per kind and pass (expired, removed, or left by a writer whose claim lapsed).
RECLAIM_BATCH = 100
#: Chunk rows deleted per statement.
_DELETE_BATCH = 256
#: Entries looked at per query while the size cap evicts.
_EVICTION_PAGE = 64
#: How long past the entry an entry row lives: the grace for its readers, then a year for ``purge``.
_ENTRY_ROWS_OUTLIVE = GRACE_SECONDS + ROWS_OUTLIVE_ENTRIES.total_seconds()
#: The TTL of a row :meth:`Store.reclaim` is to take at its next pass (and ``purge`` not for a year).
_RECLAIMABLE_NOW = int(ROWS_OUTLIVE_ENTRIES.total_seconds())


class Body:
    """Where an entry's body is: in its row (``chunks == 0``) or in ``chunks`` chunk rows."""

    __slots__ = ("entry_id", "chunks", "inline")

    def __init__(self, entry_id: str, stored: Stored) -> None:
        self.entry_id = entry_id
        self.chunks = stored.chunks
        self.inline = stored.body

    @property
    def pieces(self) -> int:
        """How many pieces a reader asks for, one at a time."""
        return self.chunks or (1 if self.inline else 0)


class Store:
    """One namespace's entries on ``repository`` (a :class:`~animedex_store.CacheRepository` or an
    :class:`~animedex_store.AsyncCacheRepository`); ``max_size`` caps their bytes."""

    def __init__(self, repository: Repository, namespace: str, max_size: int | None) -> None:
        self.repository = repository
        self.backends = names = backends(namespace)
        self.entries, self.chunks, self.removed = names.entries, names.chunks, names.removed
        self.max_size = max_size
        self.written_since_sized = 0  # body bytes stored here since the namespace was last measured
        self.closed = False  # its storage was closed: no new lookups nor entries

    def now(self) -> float:
        return self.repository.now().timestamp()

    async def write_entry(self, ops: Operations, entry_id: str, stored: Stored, now: float, *, new: bool) -> bool:
        """Write an entry's row (``new``: create it, else overwrite it only while it exists), living
        past the entry by the grace and :data:`~.rows.ROWS_OUTLIVE_ENTRIES`; whether it was written."""
        ttl = row_ttl(stored.expires(), now, outlive=_ENTRY_ROWS_OUTLIVE)
        if new:
            await ops.set(self.entries, entry_id, stored.pack(), ttl_seconds=ttl)
            return True
        return await ops.replace(self.entries, entry_id, stored.pack(), ttl_seconds=ttl)

    # -- reading ------------------------------------------------------------------------------------
    async def lookup(self, key: str) -> list[tuple[uuid.UUID, Stored]]:
        """``key``'s stored, unexpired entries, oldest first, each restarting its TTI; a storage
        failure is a miss (logged), an unreadable entry is dropped (logged), a newer one skipped."""
        try:
            ops = await operations(self.repository)
            ids = [stored_key.signature for stored_key in await _listed(ops, self.backends.of_key(key))]
            if not ids:
                return []
            rows = await self._entry_rows(ops, ids)
            now = self.now()
            found = []
            for entry_id in ids:
                stored = await self._readable(ops, key, entry_id, rows.get(entry_id), now)
                if stored is not None:
                    found.append((uuid.UUID(entry_id), stored))
            return found
        except StoreError:
            log_swallowed(logger, "hishel: could not read entries; a cache miss instead")
            return []

    async def _entry_rows(self, ops: Operations, ids: list[str]) -> dict[str, bytes]:
        """The entry rows of ``ids`` (a key's usual one by ``get``, a third cheaper than ``get_many``)."""
        if len(ids) == 1:
            payload = await ops.get(self.entries, ids[0])
            return {} if payload is None else {ids[0]: payload}
        return await ops.get_many(self.entries, ids)

    async def _readable(
        self, ops: Operations, key: str, entry_id: str, payload: bytes | None, now: float
    ) -> Stored | None:
        """The entry ``entry_id`` of ``key`` if it can be served now, its TTI restarted (written only
        once half of it has passed: hishel allows that much early expiry)."""
        if payload is None:
            return None  # its row was reclaimed after the key was listed
        try:
            stored = unpack_entry(payload)
        except NewerFormat:
            return None  # a later version's: left to it
        except ValueError as exc:
            log_unreadable(logger, ops.target, self.entries, entry_id, exc)
            await ops.delete(self.backends.of_key(key), entry_id)
            await ops.delete(self.entries, entry_id)
            return None
        expires = stored.expires()
        if stored.state != STORED or stored.key != key or (expires is not None and expires <= now):
            return None
        if stored.tti is not None and now - stored.restarted >= stored.tti / 2:
            stored.restarted = now
            # Both conditional, the key row first: an entry removed meanwhile has neither any more.
            key_row_ttl = row_ttl(stored.expires(), now)
            if await ops.replace(self.backends.of_key(key), entry_id, b"", ttl_seconds=key_row_ttl):
                await self.write_entry(ops, entry_id, stored, now, new=False)
        return stored

    async def piece(self, body: Body, number: int) -> bytes:
        """Piece ``number`` of a body; ``RuntimeError`` if it was reclaimed while being read."""
        if not body.chunks:
            return body.inline
        ops = await operations(self.repository)
        data = await ops.get(self.chunks, chunk_signature(body.entry_id, number))
        if data is None:
            raise RuntimeError(
                f"the cached response was reclaimed while it was being read (after {GRACE_SECONDS:.0f} s removed)"
            )
        return data

    async def _entry(self, ops: Operations, entry_id: str) -> Stored | None:
        """A stored entry's row, else ``None`` (missing, a claim, unreadable, or newer)."""
        payload = await ops.get(self.entries, entry_id)
        try:
            stored = None if payload is None else unpack_entry(payload)
        except ValueError:
            return None
        return stored if stored is not None and stored.state == STORED else None

    # -- changing entries -----------------------------------------------------------------------------
    async def update_headers(self, entry_id: uuid.UUID, headers: Headers) -> None:
        """Replace a stored entry's response headers, only while its row exists (an entry removed
        meanwhile stays removed); a failure only logged."""
        try:
            ops = await operations(self.repository)
            stored = await self._entry(ops, entry_id.hex)
            if stored is not None:
                stored.response_headers = header_lists(headers)
                await self.write_entry(ops, entry_id.hex, stored, self.now(), new=False)
        except StoreError:
            log_swallowed(logger, "hishel: could not update an entry's headers")

    async def remove(self, entry_id: uuid.UUID) -> None:
        """Hide an entry from new lookups at once; its chunks stay :data:`~.rows.GRACE_SECONDS` for its
        readers. Its leftovers row is written first, so that a removal cut short is finished by
        :meth:`reclaim`. A failure only logged."""
        try:
            ops = await operations(self.repository)
            stored = await self._entry(ops, entry_id.hex)
            if stored is None:
                return
            now = self.now()
            leftovers = Leftovers(stored.key, stored.chunks).pack()
            await ops.set(
                self.removed, entry_id.hex, leftovers, ttl_seconds=row_ttl(now, now, outlive=_ENTRY_ROWS_OUTLIVE)
            )
            await ops.delete(self.backends.of_key(stored.key), entry_id.hex)
            await ops.delete(self.entries, entry_id.hex)
        except StoreError:
            log_swallowed(logger, "hishel: could not remove an entry")

    # -- space --------------------------------------------------------------------------------------
    async def reclaim(self, ops: Operations) -> None:
        """Delete up to :data:`RECLAIM_BATCH` entries that expired, and as many removed ones, whose
        grace has passed, chunks and all; a writer's lapsed claim too. Two indexed queries when there
        are none, however large the namespace."""
        as_of = ops.now() + ROWS_OUTLIVE_ENTRIES
        for backend in (self.entries, self.removed):
            found = await _listed(
                ops, backend, expired_only=True, as_of=as_of, order_by="expires_at", limit=RECLAIM_BATCH
            )
            if found:
                await self._reclaim(ops, backend, [stored_key.signature for stored_key in found])

    async def _reclaim(self, ops: Operations, backend: str, ids: list[str]) -> None:
        rows = await ops.get_many(backend, ids)
        for entry_id in ids:
            payload = rows.get(entry_id)
            if payload is None:
                continue  # reclaimed by another store since it was listed
            try:
                found = unpack_leftovers(payload) if backend == self.removed else unpack_entry(payload)
            except NewerFormat:
                continue  # a later version's: left to it
            except ValueError:
                found = None  # unreadable: its own rows go
            if isinstance(found, Stored) and found.state == WRITING:
                # A writer's lapsed claim: turned into leftovers first, so that the writer, should it
                # still be alive, can no longer store its entry over the chunks deleted below.
                found = Leftovers(found.key, -1)  # how many chunks it wrote is not known
                await ops.set(self.removed, entry_id, found.pack(), ttl_seconds=_RECLAIMABLE_NOW)
                await ops.delete(self.entries, entry_id)
                await self.delete_entry(ops, self.removed, entry_id, found)
            else:
                await self.delete_entry(ops, backend, entry_id, found)

    async def delete_entry(
        self, ops: Operations, backend: str, entry_id: str, found: Stored | Leftovers | None
    ) -> None:
        """Delete an entry's key row, chunks and then its row in ``backend``, in that order: a reader
        never finds an entry whose chunks are gone, and a deletion cut short is taken up again."""
        if found is not None:
            await ops.delete(self.backends.of_key(found.key), entry_id)
        await self.delete_chunks(ops, entry_id, None if found is None or found.chunks < 0 else found.chunks)
        await ops.delete(backend, entry_id)

    async def delete_chunks(self, ops: Operations, entry_id: str, written: int | None) -> None:
        """Delete an entry's chunk rows: ``written`` of them, or (``None``) as many as there are."""
        start = 0
        while True:
            end = start + _DELETE_BATCH if written is None else min(start + _DELETE_BATCH, written)
            signatures = [chunk_signature(entry_id, number) for number in range(start, end)]
            if not signatures:
                return
            deleted = await ops.delete_many(self.chunks, signatures)
            if written is None and deleted < len(signatures):
                return
            start = end

    async def after_storing(self, ops: Operations, size: int) -> None:
        """``size`` more bytes stored: past an eighth of ``max_size`` since the namespace was last
        measured, measure it (two statements, the rows of every process sharing the store) and
        evict down to ``max_size``, the entries closest to expiry first."""
        if self.max_size is None:
            return
        self.written_since_sized += size
        if self.written_since_sized < self.max_size // 8:
            return
        self.written_since_sized = 0
        total = await ops.payload_bytes(self.entries) + await ops.payload_bytes(self.chunks)
        if total <= self.max_size:
            return
        # Closest to expiry first (an idle entry's TTI brings it closer), as the repository's size cap.
        query = key_query(
            ops.clock, self.entries, order_by="expires_at", include_expired=True, page_size=_EVICTION_PAGE
        )
        listing = KeyListing(ops, query)
        while total > self.max_size and (page := await listing.next_page()) is not None:
            rows = await ops.get_many(self.entries, [stored_key.signature for stored_key in page])
            for stored_key in page:
                if total <= self.max_size:
                    return
                stored = _stored_or_none(rows.get(stored_key.signature))
                if stored is not None:
                    total -= stored_key.size + stored.chunks * CHUNK_SIZE
                    await self.delete_entry(ops, self.entries, stored_key.signature, stored)


def _stored_or_none(payload: bytes | None) -> Stored | None:
    """A stored entry (not a claim, nor a row it cannot read) to evict, else ``None``."""
    try:
        stored = None if payload is None else unpack_entry(payload)
    except ValueError:
        return None
    return stored if stored is not None and stored.state == STORED else None


async def _listed(ops: Operations, backend: str, **options: object) -> list[StoredKey]:
    """Every key :func:`~animedex_store.rules.listing.key_query` chooses with ``options``, page by page."""
    listing = KeyListing(ops, key_query(ops.clock, backend, **options))  # type: ignore[arg-type]
    found: list[StoredKey] = []
    while (page := await listing.next_page()) is not None:
        found += page
    return found
