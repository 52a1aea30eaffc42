"""Listing a backend's keys in pages (``keys``, and the bound ``count`` shares with it), written once.

:func:`key_query` checks one ``keys`` call's arguments when the call is made (an async repository
need not be open yet); :class:`KeyListing` reads its pages, each one query continuing after the
last row of the page before (keyset pagination), through whatever runs the repository's
statements (:class:`Rows`). Both repository classes and the integrations list keys through these.
Standard library only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, Protocol

from ..core.clock import Clock, clock_seconds, epoch_seconds, utc_datetime
from ..core.compiled import Compiled, StatementSet
from ..core.connections import Connections
from ..core.listing import EVERY_ROW, KEY_ORDERS, KeyPage
from ..core.response import StoredKey
from ..core.validation import check_choice, check_count, check_key, check_moment

__all__ = ["KeyListing", "KeyQuery", "Rows", "expiry_bound", "key_query"]


class Rows(Protocol):
    """What a listing reads through: a repository's connections and statements (its operations)."""

    db: Connections
    sql: StatementSet


def expiry_bound(
    clock: Clock | None, include_expired: bool, expired_only: bool, as_of: datetime | None
) -> tuple[bool, int]:
    """``(expired, bound)``: rows with ``expires_at <= bound`` if ``expired``, else ``> bound``."""
    moment = clock_seconds(clock) if as_of is None else epoch_seconds(check_moment("as_of", as_of))
    if expired_only:
        return True, moment
    return False, EVERY_ROW if include_expired else moment


class KeyQuery(NamedTuple):
    """What one ``keys`` call lists, checked: the first page's values and variant, how many per page."""

    backend: str
    bound: int
    page: KeyPage
    page_size: int
    limit: int | None


def key_query(
    clock: Clock | None,
    backend: str,
    *,
    include_expired: bool = False,
    expired_only: bool = False,
    as_of: datetime | None = None,
    order_by: str = "signature",
    descending: bool = False,
    limit: int | None = None,
    page_size: int = 1_000,
) -> KeyQuery:
    """The keys of ``backend``'s live rows as :class:`StoredKey` ``(signature, expires_at, size)``;
    payloads are not read. Every argument is checked when the call is made, before anything is read
    (an async repository need not be open yet).

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
    expired, bound = expiry_bound(clock, include_expired, expired_only, as_of)
    order = check_choice("order_by", order_by, KEY_ORDERS)
    page_size = check_count("page_size", page_size)
    remaining = None if limit is None else check_count("limit", limit)
    return KeyQuery(backend, bound, KeyPage(order, bool(descending), expired, after=False), page_size, remaining)


class KeyListing:
    """The pages of one ``keys`` call (:func:`key_query`) on ``operations``' database: each
    :meth:`next_page` is one query continuing after the last row of the page before."""

    def __init__(self, operations: Rows, query: KeyQuery) -> None:
        self._operations = operations
        self._values: tuple[Any, ...] = (query.backend, query.bound, None, None)
        self._page = query.page
        self._page_size = query.page_size
        self._remaining = query.limit
        self._done = False

    async def next_page(self) -> list[StoredKey] | None:
        """The next page of keys; ``None`` once every key was listed."""
        if self._done:
            return None
        wanted = self._page_size if self._remaining is None else min(self._page_size, self._remaining)
        operations = self._operations
        statement: Compiled = operations.sql.keys_page(self._page)
        rows = await operations.db.fetchall(statement, (*self._values, wanted))
        if len(rows) < wanted:
            self._done = True
        else:
            if self._remaining is not None:
                self._remaining -= len(rows)
                self._done = self._remaining == 0
            last = rows[-1]  # (signature, expires_at, size): continue after it in the listing's order
            backend, bound = self._values[:2]
            self._values = (backend, bound, last[KEY_ORDERS.index(self._page.order_by)], last[0])
            self._page = self._page._replace(after=True)
        return [StoredKey(signature, utc_datetime(expires_at), int(size)) for signature, expires_at, size in rows]
