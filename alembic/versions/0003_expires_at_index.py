"""Index ``cache_rows.expires_at`` so ``purge_expired`` finds expired rows without a scan.

The seed's ``DELETE ... WHERE expires_at <= ?`` read every row of the table.
Creating an index does not rebuild the table, so a SQLite table stays
``WITHOUT ROWID``. The upgrade skips an index that already exists: MariaDB/MySQL
commit DDL implicitly, so a run interrupted before ``alembic_version`` moved can
simply be run again.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INDEX = "ix_cache_rows_expires_at"  # the models' naming convention: ix_<table>_<column>


def _has_index() -> bool:
    if context.is_offline_mode():
        return False
    return any(index["name"] == INDEX for index in sa.inspect(op.get_bind()).get_indexes("cache_rows"))


def upgrade() -> None:
    if not _has_index():
        op.create_index(INDEX, "cache_rows", ["expires_at"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="cache_rows")
