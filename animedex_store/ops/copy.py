"""Copy cached rows from one database to another, for ``animedex-store copy``.

Rows keep their payload, headers, ``fetched_at`` and ``expires_at`` exactly.
The source is streamed in one read (server-side cursor where the driver has
one) and written in batches, each one upsert ``executemany`` in its own
transaction, so re-running a copy, or resuming an interrupted one, is safe.
Both databases are opened as a repository would open them: migrated to head.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..core.blocking import run_blocking
from ..core.validation import check_count
from ..errors import store_error
from ..fastpath.targets import Target, resolve_target

if TYPE_CHECKING:
    from ..sql.engine import StoreEngine

__all__ = ["CopySummary", "copy_store", "DEFAULT_BATCH_SIZE"]

#: Rows written per transaction. (This module imports SQLAlchemy only when a copy
#: runs, so the CLI can show this default without loading it.)
DEFAULT_BATCH_SIZE = 500


@dataclass(frozen=True)
class CopySummary:
    """What :func:`copy_store` did."""

    source: str  # file path or masked URL
    destination: str
    rows_copied: int
    payload_bytes: int
    expired_skipped: int  # live rows only were copied; 0 with include_expired
    include_expired: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def copy_store(
    source: Target,
    destination: Target,
    *,
    include_expired: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    now: int | None = None,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> CopySummary:
    """Upsert every live row (all rows with ``include_expired``) of ``source`` into ``destination``.

    ``now`` (epoch seconds, default the system time) decides what is expired.
    ``on_start(total)`` is called with the number of rows to copy, then
    ``on_batch(rows)`` after each committed batch. Rows already in the
    destination under the same key are replaced.
    """
    batch_size = check_count("batch_size", batch_size)
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from ..sql.engine import target_name
    from ..sql.models import CacheRow
    from ..sql.servers import connections_for
    from ..sql.statements import VALUE_NAMES, Statements, row_totals

    rows = CacheRow.__table__
    # The order Statements.upsert takes its values in. Payloads go as they are stored, with
    # their codec: a compressed row stays compressed, and every reader decodes it.
    columns = [rows.c[name] for name in VALUE_NAMES]
    payload = VALUE_NAMES.index("payload")
    now = int(time.time()) if now is None else now
    live = rows.c.expires_at > now
    if resolve_target(source) == resolve_target(destination):
        raise ValueError(f"source and destination are the same database: {target_name(resolve_target(source))}")
    with _opened(source) as src, _opened(destination) as dst:
        writer = connections_for(dst)
        upsert = Statements.for_dialect(dst.engine.dialect).upsert
        copied = size = expired = 0
        try:
            with src.engine.connect() as connection:
                total, expired, _bytes = connection.execute(row_totals(now)).one()
                if not include_expired:
                    total -= expired
                if on_start is not None:
                    on_start(total)
                query = select(*columns) if include_expired else select(*columns).where(live)
                result = connection.execution_options(yield_per=batch_size).execute(query)
                for batch in result.partitions():
                    values = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in batch]
                    run_blocking(writer.executemany(upsert, values))
                    copied += len(values)
                    size += sum(len(row[payload]) for row in values)
                    if on_batch is not None:
                        on_batch(len(values))
        except (SQLAlchemyError, src.engine.dialect.loaded_dbapi.Error) as exc:
            raise store_error(exc, src.target) from exc
        finally:
            writer.close()
    return CopySummary(src.target, dst.target, copied, size, 0 if include_expired else int(expired), include_expired)


@contextlib.contextmanager
def _opened(target: Target) -> Iterator[StoreEngine]:
    """``target`` opened and migrated to head, as a repository opens it; disposed afterwards."""
    from ..migrations.opening import open_store

    store = open_store(resolve_target(target))
    try:
        yield store
    finally:
        store.dispose()
