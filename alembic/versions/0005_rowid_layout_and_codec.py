"""``cache_rows.codec`` on every engine, and on SQLite a rowid table with the payload last.

The codec says how a row's payload is stored (``animedex_store.core.codecs``):
0, the column's default, is "as it is", which is what a row written by the
seed's module (which names only its own columns) gets.

SQLite: the seed's ``WITHOUT ROWID`` table suits rows under about a twentieth of
a page; animedex's real responses are 4 KB in median, and a lookup in that
layout reads other rows' spilled payloads. Measured on them, a ``get`` took a
quarter of the time in an ordinary rowid table whose small columns come first
(expiry, codec and headers never behind the payload's overflow pages). SQLite
cannot reorder columns or drop ``WITHOUT ROWID`` in place, so the table is
rebuilt: created anew, filled in batches of :data:`BATCH_ROWS` in key order
(reporting progress to ``config.attributes["progress"]``, if given), the old one
dropped and the new one renamed, all in the migration's one transaction: a
crash leaves the old table with every row, or the new one.

PostgreSQL and MariaDB/MySQL only gain the column (an instant change on both);
the upgrade skips a column that already exists and the downgrade one that is
gone, because MariaDB/MySQL commit DDL implicitly.

The downgrade first decodes every compressed row, so that at ``0004`` the seed's
module reads every payload byte-exact, then restores the old layout.

Column types come from ``animedex_store.sql.coltypes``, never from the models.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic.util import CommandError

from alembic import context, op
from animedex_store.core.codecs import IDENTITY, decode
from animedex_store.sql.coltypes import EpochSeconds, ExactKey, Payload
from animedex_store.sql.engine import mask_url

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLE = "cache_rows"
REBUILT = "_cache_rows_0005"
INDEX = "ix_cache_rows_expires_at"
#: Rows copied per statement while SQLite's table is rebuilt (and decoded per batch on downgrade).
BATCH_ROWS = 5_000

KEY = ExactKey(255)
SECONDS = EpochSeconds
PAYLOAD = Payload()

#: The columns of each layout, in their order on SQLite.
COLUMNS_0004 = ("backend", "signature", "payload", "expires_at", "response_headers", "fetched_at")
COLUMNS_0005 = ("backend", "signature", "expires_at", "fetched_at", "codec", "response_headers", "payload")

Progress = Callable[[int, int], None]


#: Each column's type and whether it may be NULL.
COLUMN_TYPES: dict[str, tuple[sa.types.TypeEngine[Any], bool]] = {
    "backend": (KEY, False),
    "signature": (KEY, False),
    "payload": (PAYLOAD, False),
    "expires_at": (SECONDS, False),
    "response_headers": (PAYLOAD, True),
    "fetched_at": (SECONDS, True),
    "codec": (sa.SmallInteger(), False),
}


def _column(name: str) -> sa.Column[Any]:
    kind, nullable = COLUMN_TYPES[name]
    default = sa.text("0") if name == "codec" else None  # 0: stored as it is
    return sa.Column(name, kind, nullable=nullable, server_default=default)


def _progress() -> Progress:
    report = context.config.attributes.get("progress")
    return report if callable(report) else lambda _done, _total: None


def _is_sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def _has_codec() -> bool | None:
    """Whether ``cache_rows.codec`` exists now; ``None`` when emitting SQL offline."""
    if context.is_offline_mode():
        return None
    return any(column["name"] == "codec" for column in sa.inspect(op.get_bind()).get_columns(TABLE))


def upgrade() -> None:
    if _is_sqlite():
        _rebuild_sqlite(COLUMNS_0005, with_rowid=True, copied=COLUMNS_0004)
    elif not _has_codec():
        op.add_column(TABLE, _column("codec"))


def downgrade() -> None:
    if context.is_offline_mode():
        raise CommandError("0005's downgrade decodes compressed rows in Python: run it online, not with --sql")
    _decode_every_row()
    if _is_sqlite():
        _rebuild_sqlite(COLUMNS_0004, with_rowid=False, copied=COLUMNS_0004)
    elif _has_codec():
        op.drop_column(TABLE, "codec")


def _rebuild_sqlite(columns: Sequence[str], *, with_rowid: bool, copied: Sequence[str]) -> None:
    """``cache_rows`` rebuilt with ``columns`` in that order, keeping the values of ``copied``."""
    op.create_table(
        REBUILT,
        *(_column(name) for name in columns),
        sa.PrimaryKeyConstraint("backend", "signature", name="pk_cache_rows"),
        sqlite_with_rowid=with_rowid,
    )
    old = sa.table(TABLE, *(sa.column(name) for name in copied))
    new = sa.table(REBUILT, *(sa.column(name) for name in copied))
    if context.is_offline_mode():
        op.execute(new.insert().from_select(list(copied), sa.select(*old.c)))
    else:
        _copy_in_batches(old, new)
    op.drop_table(TABLE)  # and its index
    op.rename_table(REBUILT, TABLE)
    op.create_index(INDEX, TABLE, ["expires_at"])


def _copy_in_batches(old: sa.TableClause, new: sa.TableClause) -> None:
    """Every row of ``old`` into ``new``, :data:`BATCH_ROWS` at a time in key order, reporting progress."""
    bind = op.get_bind()
    progress = _progress()
    total = bind.execute(sa.select(sa.func.count()).select_from(old)).scalar_one()
    progress(0, total)
    key = sa.tuple_(old.c.backend, old.c.signature)
    first = sa.select(*old.c).order_by(old.c.backend, old.c.signature).limit(BATCH_ROWS)
    batch = first
    copied = 0
    while True:
        count = bind.execute(new.insert().from_select([column.name for column in old.c], batch)).rowcount
        copied += count
        progress(copied, total)
        if count < BATCH_ROWS:
            return
        # Keyset pagination: after the last key copied, found through the new table's primary key.
        backend, signature = bind.execute(
            sa.select(new.c.backend, new.c.signature).order_by(new.c.backend.desc(), new.c.signature.desc()).limit(1)
        ).one()
        batch = first.where(key > sa.tuple_(sa.literal(backend), sa.literal(signature)))


def _decode_every_row() -> None:
    """Store every compressed payload as it is (codec 0), a batch at a time."""
    bind = op.get_bind()
    rows = sa.table(TABLE, sa.column("backend"), sa.column("signature"), sa.column("payload"), sa.column("codec"))
    target = mask_url(bind.engine.url)
    compressed = sa.select(rows.c.backend, rows.c.signature, rows.c.payload, rows.c.codec)
    compressed = compressed.where(rows.c.codec != IDENTITY).limit(BATCH_ROWS)
    while True:
        batch = bind.execute(compressed).all()
        for backend, signature, payload, codec in batch:
            plain = decode(bytes(payload), codec, target, (backend, signature))
            bind.execute(
                rows.update()
                .where(rows.c.backend == backend, rows.c.signature == signature)
                .values(payload=plain, codec=IDENTITY)
            )
        if len(batch) < BATCH_ROWS:
            return
