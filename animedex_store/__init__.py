"""animedex-store: a SQLAlchemy 2 + Alembic TTL cache for API responses."""

from .errors import StoreError
from .paths import default_cache_path, default_ttl_seconds
from .repository import CacheRepository
from .results import BackendStats, CachedResponse, CacheStats

__all__ = [
    "BackendStats",
    "CacheRepository",
    "CacheStats",
    "CachedResponse",
    "StoreError",
    "default_cache_path",
    "default_ttl_seconds",
]
