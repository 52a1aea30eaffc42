"""``kill -9`` at random moments: the file stays sound and nothing acknowledged is lost.

A writer appends each key to an ack file only after ``set`` returned; after
every kill the file must pass ``PRAGMA integrity_check`` and hold every
acknowledged write (or the one write in flight after it). A migration of a
seed v1 file killed at every statement boundary, and at random moments, leaves
either the old schema or the new one, with every row.
"""

from __future__ import annotations

import random
import shutil
import signal
import time
from pathlib import Path

import pytest
from alembic_runner import revisions
from dbfiles import rows, schema
from legacy import SeedState, write_seed_file
from platforms import needs_sigkill
from reliability import (
    JOIN_TIMEOUT_SECONDS,
    SCALE,
    context,
    crash_writer,
    headers_for,
    integrity,
    open_and_die_at,
    payload_for,
    read_acknowledged,
    record,
)

from animedex_store import CacheRepository
from animedex_store.fastpath.sqlite_file import remove_sqlite_file
from animedex_store.migrations.revisions import HEAD_REVISION

pytestmark = [pytest.mark.slow, needs_sigkill]

#: Longest a writer runs before its kill; a fifth of the rounds kill it while it opens.
MAX_KILL_DELAY_SECONDS = 0.3


def test_kill_9_of_a_writer_loses_no_acknowledged_write(tmp_path: Path) -> None:
    path, ack = tmp_path / "crash.sqlite", tmp_path / "ack.txt"
    ctx, rng = context(), random.Random(6)
    killed_mid_open = 0
    for round_number in range(SCALE.kills):
        ready = ctx.Event()
        writer = ctx.Process(target=crash_writer, args=(str(path), str(ack), round_number, ready))
        writer.start()
        if round_number % 5 == 4:
            killed_mid_open += 1
        else:
            assert ready.wait(JOIN_TIMEOUT_SECONDS), "the writer never opened the repository"
        writer.join(rng.uniform(0, MAX_KILL_DELAY_SECONDS))
        assert writer.is_alive(), f"the writer died on its own (exit code {writer.exitcode})"
        writer.kill()
        writer.join(JOIN_TIMEOUT_SECONDS)
        assert writer.exitcode == -signal.SIGKILL
        assert integrity(path) == ["ok"], f"after kill {round_number + 1}"

    acknowledged = read_acknowledged(ack)
    assert len(acknowledged) > SCALE.kills  # the writers really wrote
    lost = []
    with CacheRepository(path) as repository:
        for key, version in acknowledged.items():
            found = repository.get_with_meta("crash", key)
            # The last acknowledged version, or the next one if it committed before its ack.
            if found is None or found.payload not in (payload_for(key, version), payload_for(key, version + 1)):
                lost.append(key)
            elif found.headers not in ({}, headers_for(key)):
                lost.append(key)
    assert lost == []
    record(
        "kill_9_writer", kills=SCALE.kills, killed_while_opening=killed_mid_open, acknowledged_keys=len(acknowledged)
    )


@pytest.fixture(scope="module")
def seed_v1_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple]]:
    """A seed v1 file of :attr:`Scale.migration_rows` rows, and its rows as read before any migration."""
    path = tmp_path_factory.mktemp("seed") / "seed-v1.sqlite"
    write_seed_file(path, SeedState.V1, rows=SCALE.migration_rows)
    return path, rows(path)


def _kill_mid_migration(seed: Path, work: Path, kill_at: int | None, delay: float = 0.0) -> int:
    """Copy ``seed`` to ``work`` and open it in a child killed at event ``kill_at``, or after
    ``delay`` seconds when ``kill_at`` is None. Returns the child's exit code."""
    remove_sqlite_file(work)
    shutil.copyfile(seed, work)
    child = context().Process(target=open_and_die_at, args=(str(work), kill_at or 0))
    child.start()
    child.join(JOIN_TIMEOUT_SECONDS if kill_at else delay)
    if child.is_alive():
        child.kill()
        child.join(JOIN_TIMEOUT_SECONDS)
    return child.exitcode


def _assert_old_or_new_with_every_row(work: Path, before: list[tuple]) -> str:
    """The file is sound, in the seed's schema or at head, with every row; returns which."""
    assert integrity(work) == ["ok"]
    snapshot = schema(work)
    if snapshot.alembic_versions:
        assert snapshot.alembic_versions == (HEAD_REVISION,)
        state = "new"
    else:
        assert set(snapshot.tables) == {"cache_rows"}  # the seed v1 file as it was
        state = "old"
    assert rows(work) == before
    return state


def test_kill_9_at_every_step_of_a_migration_leaves_old_or_new_schema_with_every_row(
    seed_v1_file: tuple[Path, list[tuple]], tmp_path: Path
) -> None:
    seed, before = seed_v1_file
    work = tmp_path / "migrating.sqlite"
    states: dict[str, int] = {"old": 0, "new": 0}
    kill_at = 0
    while True:
        kill_at += 1
        assert kill_at < 500, "the open never finished"
        exit_code = _kill_mid_migration(seed, work, kill_at)
        if exit_code == 0:
            break  # past the last statement: the open completed
        assert exit_code == -signal.SIGKILL
        states[_assert_old_or_new_with_every_row(work, before)] += 1
        CacheRepository(work).close()  # and the next open finishes the job
        assert schema(work).alembic_versions == (HEAD_REVISION,)
        assert rows(work) == before
    assert _assert_old_or_new_with_every_row(work, before) == "new"
    assert states["old"] > 0
    record(
        "kill_9_during_migration",
        seed_rows=len(before),
        statement_kills=kill_at - 1,
        left_old_schema=states["old"],
        left_new_schema=states["new"],
        revisions=revisions(),
    )


def test_kill_9_at_random_moments_of_a_migration(seed_v1_file: tuple[Path, list[tuple]], tmp_path: Path) -> None:
    seed, before = seed_v1_file
    work = tmp_path / "migrating.sqlite"
    started = time.perf_counter()
    assert _kill_mid_migration(seed, work, kill_at=None, delay=JOIN_TIMEOUT_SECONDS) == 0
    open_seconds = time.perf_counter() - started  # how long a whole open takes here, to aim the kills
    rng = random.Random(66)
    states: dict[str, int] = {"old": 0, "new": 0}
    for _ in range(SCALE.migration_random_kills):
        _kill_mid_migration(seed, work, kill_at=None, delay=rng.uniform(0, open_seconds))
        states[_assert_old_or_new_with_every_row(work, before)] += 1
    record("kill_9_random_during_migration", seed_rows=len(before), kills=SCALE.migration_random_kills, **states)
