"""Read ``cache_rows`` directly, bypassing the repository, on any engine."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.pool import NullPool

from animedex_store.sql.models import CacheLock, CacheRow

rows = CacheRow.__table__
locks = CacheLock.__table__


def plain_engine(url: str) -> Engine:
    """An engine with none of animedex-store's set-up, closing its connections after each use."""
    return create_engine(url, poolclass=NullPool)


#: The columns ``dump_rows`` reads, in this order: the seed's, then how the payload is stored.
DUMPED = ("backend", "signature", "payload", "expires_at", "response_headers", "fetched_at", "codec")


def dump_rows(engine: Engine) -> list[tuple]:
    """Every row as stored (expired ones too), the columns of :data:`DUMPED`, sorted in Python
    (each engine orders text its own way), with ``memoryview`` turned into ``bytes``."""
    with engine.connect() as connection:
        result = connection.execute(select(*(rows.c[name] for name in DUMPED)))
        return sorted(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in result)


def row_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(rows)).scalar_one()


def claim_rows(url: str) -> list[tuple]:
    """Every ``get_or_fetch`` claim in ``url``'s database, ``(backend, signature, holder, lease_until)``,
    sorted; none for ``sqlite://`` (an in-memory database nobody else can see)."""
    if url == "sqlite://":
        return []
    engine = plain_engine(url)
    try:
        with engine.connect() as connection:
            return sorted(tuple(row) for row in connection.execute(select(locks)))
    finally:
        engine.dispose()
