"""Default TTLs and the default cache location, as the seed defined them."""

from __future__ import annotations

from pathlib import Path

__all__ = ["default_ttl_seconds", "default_cache_path", "DEFAULT_TTL_SECONDS"]

#: Seconds per request category (animedex plans/03 §10).
DEFAULT_TTL_SECONDS = {
    "metadata": 72 * 3600,
    "list": 24 * 3600,
    "schedule": 3600,
    "trending": 3600,
    "offline_dump": 30 * 86400,
}


def default_ttl_seconds(category: str) -> int:
    """Default TTL for a request category; unknown categories get the metadata TTL."""
    return DEFAULT_TTL_SECONDS.get(category, DEFAULT_TTL_SECONDS["metadata"])


def default_cache_path() -> Path:
    """``platformdirs.user_cache_dir("animedex") / "cache.sqlite"``."""
    from platformdirs import user_cache_dir  # here, not at import: opening a given path never needs it

    return Path(user_cache_dir("animedex")) / "cache.sqlite"
