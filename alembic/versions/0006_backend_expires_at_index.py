"""Index ``cache_rows(backend, expires_at, signature)`` so one backend's rows are counted and listed
by expiry through the index.

``count`` and ``keys`` of one backend filter on ``expires_at`` (live rows only,
or only expired ones) and ``keys`` may order by it. The primary key finds the
backend's rows but not their expiry: on 100,000 rows of one backend, listing
the ten soonest to expire read and sorted every one of them (75 ms on SQLite)
where this index reads ten (0.02 ms), and a count of the live rows becomes a
scan of the index alone. The signature breaks ties in the order ``keys`` lists
rows in, so a page of rows that expire in the same second (a ``set_many``) is
read in index order, never sorted. ``ix_cache_rows_expires_at`` stays: purging and
eviction look at every backend's rows by expiry. The upgrade skips an index
that already exists (MariaDB/MySQL commit DDL implicitly, so an interrupted run
is simply run again); no row is rewritten.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INDEX = "ix_cache_rows_backend_expires_at"  # named for what it is for (the convention would add _signature)


def _has_index() -> bool:
    if context.is_offline_mode():
        return False
    return any(index["name"] == INDEX for index in sa.inspect(op.get_bind()).get_indexes("cache_rows"))


def upgrade() -> None:
    if not _has_index():
        op.create_index(INDEX, "cache_rows", ["backend", "expires_at", "signature"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="cache_rows")
