"""Read ``cache_rows`` directly, bypassing the repository, on any engine."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.pool import NullPool

from animedex_store.sql.models import CacheRow

rows = CacheRow.__table__


def plain_engine(url: str) -> Engine:
    """An engine with none of animedex-store's set-up, closing its connections after each use."""
    return create_engine(url, poolclass=NullPool)


def dump_rows(engine: Engine) -> list[tuple]:
    """Every row as stored (expired ones too), columns in table order, sorted in Python
    (each engine orders text its own way), with ``memoryview`` turned into ``bytes``."""
    with engine.connect() as connection:
        result = connection.execute(select(rows))
        return sorted(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in result)


def row_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(rows)).scalar_one()
