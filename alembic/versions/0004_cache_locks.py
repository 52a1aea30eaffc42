"""``cache_locks``: one claim per key, so only one caller of ``get_or_fetch`` fetches it.

A row says who holds the claim on ``(backend, signature)`` (``holder``, a
random token per claim) and until when (``lease_until``, epoch milliseconds:
leases last seconds). The key columns are those of ``cache_rows``: same
length, same exact (NO PAD binary) collation on MariaDB/MySQL, so a claim and
the row it guards always name the same key. ``WITHOUT ROWID`` on SQLite, like
``cache_rows``. Claims are short-lived, so nothing is lost by dropping the
table on downgrade.

The upgrade skips a table that already exists and the downgrade one that is
gone: MariaDB/MySQL commit DDL implicitly, so a run interrupted before
``alembic_version`` moved can simply be run again.

Column types come from ``animedex_store.sql.coltypes``, never from the models.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import context, op
from animedex_store.sql.coltypes import EpochMillis, ExactKey

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLE = "cache_locks"
KEY = ExactKey(255)  # exactly cache_rows' key columns
HOLDER = ExactKey(64)  # a random token, compared exactly
MILLIS = EpochMillis  # INTEGER on SQLite, BIGINT on the servers


def _has_table() -> bool | None:
    """Whether the table exists now; ``None`` when emitting SQL offline (nothing to look at)."""
    if context.is_offline_mode():
        return None
    return sa.inspect(op.get_bind()).has_table(TABLE)


def upgrade() -> None:
    if _has_table():
        return
    op.create_table(
        TABLE,
        sa.Column("backend", KEY, nullable=False),
        sa.Column("signature", KEY, nullable=False),
        sa.Column("holder", HOLDER, nullable=False),
        sa.Column("lease_until", MILLIS, nullable=False),
        sa.PrimaryKeyConstraint("backend", "signature", name="pk_cache_locks"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    if _has_table() is not False:
        op.drop_table(TABLE)
