"""animedex-store: a SQLAlchemy 2 + Alembic TTL cache for API responses."""

from .errors import StoreError
from .paths import default_cache_path, default_ttl_seconds
from .repository import CacheRepository

__all__ = ["CacheRepository", "StoreError", "default_cache_path", "default_ttl_seconds"]
