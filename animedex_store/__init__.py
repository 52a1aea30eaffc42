"""animedex-store: a SQLAlchemy 2 + Alembic TTL cache for API responses.

Importing it loads the standard library only (README, "Start-up: what loads when";
``tests/test_light_imports.py``); ``BackendStats`` and ``CacheStats`` are imported from
:mod:`animedex_store.core.stats`, and ``AsyncCacheRepository`` (with ``asyncio``) from
:mod:`animedex_store.async_repository`, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core.defaults import default_cache_path, default_ttl_seconds
from .core.response import CachedResponse, StoredKey
from .errors import StoreError
from .repository import CacheRepository

if TYPE_CHECKING:  # type checkers see the real classes; at run time __getattr__ imports them
    from .async_repository import AsyncCacheRepository
    from .core.stats import BackendStats, CacheStats

__all__ = [
    "AsyncCacheRepository",
    "BackendStats",
    "CacheRepository",
    "CacheStats",
    "CachedResponse",
    "StoreError",
    "StoredKey",
    "default_cache_path",
    "default_ttl_seconds",
]


def __getattr__(name: str) -> Any:
    if name in ("BackendStats", "CacheStats"):
        from .core import stats

        return getattr(stats, name)
    if name == "AsyncCacheRepository":
        from .async_repository import AsyncCacheRepository

        return AsyncCacheRepository
    raise AttributeError(f"module 'animedex_store' has no attribute {name!r}")
