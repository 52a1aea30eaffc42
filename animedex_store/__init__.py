"""animedex-store: a SQLAlchemy 2 + Alembic TTL cache for API responses.

Importing it loads the standard library only (SPEC §8); ``BackendStats`` and
``CacheStats`` are imported from :mod:`animedex_store.results` on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import StoreError
from .paths import default_cache_path, default_ttl_seconds
from .repository import CacheRepository
from .response import CachedResponse

if TYPE_CHECKING:  # type checkers see the real classes; at run time __getattr__ imports them
    from .results import BackendStats, CacheStats

__all__ = [
    "BackendStats",
    "CacheRepository",
    "CacheStats",
    "CachedResponse",
    "StoreError",
    "default_cache_path",
    "default_ttl_seconds",
]


def __getattr__(name: str) -> Any:
    if name in ("BackendStats", "CacheStats"):
        from . import results

        return getattr(results, name)
    raise AttributeError(f"module 'animedex_store' has no attribute {name!r}")
