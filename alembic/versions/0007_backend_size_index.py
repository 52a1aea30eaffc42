"""Index ``cache_rows(backend, length(payload), signature)`` on SQLite and PostgreSQL, so one backend's
rows are listed by stored size through an index that holds the order.

``keys(order_by="size")`` (requests-cache's ``sorted(key="size")``) read every
row of the backend and sorted them: on 100,000 rows, the ten largest took
hundreds of milliseconds (as long as requests-cache's own SQLite backend, which
sorts ``LENGTH(value)`` over its whole table). Through this index it reads the
rows returned. An index on an expression: SQLite (3.9+) and PostgreSQL build it;
MariaDB (10.11) has none (it would need a generated column), so there the
revision changes nothing and the size order still sorts. Both statements say
``IF NOT EXISTS``/``IF EXISTS``: SQLAlchemy does not reflect expression indexes
on SQLite, so it could not look first. No row is rewritten.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

INDEX = "ix_cache_rows_backend_size"
#: The engines that build an index on an expression (the models' ``EXPRESSION_INDEX_ENGINES``; a
#: revision describes its step on its own, never importing the models).
ENGINES = ("sqlite", "postgresql")


def upgrade() -> None:
    if op.get_context().dialect.name in ENGINES:
        op.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON cache_rows (backend, length(payload), signature)")


def downgrade() -> None:
    if op.get_context().dialect.name in ENGINES:
        op.execute(f"DROP INDEX IF EXISTS {INDEX}")
