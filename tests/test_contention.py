"""Contention on one SQLite file: many processes, no "database is locked", nothing lost.

Also: a write that cannot get the lock within ``timeout`` fails with a clear
:class:`DatabaseLockedError` instead of waiting forever.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability import (
    JOIN_TIMEOUT_SECONDS,
    LONG_TTL,
    SCALE,
    context,
    integrity,
    lock_holder,
    lost_writes,
    record,
    run_contention,
)

from animedex_store import CacheRepository
from animedex_store.errors import DatabaseLockedError

pytestmark = pytest.mark.slow


def test_processes_writing_and_reading_one_file_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "contended.sqlite"
    results = run_contention(str(path), SCALE.processes, SCALE.operations)

    errors = [f"worker {result.worker}: {error}" for result in results for error in result.errors]
    assert errors == []
    assert integrity(path) == ["ok"]
    lost = lost_writes(str(path), results)
    assert lost == []

    totals: dict[str, int] = {}
    for result in results:
        for name, count in result.operations.items():
            totals[name] = totals.get(name, 0) + count
    assert sum(totals.values()) == SCALE.processes * SCALE.operations
    assert totals["purge_expired"] > 0 and totals["set_expired"] > 0  # the mix really ran
    record(
        "contention",
        processes=SCALE.processes,
        operations_per_process=SCALE.operations,
        operations=sum(totals.values()),
        errors=len(errors),
        acknowledged_writes=sum(len(r.written) + len(r.written_with_meta) for r in results),
        lost=len(lost),
    )


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[Path]:
    """A migrated file holding one live row, ``("b", "s") -> b"before"``."""
    path = tmp_path / "locked.sqlite"
    with CacheRepository(path) as repository:
        repository.set("b", "s", b"before", ttl_seconds=LONG_TTL)
    yield path


def test_a_write_that_cannot_get_the_lock_in_time_fails_clearly(stored: Path) -> None:
    holder = sqlite3.connect(stored, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with CacheRepository(stored, timeout=0.2) as repository:
            writes = [
                lambda: repository.set("b", "s", b"after", ttl_seconds=LONG_TTL),
                lambda: repository.set_with_meta("b", "s", b"after", response_headers={}, ttl_seconds=LONG_TTL),
                lambda: repository.set_many("b", {"s": b"after", "t": b"after"}, ttl_seconds=LONG_TTL),
                lambda: repository.delete("b", "s"),
                repository.purge_expired,
                repository.clear,
            ]
            for write in writes:
                with pytest.raises(DatabaseLockedError, match=str(stored)) as caught:
                    write()
                assert caught.value.target == str(stored)
            # WAL: readers are not blocked by the writer's lock; the failed writes changed nothing.
            assert repository.get("b", "s") == b"before"
            assert repository.get("b", "t") is None
            holder.execute("ROLLBACK")
            repository.set("b", "s", b"after", ttl_seconds=LONG_TTL)
            assert repository.get("b", "s") == b"after"
    finally:
        holder.close()


def test_a_lock_held_by_another_process_past_the_timeout_fails_clearly(stored: Path) -> None:
    ctx = context()
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=lock_holder, args=(str(stored), ready, release))
    holder.start()
    try:
        assert ready.wait(JOIN_TIMEOUT_SECONDS)
        with CacheRepository(stored, timeout=0.2) as repository:
            with pytest.raises(DatabaseLockedError, match="locked by another connection past the timeout"):
                repository.set("b", "s", b"after", ttl_seconds=LONG_TTL)
            assert repository.get("b", "s") == b"before"
            release.set()
            holder.join(JOIN_TIMEOUT_SECONDS)
            repository.set("b", "s", b"after", ttl_seconds=LONG_TTL)
            assert repository.get("b", "s") == b"after"
    finally:
        release.set()
        holder.join(JOIN_TIMEOUT_SECONDS)
        if holder.is_alive():
            holder.kill()
    assert holder.exitcode == 0


def test_opening_a_fresh_file_another_connection_has_locked_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "fresh.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseLockedError, match=str(path)):
            CacheRepository(path, timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with CacheRepository(path) as repository:  # and once the lock is gone, it opens
        repository.set("b", "s", b"v", ttl_seconds=LONG_TTL)
        assert repository.get("b", "s") == b"v"
