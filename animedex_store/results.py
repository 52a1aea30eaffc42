"""Values the repository returns: a cached response with its freshness, and cache statistics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

__all__ = ["CachedResponse", "BackendStats", "CacheStats"]

_new_tuple = tuple.__new__


class CachedResponse(tuple):
    """What ``get_with_meta`` returns: ``(payload, headers, fetched_at)`` plus freshness.

    It *is* the seed's 3-tuple: ``payload, headers, fetched_at = result`` still
    works and it compares equal to ``(payload, headers, fetched_at)``. The
    extra attributes ``expires_at`` (aware UTC datetime) and ``is_stale``
    (``True`` only for an expired row returned with ``allow_stale=True``) live
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


@dataclass(frozen=True)
class BackendStats:
    """Counts for a set of rows (one backend's, or the whole cache's).

    ``expired_rows`` counts rows with ``expires_at <= now`` (still stored,
    readable only with ``allow_stale=True``); ``payload_bytes`` sums payload
    lengths (headers and index overhead not included). ``oldest_fetched_at``
    and ``newest_fetched_at`` are aware UTC datetimes, ``None`` when no row
    has a ``fetched_at`` (empty, or only pre-v2 rows).
    """

    rows: int = 0
    expired_rows: int = 0
    payload_bytes: int = 0
    oldest_fetched_at: datetime | None = None
    newest_fetched_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601 strings."""
        return {
            "rows": self.rows,
            "expired_rows": self.expired_rows,
            "payload_bytes": self.payload_bytes,
            "oldest_fetched_at": _iso(self.oldest_fetched_at),
            "newest_fetched_at": _iso(self.newest_fetched_at),
        }


@dataclass(frozen=True)
class CacheStats(BackendStats):
    """Totals for the whole cache (the inherited fields) and ``backends``: per backend, sorted by name."""

    backends: Mapping[str, BackendStats] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_backends(cls, backends: Mapping[str, BackendStats]) -> CacheStats:
        """Totals computed from per-backend stats."""
        parts = list(backends.values())
        oldest = [part.oldest_fetched_at for part in parts if part.oldest_fetched_at is not None]
        newest = [part.newest_fetched_at for part in parts if part.newest_fetched_at is not None]
        return cls(
            rows=sum(part.rows for part in parts),
            expired_rows=sum(part.expired_rows for part in parts),
            payload_bytes=sum(part.payload_bytes for part in parts),
            oldest_fetched_at=min(oldest, default=None),
            newest_fetched_at=max(newest, default=None),
            backends=MappingProxyType(dict(sorted(backends.items()))),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready totals plus ``backends``: ``{name: {...}}``."""
        return {**super().as_dict(), "backends": {name: part.as_dict() for name, part in self.backends.items()}}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
