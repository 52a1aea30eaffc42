"""How :meth:`CacheRepository.keys` and :meth:`~CacheRepository.count` choose and order rows.

A backend's rows are listed live only (``expires_at`` after a moment, by default
now), expired only (at or before it) or all, by signature, expiry or stored
size, in pages that continue after the last row seen (keyset pagination: rows
written or deleted meanwhile are seen or not, never twice). Each combination is
one compiled statement, :class:`KeyPage` names which.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["KEY_ORDERS", "KeyPage", "KEY_PAGES", "EVERY_ROW"]

#: What ``keys(order_by=...)`` accepts: the signature, the expiry, or the payload's stored size.
KEY_ORDERS = ("signature", "expires_at", "size")
#: An expiry bound below every row's ``expires_at``: "live after it" then means "expired or not".
EVERY_ROW = -(2**62)


class KeyPage(NamedTuple):
    """One variant of the keys query (values: backend, bound, after_value, after_signature, limit)."""

    #: One of :data:`KEY_ORDERS`; ties are broken by signature.
    order_by: str
    descending: bool
    #: ``True``: rows with ``expires_at <= bound``; ``False``: ``expires_at > bound``.
    expired: bool
    #: A later page: only rows after ``(after_value, after_signature)`` in the order.
    after: bool


#: Every variant, compiled once per dialect (frozen for SQLite).
KEY_PAGES = tuple(
    KeyPage(order_by, descending, expired, after)
    for order_by in KEY_ORDERS
    for descending in (False, True)
    for expired in (False, True)
    for after in (False, True)
)
