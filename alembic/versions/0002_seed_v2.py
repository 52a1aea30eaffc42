"""Seed schema v2: ``cache_meta``, ``response_headers`` and ``fetched_at``.

The seed ran this step as two unguarded ``ALTER TABLE``s that could be
interrupted between them, so the upgrade adds only what is missing: it adopts
every half-migrated seed file, and a MariaDB/MySQL run interrupted after an
implicitly committed ``ALTER`` can simply be run again. ``schema_version`` is
set to ``'2'`` so the seed's own code, opening the file, skips its ALTERs.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import context, op
from animedex_store.migrations.revisions import SCHEMA_VERSION_KEY, SEED_V1_SCHEMA_VERSION, SEED_V2_SCHEMA_VERSION
from animedex_store.sql.coltypes import EpochSeconds, Payload

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PAYLOAD = Payload()  # BLOB; LONGBLOB on MariaDB/MySQL
SECONDS = EpochSeconds  # INTEGER on SQLite, BIGINT on the servers
cache_meta = sa.table("cache_meta", sa.column("key", sa.Text()), sa.column("value", sa.Text()))


def _existing() -> tuple[set[str], set[str]]:
    """Tables and ``cache_rows`` columns present now (nothing, when emitting SQL offline)."""
    if context.is_offline_mode():
        return set(), set()
    inspector = sa.inspect(op.get_bind())
    return set(inspector.get_table_names()), {column["name"] for column in inspector.get_columns("cache_rows")}


def _set_schema_version(value: str) -> None:
    op.execute(cache_meta.delete().where(cache_meta.c.key == SCHEMA_VERSION_KEY))
    op.execute(cache_meta.insert().values(key=SCHEMA_VERSION_KEY, value=value))


def upgrade() -> None:
    tables, columns = _existing()
    if "cache_meta" not in tables:
        op.create_table(
            "cache_meta",
            sa.Column("key", sa.String(64).with_variant(sa.Text(), "sqlite"), nullable=False),
            sa.Column("value", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("key", name="pk_cache_meta"),
        )
    if "response_headers" not in columns:
        op.add_column("cache_rows", sa.Column("response_headers", PAYLOAD, nullable=True))
    if "fetched_at" not in columns:
        op.add_column("cache_rows", sa.Column("fetched_at", SECONDS, nullable=True))
    _set_schema_version(SEED_V2_SCHEMA_VERSION)


def downgrade() -> None:
    # SQLite drops columns by rebuilding the table in batch mode; the rebuilt
    # table must stay WITHOUT ROWID, which batch mode drops unless told.
    with op.batch_alter_table("cache_rows", table_kwargs={"sqlite_with_rowid": False}) as batch:
        batch.drop_column("fetched_at")
        batch.drop_column("response_headers")
    # The seed's code reads schema_version to decide whether to add its v2
    # columns: it must say '1' again, or its next insert fails.
    _set_schema_version(SEED_V1_SCHEMA_VERSION)
