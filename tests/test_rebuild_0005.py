"""Revision 0005 rebuilds a big SQLite table in one transaction: ``kill -9`` mid-way loses nothing.

A file at ``0004`` holding :data:`ROWS` rows is migrated by a child process that
reports the rebuild's progress; the child is killed after a number of batches
(and once at a random moment): the file must be sound, at ``0004`` in the old
layout or at ``0005`` in the new one, with every row. ``animedex-store
upgrade`` shows the same progress as a bar on a terminal.
"""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
import time
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
from alembic_runner import migrate_file
from dbfiles import rows, schema
from platforms import needs_pty, needs_sigkill
from reliability import JOIN_TIMEOUT_SECONDS, context, integrity
from terminal import run_cli_on_a_terminal

from animedex_store import CacheRepository
from animedex_store.fastpath.sqlite_file import remove_sqlite_file
from animedex_store.migrations.revisions import HEAD_REVISION

ROWS = 100_000
#: What 0005 copies per statement (its BATCH_ROWS); progress is reported after each batch.
BATCH = 5_000


def _write_rows(path: Path, count: int) -> None:
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO cache_rows (backend, signature, payload, expires_at, response_headers, fetched_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                (f"b{index % 7}", f"s{index:06d}", f"payload {index}".encode() * 8, 4102444800 + index, b"{}", index)
                for index in range(count)
            ),
        )
    connection.close()


@pytest.fixture(scope="module")
def file_at_0004(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple]]:
    """A file at revision 0004 with :data:`ROWS` rows, and its rows as read before any migration."""
    path = tmp_path_factory.mktemp("at-0004") / "cache.sqlite"
    migrate_file(path, "0004")
    _write_rows(path, ROWS)
    assert schema(path).without_rowid
    return path, rows(path)


def _migrate_reporting(path: str, progress: Connection) -> None:
    """In the child: migrate ``path`` to head, sending every ``(done, total)`` the rebuild reports."""
    from animedex_store.fastpath.targets import resolve_target
    from animedex_store.migrations.opening import open_store

    open_store(resolve_target(path), progress=lambda done, total: progress.send((done, total))).dispose()


def _kill_during_rebuild(source: Path, work: Path, *, after_rows: int | None, delay: float = 0.0) -> int:
    """Copy ``source`` to ``work`` and migrate it in a child, killed once it reports ``after_rows`` rows
    copied (or after ``delay`` seconds when ``after_rows`` is None). Returns the child's exit code."""
    remove_sqlite_file(work)
    shutil.copyfile(source, work)
    reader, writer = context().Pipe(duplex=False)
    child = context().Process(target=_migrate_reporting, args=(str(work), writer))
    child.start()
    writer.close()
    if after_rows is None:
        child.join(delay)
    else:
        while reader.poll(JOIN_TIMEOUT_SECONDS):
            done, total = reader.recv()
            if done >= after_rows:
                assert done < total, "the rebuild finished before the kill"
                break
    if child.is_alive():
        child.kill()
    child.join(JOIN_TIMEOUT_SECONDS)
    return child.exitcode


def _old_or_new(work: Path, before: list[tuple]) -> str:
    assert integrity(work) == ["ok"]
    snapshot = schema(work)
    assert rows(work) == before
    if snapshot.alembic_versions == ("0004",):
        assert snapshot.without_rowid and "_cache_rows_0005" not in snapshot.tables
        return "old"
    assert snapshot.alembic_versions == (HEAD_REVISION,) and not snapshot.without_rowid
    return "new"


@pytest.mark.slow
@needs_sigkill
def test_kill_9_during_the_0005_rebuild_leaves_the_old_or_the_new_table_with_every_row(
    file_at_0004: tuple[Path, list[tuple]], tmp_path: Path
) -> None:
    source, before = file_at_0004
    work = tmp_path / "migrating.sqlite"
    for batches in (1, 2, ROWS // BATCH - 1):
        assert _kill_during_rebuild(source, work, after_rows=batches * BATCH) == -signal.SIGKILL
        assert _old_or_new(work, before) == "old"  # mid-copy: the transaction never committed
    started = time.perf_counter()
    assert _kill_during_rebuild(source, work, after_rows=None, delay=JOIN_TIMEOUT_SECONDS) == 0
    whole = time.perf_counter() - started
    assert _old_or_new(work, before) == "new"
    states = {"old": 0, "new": 0}
    rng = random.Random(5)
    for _ in range(2):
        _kill_during_rebuild(source, work, after_rows=None, delay=rng.uniform(0, whole))
        states[_old_or_new(work, before)] += 1
    CacheRepository(work).close()  # whatever a kill left, the next open finishes the job
    assert _old_or_new(work, before) == "new"


@needs_pty
def test_animedex_store_upgrade_shows_the_rebuild_on_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    migrate_file(path, "0004")
    _write_rows(path, 12_000)
    seen, stdout = run_cli_on_a_terminal("upgrade", "--url", str(path))
    assert "migrating rows" in seen and "5000/12000" in seen and "12000/12000" in seen
    assert stdout.strip() == f"migrated {path} from revision 0004 to revision {HEAD_REVISION}"
    assert len(rows(path)) == 12_000
