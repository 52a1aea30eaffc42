"""How long one storage call holds the event loop, on a 1,000,000-row SQLite file and in memory.

Issue 26 asks that no call hold the loop more than 2 ms. Each call runs beside a ticker, a
coroutine sleeping 1 ms at a time; the ticker's worst lateness while the call runs is how long the
loop was held (the median over ``Settings.repeats`` rounds, each on a repository opened afresh).
The control row is the same ticker while the loop only sleeps 50 ms: the machine's own lateness,
which every other row includes. The writes run on a copy of the file each round.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from animedex_store import AsyncCacheRepository, CacheRepository

from .measure import Result, Settings, median_of

ROWS, QUICK_ROWS = 1_000_000, 100_000
#: The bound the issue sets, in µs.
HELD_BOUND_US = 2_000.0
TICK_SECONDS = 0.001
#: One row in this many is expired (for ``purge_expired``).
EXPIRED_EVERY = 100
_FAR_FUTURE = 4_102_444_800  # 2100-01-01: live whatever the clock says
#: How many keys the calls on many keys name.
MANY_KEYS = 512

Call = Callable[[AsyncCacheRepository, list[str]], Awaitable[Any]]


async def _listed(repository: AsyncCacheRepository, **arguments: Any) -> int:
    return len([key async for key in repository.keys("b", limit=1_000, **arguments)])


READS: dict[str, Call] = {
    "stats": lambda repository, _keys: repository.stats(),
    "count": lambda repository, _keys: repository.count("b"),
    "a page of keys by signature": lambda repository, _keys: _listed(repository),
    "a page of keys by size": lambda repository, _keys: _listed(repository, order_by="size"),
    "get_many of 512 keys": lambda repository, keys: repository.get_many("b", keys),
}
WRITES: dict[str, Call] = {
    "purge_expired": lambda repository, _keys: repository.purge_expired(),
    "delete_many of 512 keys": lambda repository, keys: repository.delete_many("b", keys),
    "clear": lambda repository, _keys: repository.clear("b"),
    "vacuum": lambda repository, _keys: repository.vacuum(),
}


def run(settings: Settings, workdir: Path) -> list[Result]:
    rows = QUICK_ROWS if settings.quick else ROWS
    path = workdir / "loop-held.sqlite"
    build_rows(path, rows)
    keys = [f"k{index:07d}" for index in range(0, rows, rows // MANY_KEYS)][:MANY_KEYS]
    results = [_result("control: the loop only sleeps 50 ms", settings, lambda: asyncio.run(_control()))]
    for where in ("file", "memory"):
        for name, call in {**READS, **WRITES}.items():
            copy = name in WRITES and where == "file"

            def measure(where: str = where, call: Call = call, copy: bool = copy) -> float:
                return asyncio.run(_held(path, workdir, where, call, keys, copy=copy))

            results.append(_result(f"{name}, {rows:,} rows, {where}", settings, measure))
    return results


def _result(label: str, settings: Settings, measure: Callable[[], float]) -> Result:
    held = median_of([measure() for _ in range(settings.repeats)])
    return Result(f"loop held by {label} (µs)", held, "the 2 ms bound", HELD_BOUND_US, 1.0)


def build_rows(path: Path, rows: int) -> None:
    """A SQLite file at ``path``, at head, of ``rows`` rows of 32 bytes in backend ``b`` (signatures
    ``k0000000`` on), one in :data:`EXPIRED_EVERY` expired; its WAL checkpointed, so a copy is whole.
    (``tests/million.py`` builds the tests' file with it.)"""
    CacheRepository(path).close()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN")
        connection.execute(
            "INSERT INTO cache_rows (backend, signature, expires_at, fetched_at, codec, response_headers, payload) "
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "SELECT 'b', printf('k%07d', i), CASE WHEN i % ? = 0 THEN 1 ELSE ? END, 1, 0, '{}', zeroblob(32) FROM n",
            (rows - 1, EXPIRED_EVERY, _FAR_FUTURE),
        )
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all in the file: copies are whole
    finally:
        connection.close()


async def _held(path: Path, workdir: Path, where: str, call: Call, keys: list[str], *, copy: bool) -> float:
    """µs the loop was held by ``call`` on a repository over the rows (the file, a copy, or memory)."""
    if where == "memory":
        repository = await AsyncCacheRepository("sqlite://").open()
        source = sqlite3.connect(path)
        try:
            source.backup(repository._ops.db.blocking.conn)  # type: ignore[union-attr]  # the rows, in memory
        finally:
            source.close()
    else:
        if copy:
            shutil.copyfile(path, workdir / "loop-held-copy.sqlite")
        repository = await AsyncCacheRepository(workdir / "loop-held-copy.sqlite" if copy else path).open()
    try:
        return await worst_lateness(lambda: call(repository, keys)) * 1e6
    finally:
        await repository.close()


async def _control() -> float:
    return await worst_lateness(lambda: asyncio.sleep(0.05)) * 1e6


async def worst_lateness(call: Callable[[], Awaitable[Any]]) -> float:
    """The worst lateness, in seconds, of a coroutine sleeping :data:`TICK_SECONDS` at a time while
    ``call()`` runs: a call that kept the loop ``x`` seconds makes it ``x`` late (``tests/test_loop_held.py``
    holds each call to a bound with it)."""
    done = False
    worst = 0.0

    async def tick() -> None:
        nonlocal worst
        while not done:
            started = time.perf_counter()
            await asyncio.sleep(TICK_SECONDS)
            worst = max(worst, time.perf_counter() - started - TICK_SECONDS)

    ticker = asyncio.ensure_future(tick())
    await asyncio.sleep(TICK_SECONDS)  # ticking
    try:
        await call()
    finally:
        done = True
        await ticker
    return worst
