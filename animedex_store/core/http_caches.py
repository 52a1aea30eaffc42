"""What the adapters of Python's HTTP caches share: their namespaces, keys that fit a row, and row TTLs.

Each adapter (``requests_cache.py``, ``aiohttp_client_cache.py``,
``cachecontrol.py``) keeps its library's rows under backends of its own and its
library's keys as signatures; a key longer than a row's is hashed, never
truncated. Standard library only.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime

from .clock import epoch_seconds
from .validation import KEY_MAX_LENGTH, MAX_TTL_SECONDS, check_key

__all__ = ["namespace", "fitted_key", "is_storable_key", "ttl_reaching", "ttl_until"]


def namespace(prefix: str, cache_name: str, table_name: str) -> str:
    """The backend of one ``(cache_name, table_name)`` pair of a library: ``<prefix>:<len>:<cache_name>:<table_name>``.

    The length prefix keeps ``("a:b", "c")`` and ``("a", "b:c")`` apart; a pair
    too long for a key is ``<prefix>:sha256:<hex>`` instead, which no spelled-out
    name can be (those have a digit after ``<prefix>:``).
    """
    return fitted_key(f"{prefix}:{len(cache_name)}:{cache_name}:{table_name}", f"{prefix}:sha256:")


def fitted_key(key: str, hashed_prefix: str) -> str:
    """``key`` as a row's ``backend`` or ``signature``: itself when it fits, else ``hashed_prefix``
    followed by its SHA-256 in hex. A key that itself starts with ``hashed_prefix`` is hashed too,
    so a key spelled out and a hashed one never meet."""
    if len(key) <= KEY_MAX_LENGTH and not key.startswith(hashed_prefix):
        return key
    return hashed_prefix + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def is_storable_key(key: object) -> bool:
    """Whether ``key`` could be a row's signature (else no row holds it)."""
    try:
        check_key("signature", key)
    except (TypeError, ValueError):
        return False
    return True


def ttl_reaching(moment: float, now: float) -> int:
    """Seconds a row written at ``now`` must live to reach ``moment`` (both epoch seconds): rounded up,
    as rows keep whole seconds and count from ``now`` rounded down, so the row never expires before
    it; 0 for a moment already past, at most the longest TTL."""
    return min(max(math.ceil(moment) - math.floor(now), 0), MAX_TTL_SECONDS)


def ttl_until(moment: datetime, now: datetime) -> int:
    """:func:`ttl_reaching` for datetimes (naive: UTC), exact to the microsecond."""
    return ttl_reaching(epoch_seconds(moment) + (moment.microsecond > 0), epoch_seconds(now))
