"""What reads return: ``get_with_meta``'s cached response with its freshness, and ``keys``' stored keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, Optional

from .clock import utc_datetime
from .validation import decode_headers

__all__ = ["CachedResponse", "StoredKey"]

_new_tuple = tuple.__new__


# Optional, not `| None`: the base class is evaluated at run time, also on Python 3.9.
class CachedResponse(tuple[bytes, dict[str, str], Optional[datetime]]):
    """What ``get_with_meta`` returns: ``(payload, headers, fetched_at)`` plus freshness.

    It *is* the seed's 3-tuple: ``payload, headers, fetched_at = result`` still
    works and it compares equal to ``(payload, headers, fetched_at)``. The
    extra attributes ``expires_at`` (aware UTC datetime) and ``is_stale``
    (``True`` only for an expired row returned with ``include_expired=True``) live
    beside the three items, not in them, so unpacking is unchanged. Immutable.
    """

    expires_at: datetime
    is_stale: bool

    def __new__(
        cls,
        payload: bytes,
        headers: dict[str, str],
        fetched_at: datetime | None,
        expires_at: datetime,
        is_stale: bool = False,
    ) -> CachedResponse:
        self = _new_tuple(cls, (payload, headers, fetched_at))
        # Straight into __dict__ (__setattr__ below refuses assignments), item by
        # item: a third cheaper than update(**kwargs) on every get_with_meta.
        extras = self.__dict__
        extras["expires_at"] = expires_at
        extras["is_stale"] = is_stale
        return self

    @classmethod
    def from_row(
        cls,
        payload: bytes,
        headers: bytes | None,
        fetched_at: int | None,
        expires_at: int,
        now: int,
        where: tuple[str, str, str] | None = None,
    ) -> CachedResponse:
        """The response a row holds, as read at ``now``: ``headers`` as stored (JSON, ``None``
        before v2) and the times in epoch seconds. ``payload`` is already decoded. ``where``
        (target, backend, signature) names the row if its headers are unreadable (logged)."""
        return cls(
            payload,
            decode_headers(headers, where),
            None if fetched_at is None else utc_datetime(fetched_at),
            utc_datetime(expires_at),
            expires_at <= now,
        )

    @property
    def payload(self) -> bytes:
        """The cached bytes."""
        return self[0]

    @property
    def headers(self) -> dict[str, str]:
        """Response headers; ``{}`` for rows written before v2."""
        return self[1]

    @property
    def fetched_at(self) -> datetime | None:
        """When the row was written; ``None`` for rows written before v2."""
        return self[2]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"CachedResponse is immutable; cannot set {name!r}")

    __delattr__ = __setattr__  # type: ignore[assignment]

    def __getnewargs__(self) -> tuple[Any, ...]:
        # copy and pickle rebuild through __new__, which needs the extras too.
        return (*self, self.expires_at, self.is_stale)

    def __repr__(self) -> str:
        return (
            f"CachedResponse(payload={self.payload!r}, headers={self.headers!r}, fetched_at={self.fetched_at!r}, "
            f"expires_at={self.expires_at!r}, is_stale={self.is_stale!r})"
        )


class StoredKey(NamedTuple):
    """A row as :meth:`CacheRepository.keys` lists it, without its payload."""

    signature: str
    #: When the row expires (aware UTC); it reads as missing from then on.
    expires_at: datetime
    #: The payload's size as stored (compressed rows count compressed bytes).
    size: int
