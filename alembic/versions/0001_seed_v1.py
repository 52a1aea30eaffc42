"""Seed schema v1: ``cache_rows`` as animedex's raw-sqlite3 cache first created it.

Column types come from ``animedex_store.sql.coltypes`` (DDL building blocks that
never change), never from the models: a revision describes the schema as it
was at this step. On SQLite the table is
``WITHOUT ROWID`` with TEXT/BLOB/INTEGER columns, exactly the seed's DDL.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import context, op
from animedex_store.sql.coltypes import EpochSeconds, ExactKey, Payload

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# TEXT on SQLite; on MariaDB/MySQL a NO PAD binary collation (utf8mb4_bin pads: 'k' = 'k ').
KEY = ExactKey(255)
PAYLOAD = Payload()  # BLOB; LONGBLOB on MariaDB/MySQL, whose BLOB stops at 64 KiB
SECONDS = EpochSeconds  # INTEGER on SQLite, BIGINT on the servers


def upgrade() -> None:
    # MariaDB/MySQL commit a CREATE at once: a run interrupted before alembic_version
    # was written leaves the table behind, and the rerun must accept it.
    if not context.is_offline_mode() and sa.inspect(op.get_bind()).has_table("cache_rows"):
        return
    op.create_table(
        "cache_rows",
        sa.Column("backend", KEY, nullable=False),
        sa.Column("signature", KEY, nullable=False),
        sa.Column("payload", PAYLOAD, nullable=False),
        sa.Column("expires_at", SECONDS, nullable=False),
        sa.PrimaryKeyConstraint("backend", "signature", name="pk_cache_rows"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("cache_rows")
    # 0002's downgrade keeps cache_meta (with schema_version '1') for the seed's
    # code; below 0001 nothing of ours remains.
    if _has_table("cache_meta"):
        op.drop_table("cache_meta")


def _has_table(name: str) -> bool:
    return context.is_offline_mode() or sa.inspect(op.get_bind()).has_table(name)
