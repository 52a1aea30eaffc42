"""Opening files the seed's code wrote, and files we must refuse (README, "Migrations"; the adoption rules:
``animedex_store.migrations.adoption``).

Every seed state is adopted with all its rows; everything refused is left
byte-for-byte as it was (content hash, modification time, no journal files).
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic_runner import migrate_file, revisions, run_alembic
from dbfiles import fingerprint, rows, schema
from legacy import (
    SeedRow,
    SeedState,
    insert_like_seed,
    open_like_seed,
    planned_row,
    write_foreign_database,
    write_seed_file,
)

from animedex_store import CacheRepository
from animedex_store.errors import (
    MigrationError,
    NotADatabaseError,
    SchemaBehindError,
    SchemaTooNewError,
    UnknownSchemaError,
)
from animedex_store.migrations.revisions import HEAD_REVISION
from animedex_store.testing import FrozenClock


@pytest.fixture(params=list(SeedState), ids=lambda state: state.value)
def seed_file(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, list[SeedRow]]:
    """A file in one of the seed's states, and the rows it holds."""
    path = tmp_path / "cache.sqlite"
    return path, write_seed_file(path, request.param)


def as_stored(stored: list[SeedRow]) -> list[tuple]:
    return sorted(row.as_tuple() for row in stored)


def assert_reads_every_row(path: Path, stored: list[SeedRow]) -> None:
    """Live rows read back exactly; expired rows read as missing but stay in the table."""
    with CacheRepository(path, clock=FrozenClock()) as repository:
        for row in stored:
            if row.expired():
                assert repository.get(row.backend, row.signature) is None
                assert repository.get_with_meta(row.backend, row.signature) is None
                continue
            fetched = None if row.fetched_at is None else datetime.fromtimestamp(row.fetched_at, timezone.utc)
            assert repository.get(row.backend, row.signature) == row.payload
            assert repository.get_with_meta(row.backend, row.signature) == (row.payload, row.headers(), fetched)
    assert rows(path) == as_stored(stored)


def assert_at_head(path: Path) -> None:
    snapshot = schema(path)
    assert snapshot.alembic_versions == (HEAD_REVISION,)
    assert snapshot.schema_version == "2"


def test_seed_file_is_adopted_with_every_row(seed_file: tuple[Path, list[SeedRow]]) -> None:
    path, stored = seed_file
    assert any(row.expired() for row in stored) and not all(row.expired() for row in stored)
    before = schema(path)

    assert_reads_every_row(path, stored)

    assert_at_head(path)
    # Revision 0005 rebuilds cache_rows as a rowid table, whichever layout the seed left.
    assert before.tables["cache_rows"] and not schema(path).without_rowid


def test_reopening_an_adopted_file_changes_nothing(seed_file: tuple[Path, list[SeedRow]]) -> None:
    path, _stored = seed_file
    CacheRepository(path).close()
    adopted, adopted_file = schema(path), fingerprint(path)

    with CacheRepository(path, clock=FrozenClock()) as repository:
        repository.get("anilist", "0/plain")

    assert schema(path) == adopted  # includes SQLite's schema cookie
    assert fingerprint(path) == adopted_file


def test_downgrade_one_step_then_reopen_restores_head(seed_file: tuple[Path, list[SeedRow]], tmp_path: Path) -> None:
    path, stored = seed_file
    CacheRepository(path).close()
    was_rowid_free = schema(path).without_rowid

    run_alembic("-x", f"url=sqlite:///{path}", "downgrade", "-1", home=tmp_path)
    assert schema(path).alembic_versions == (revisions()[-2],)

    assert_reads_every_row(path, stored)
    assert_at_head(path)
    assert schema(path).without_rowid == was_rowid_free


def test_seed_code_opens_a_file_downgraded_below_v2(tmp_path: Path) -> None:
    """0002's downgrade writes schema_version '1', so the seed re-adds its columns instead of failing."""
    path = tmp_path / "cache.sqlite"
    stored = write_seed_file(path, SeedState.V2)
    CacheRepository(path).close()

    run_alembic("-x", f"url=sqlite:///{path}", "downgrade", "0001", home=tmp_path)
    downgraded = schema(path)
    assert downgraded.schema_version == "1" and downgraded.without_rowid

    conn = open_like_seed(path)
    try:
        added = insert_like_seed(conn, planned_row(len(stored)), tuple(SeedRow.__dataclass_fields__))
        conn.commit()
    finally:
        conn.close()
    assert schema(path).schema_version == "2"

    # Below 0002 the v2 columns were dropped; the keys, payloads and expiries remain.
    kept = [SeedRow(row.backend, row.signature, row.payload, row.expires_at) for row in stored]
    assert_reads_every_row(path, [*kept, added])
    assert_at_head(path)


def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def _text(path: Path) -> None:
    path.write_bytes(b"not a database, just notes\n" * 50)


def _bare_sqlite_header(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00")


def _seed_v2_and_foreign_table(path: Path) -> None:
    write_seed_file(path, SeedState.V2, rows=20)
    write_foreign_database(path)


def _cache_rows_of_unknown_shape(path: Path) -> None:
    write_seed_file(path, SeedState.V2, rows=20)
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE cache_rows ADD COLUMN etag TEXT")
    conn.close()


def _newer_revision(path: Path) -> None:
    CacheRepository(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE alembic_version SET version_num = 'f00dfeed9999'")
    conn.commit()
    conn.close()


def _empty_file(path: Path) -> None:
    path.touch()


def _seed_v1(path: Path) -> None:
    write_seed_file(path, SeedState.V1, rows=50)


def _at_first_revision(path: Path) -> None:
    migrate_file(path, revisions()[0])


_NEWER = "written by a newer version. Upgrade animedex-store"
REFUSALS = [
    *(
        pytest.param(make, migrate, NotADatabaseError, "not a SQLite database", id=f"{make.__name__[1:]}-{migrate=}")
        for make in (_random_bytes, _text, _bare_sqlite_header)
        for migrate in (True, False)
    ),
    pytest.param(write_foreign_database, True, UnknownSchemaError, "(notes)", id="foreign-table"),
    pytest.param(_seed_v2_and_foreign_table, True, UnknownSchemaError, "(notes)", id="seed-and-foreign-table"),
    pytest.param(_cache_rows_of_unknown_shape, True, UnknownSchemaError, "etag", id="unknown-cache-rows"),
    pytest.param(_newer_revision, True, SchemaTooNewError, _NEWER, id="newer-revision"),
    pytest.param(_newer_revision, False, SchemaTooNewError, _NEWER, id="newer-revision-migrate=False"),
    pytest.param(_empty_file, False, SchemaBehindError, "migrate=True", id="empty-migrate=False"),
    pytest.param(_seed_v1, False, SchemaBehindError, "migrate=True", id="seed-v1-migrate=False"),
    pytest.param(_at_first_revision, False, SchemaBehindError, "migrate=True", id="behind-migrate=False"),
]


@pytest.mark.parametrize(("make", "migrate", "error", "says"), REFUSALS)
def test_a_refused_file_is_left_untouched(tmp_path: Path, make, migrate: bool, error: type, says: str) -> None:
    """Refusals name the file and say why; hash, mtime and journal files stay as they were."""
    path = tmp_path / "cache.sqlite"
    make(path)
    before = fingerprint(path)

    with pytest.raises(error) as raised:
        CacheRepository(path, migrate=migrate)

    assert raised.value.target == str(path)
    assert str(path) in str(raised.value) and says in str(raised.value)
    assert fingerprint(path) == before


def test_a_missing_file_with_migrate_false_is_not_created(tmp_path: Path) -> None:
    """Nothing to refuse, and nothing may be created: no file, no directory."""
    path = tmp_path / "new" / "cache.sqlite"

    with pytest.raises(SchemaBehindError, match="does not exist") as raised:
        CacheRepository(path, migrate=False)

    assert raised.value.target == str(path)
    assert str(path) in str(raised.value) and "migrate=True" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_a_migration_failing_in_a_revision_rolls_back(tmp_path: Path) -> None:
    """The seed's half-migrated file plus a trigger that refuses 0002's schema_version write:
    the stamp, ``CREATE TABLE`` and both ``ALTER``s before it are undone."""
    path = tmp_path / "cache.sqlite"
    stored = write_seed_file(path, SeedState.V1_META)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TRIGGER refuse_meta BEFORE INSERT ON cache_meta BEGIN SELECT RAISE(ABORT, 'refused'); END")
    conn.close()
    before = fingerprint(path)

    with pytest.raises(MigrationError, match="rolled back") as raised:
        CacheRepository(path)

    assert str(path) in str(raised.value)
    # The driver's words only: no SQLAlchemy statement, parameters or documentation link.
    assert str(raised.value).endswith("was rolled back: refused")
    assert fingerprint(path) == before
    assert rows(path) == as_stored(stored)


def test_a_failure_after_the_last_revision_rolls_everything_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alembic.runtime.migration import MigrationContext

    path = tmp_path / "cache.sqlite"
    stored = write_seed_file(path, SeedState.V1)
    before = fingerprint(path)
    run_migrations = MigrationContext.run_migrations

    def run_then_fail(self: MigrationContext, **kwargs) -> None:
        run_migrations(self, **kwargs)
        raise RuntimeError("injected failure after every revision ran")

    monkeypatch.setattr(MigrationContext, "run_migrations", run_then_fail)
    with pytest.raises(MigrationError, match="injected failure"):
        CacheRepository(path)
    assert fingerprint(path) == before

    monkeypatch.undo()
    assert_reads_every_row(path, stored)
    assert_at_head(path)


@pytest.mark.parametrize("state", [SeedState.V1, SeedState.V2], ids=lambda state: state.value)
def test_seed_tables_with_an_empty_alembic_version_are_adopted(tmp_path: Path, state: SeedState) -> None:
    """What ``alembic stamp base`` leaves, or a first migration cut off where DDL commits at once."""
    path = tmp_path / "cache.sqlite"
    stored = write_seed_file(path, state)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    conn.close()

    assert_reads_every_row(path, stored)
    assert_at_head(path)
