"""Cache statistics, as ``stats()`` returns them (and :class:`CachedResponse`, re-exported).

Imported only when statistics are asked for: ``dataclasses`` is not free at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from .response import CachedResponse

__all__ = ["CachedResponse", "BackendStats", "CacheStats"]


@dataclass(frozen=True)
class BackendStats:
    """Counts for a set of rows (one backend's, or the whole cache's).

    ``expired_rows`` counts rows with ``expires_at <= now`` (still stored,
    readable only with ``include_expired=True``); ``payload_bytes`` sums payload
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
    """Totals for the whole cache (the inherited fields), ``backends``: per backend, sorted by
    name, and ``claims_held``: keys some ``get_or_fetch`` caller is fetching now (live leases)."""

    backends: Mapping[str, BackendStats] = field(default_factory=lambda: MappingProxyType({}))
    claims_held: int = 0

    @classmethod
    def from_backends(cls, backends: Mapping[str, BackendStats], *, claims_held: int = 0) -> CacheStats:
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
            claims_held=claims_held,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready totals plus ``backends``: ``{name: {...}}``, and ``claims_held``."""
        return {
            **super().as_dict(),
            "backends": {name: part.as_dict() for name, part in self.backends.items()},
            "claims_held": self.claims_held,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
