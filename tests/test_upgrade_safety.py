"""Upgrade safety: opening with this package never loses a row, from every earlier revision.

For each revision from ``0001`` on, a database is built at that revision with
Alembic, filled with rows through the table as it was then, and opened with
:class:`CacheRepository`: every row must come through the upgrade byte for
byte, on SQLite and on each server. A database written by a newer
animedex-store (a revision this package does not know, with tables and
columns of its own) is refused with a clear error and left exactly as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic_runner import migrate_engine, package_engine, revisions
from dbfiles import fingerprint
from legacy import NOW, planned_row
from sqlalchemy import Engine, MetaData, Table, inspect, select, text

from animedex_store import CacheRepository
from animedex_store.core.clock import FrozenClock
from animedex_store.errors import SchemaTooNewError
from animedex_store.migrations.revisions import HEAD_REVISION

ROWS = 120
FUTURE_REVISION = "9999_newer"
#: What a column added by a later revision holds in the rows written before it: revision
#: 0005's codec says "stored as it is"; anything else would be NULL.
ADDED_COLUMN_VALUES = {"codec": 0}


def _cache_rows(connection) -> Table:
    return Table("cache_rows", MetaData(), autoload_with=connection)


def _insert_rows(engine: Engine) -> None:
    """Rows with every column the table has at its revision, written through that table."""
    with engine.begin() as connection:
        table = _cache_rows(connection)
        values = [
            {column: getattr(planned_row(index), column, ADDED_COLUMN_VALUES.get(column)) for column in table.c.keys()}
            for index in range(ROWS)
        ]
        connection.execute(table.insert(), values)


def _snapshot(engine: Engine) -> tuple[list[str], list[tuple], list[str]]:
    """``cache_rows`` columns, every row (sorted in Python), and ``alembic_version``."""
    with engine.connect() as connection:
        table = _cache_rows(connection)
        found = sorted(tuple(row) for row in connection.execute(select(table)))
        versions = sorted(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    return list(table.c.keys()), found, versions


@pytest.mark.parametrize("revision", [revision for revision in revisions() if revision != HEAD_REVISION])
def test_opening_a_database_at_an_earlier_revision_keeps_every_row(
    engine: Engine, engine_url: str, revision: str
) -> None:
    migrate_engine(engine, revision)
    _insert_rows(engine)
    columns_before, rows_before, versions = _snapshot(engine)
    assert versions == [revision]

    with CacheRepository(engine_url, clock=FrozenClock()) as repository:
        for index in (3, 5, 6):  # live rows; their payloads read back through the API
            row = planned_row(index)
            assert row.expires_at > NOW
            assert repository.get(row.backend, row.signature) == row.payload
    columns_after, rows_after, versions = _snapshot(engine)
    assert versions == [HEAD_REVISION]
    assert set(columns_before) <= set(columns_after)  # in whatever order (0005 reorders SQLite's)
    assert len(rows_after) == ROWS
    position = {column: columns_after.index(column) for column in columns_after}
    kept = sorted(tuple(row[position[column]] for column in columns_before) for row in rows_after)
    assert kept == rows_before  # every row, every byte, expired ones too
    added = [column for column in columns_after if column not in columns_before]
    assert all(row[position[column]] == ADDED_COLUMN_VALUES.get(column) for row in rows_after for column in added)


def _make_future(engine: Engine) -> None:
    """What a newer animedex-store could leave: an unknown revision, a new table and a new column."""
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :future"), {"future": FUTURE_REVISION})
        connection.execute(text("CREATE TABLE cache_tags (tag VARCHAR(40) PRIMARY KEY)"))
        connection.execute(text("ALTER TABLE cache_rows ADD COLUMN etag VARCHAR(80)"))


def test_a_database_from_a_newer_version_is_refused_and_left_as_it_was(engine: Engine, engine_url: str) -> None:
    migrate_engine(engine, "head")
    _insert_rows(engine)
    _make_future(engine)
    before = _snapshot(engine)
    tables_before = sorted(inspect(engine).get_table_names())
    for migrate in (True, False):
        with pytest.raises(SchemaTooNewError, match="newer version. Upgrade animedex-store") as caught:
            CacheRepository(engine_url, migrate=migrate)
        assert FUTURE_REVISION in str(caught.value)
    assert _snapshot(engine) == before
    assert sorted(inspect(engine).get_table_names()) == tables_before


def test_a_newer_sqlite_file_is_not_even_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "newer.sqlite"
    with package_engine(path) as engine:
        migrate_engine(engine, "head")
        _insert_rows(engine)
        _make_future(engine)
    before = fingerprint(path)
    with pytest.raises(SchemaTooNewError, match=str(path)):
        CacheRepository(path)
    assert fingerprint(path) == before  # same bytes, same mtime, no companions left behind
