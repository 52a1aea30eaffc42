"""The optional size cap: keep the payload total under ``max_bytes`` by evicting the rows closest to expiry.

The cost of a write stays bounded. Each capped repository tracks the payload
total in memory: one exact ``SUM`` when it does not know it yet, then its own
writes move it (the row's previous size is read by primary key first, so an
overwrite counts as the difference). Only when the tracked total goes over the
cap does it count exactly again (other processes may have written or deleted),
and if the exact total is over too, it evicts down to :data:`EVICT_TO_FRACTION`
of the cap: rows in ``expires_at`` order, so expired rows go first, then the
rows closest to expiry, read through the ``expires_at`` index in batches of
:data:`EVICTION_BATCH`; the row being written is never evicted by its own
write. The headroom means a full count happens at most once per tenth of the
cap written, never on every write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.validation import check_count

if TYPE_CHECKING:
    from ..core.compiled import StatementSet
    from ..core.connections import Connections
    from .runtime import Lock

__all__ = ["SizeCap", "EVICT_TO_FRACTION", "EVICTION_BATCH", "check_max_bytes"]

#: After an eviction the payload total is at most this fraction of the cap.
EVICT_TO_FRACTION = 0.9
#: Rows read per eviction query.
EVICTION_BATCH = 256


def check_max_bytes(max_bytes: object) -> int | None:
    """``max_bytes``: ``None`` (no cap) or an ``int`` ≥ 1 (``bool`` is refused)."""
    return None if max_bytes is None else check_count("max_bytes", max_bytes)


class SizeCap:
    """Tracks one repository's view of the payload total and evicts when it passes ``max_bytes``."""

    def __init__(self, max_bytes: int, lock: Lock) -> None:
        self.max_bytes = max_bytes
        self._total: int | None = None  # None: unknown, count before trusting it
        self._lock = lock  # the runtime's: held across awaits

    def check_fits(self, size: int) -> None:
        """Refuse, before anything is written, a payload that could never fit under the cap."""
        if size > self.max_bytes:
            raise ValueError(f"payload is {size} bytes, larger than max_bytes={self.max_bytes}")

    async def previous_size(self, db: Connections, sql: StatementSet, backend: str, signature: str) -> int:
        """Bytes the row ``(backend, signature)`` holds now (0 when missing): what an overwrite frees."""
        row = await db.fetchone(sql.payload_size, (backend, signature))
        return 0 if row is None else int(row[0])

    async def grew(self, db: Connections, sql: StatementSet, delta: int, written: tuple[str, str]) -> None:
        """Account for a committed write of the key ``written`` that changed the total by ``delta``.

        Over the cap, evict; the row just written is kept, so a ``get`` right
        after a ``set`` finds it. If counting or evicting fails, the error
        propagates, but the write itself has already committed.
        """
        async with self._lock:
            try:
                self._total = await _count(db, sql) if self._total is None else self._total + delta
                if self._total > self.max_bytes:
                    self._total = await self._evict(db, sql, written)
            except BaseException:
                self._total = None  # a failed count or eviction leaves the total unknown: count again next time
                raise

    async def _evict(self, db: Connections, sql: StatementSet, keep: tuple[str, str]) -> int:
        """Evict down to the low-water mark, sparing ``keep``; returns the new total."""
        total = await _count(db, sql)
        if total <= self.max_bytes:
            return total  # others deleted rows since our last count
        target = int(self.max_bytes * EVICT_TO_FRACTION)
        while total > target:
            batch = await db.fetchall(sql.eviction_batch, (EVICTION_BATCH,))
            chosen = []
            for backend, signature, size in batch:
                if total <= target:
                    break
                if (backend, signature) != keep:
                    chosen.append((backend, signature))
                    total -= int(size)
            if chosen:
                await db.executemany(sql.delete, chosen)
            if len(batch) < EVICTION_BATCH:
                break  # the table is exhausted (only ``keep`` may be left)
        return total


async def _count(db: Connections, sql: StatementSet) -> int:
    row = await db.fetchone(sql.payload_total, ())
    return int(row[0]) if row is not None else 0
