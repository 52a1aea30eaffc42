"""How many rows a namespace holds, as one process knows it: :class:`Census`, so that writes count rarely.

Part of :mod:`animedex_store.integrations.django`; not public API.
"""

from __future__ import annotations

import math
import threading

__all__ = ["Census", "PURGE_EVERY_WRITES"]

#: A process deletes its namespace's expired rows once in this many rows it writes.
PURGE_EVERY_WRITES = 1_000


class Census:
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
