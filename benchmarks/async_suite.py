"""``AsyncCacheRepository`` on animedex's real responses, against what an async application would do
without it, in one run and one event loop.

* SQLite (a file): our ``await get`` against the sync ``get`` driven through
  ``asyncio.to_thread`` on the same file and against aiosqlite running the same
  ``SELECT``; our ``await set`` against aiosqlite's same upsert and commit.
* PostgreSQL and MariaDB (a sandbox each): one coroutine's ``get`` and ``set``
  against the raw async driver (asyncpg, asyncmy) running the same SQL; 64
  coroutines doing mixed calls (80 % ``get``) on a pool of 16, against the raw
  driver on 16 connections and against the sync repository through
  ``asyncio.to_thread``. Also the raw drivers against each other on our
  statements (psycopg's async mode against asyncpg, aiomysql against asyncmy):
  the measurement behind the default drivers.
* Event-loop lag: how late a 1 ms ticker wakes (p99) while 64 coroutines do the
  mixed calls, on each engine, against the 5 ms bound.

Throughputs are reported as µs of wall time per call (lower is better), so a
ratio of at most 1.25 is "at least 0.8x the throughput". Each side writes rows
of its own (``#ours``, ``#raw``, ...): an upsert that rewrites the very values
the other side just wrote costs MariaDB next to nothing, which would flatter
whichever side comes second.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .measure import Result, Settings, Skipped
from .payloads import real_rows
from .servers import SERVER_URLS

__all__ = ["run"]

TTL = 3_600
ROWS, QUICK_ROWS = 300, 60
#: The mixed workload: this many coroutines share this many calls, a fifth of them sets.
COROUTINES, CALLS, QUICK_CALLS = 64, 2_000, 400
POOL = 16
LAG_BOUND_US = 5_000.0
TICK_SECONDS = 0.001


def run(settings: Settings, workdir: Path) -> list[Result | Skipped]:
    try:
        import aiosqlite  # noqa: F401 - the SQLite baseline
    except ImportError:
        return [Skipped("async suite", "aiosqlite is not installed (the [test] extra)")]
    return asyncio.run(_suite(settings, workdir))


async def _suite(settings: Settings, workdir: Path) -> list[Result | Skipped]:
    rows = real_rows(QUICK_ROWS if settings.quick else ROWS)
    results = await _sqlite(settings, workdir / "async.sqlite", rows)
    from animedex_store.errors import ConnectionFailedError
    from animedex_store.sql.sandbox import sandbox

    for name, url in SERVER_URLS.items():
        try:
            with sandbox(url) as scoped:
                results += await _server(name, scoped, settings, rows)
        except ConnectionFailedError as exc:
            results.append(Skipped(f"{name} async", f"server unreachable: {exc}"))
    return results


async def _alternating(
    calls: dict[str, Callable[[int], Awaitable[object]]], count: int, repeats: int
) -> dict[str, float]:
    """Median µs of single awaited calls, the sides taking turns call by call (as ``alternating_ops``)."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        await call(0)  # warm up
    clock = time.perf_counter_ns
    for _ in range(repeats):
        for index in range(count):
            for name, call in calls.items():
                start = clock()
                await call(index)
                samples[name].append((clock() - start) / 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


async def _mixed(call: Callable[[int, bool], Awaitable[object]], calls: int) -> tuple[float, float]:
    """µs of wall time per call while :data:`COROUTINES` coroutines share ``calls`` calls (one in five
    a set) and a 1 ms ticker runs; returns ``(µs per call, the ticker's p99 lateness in µs)``."""
    order = [(index, index % 5 == 0) for index in range(calls)]
    pending = iter(order)
    lateness: list[float] = []
    busy = True

    async def ticker() -> None:
        while busy:
            start = time.perf_counter()
            await asyncio.sleep(TICK_SECONDS)
            lateness.append((time.perf_counter() - start - TICK_SECONDS) * 1e6)

    async def worker() -> None:
        for index, is_set in pending:
            await call(index, is_set)

    ticking = asyncio.ensure_future(ticker())
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(COROUTINES)))
    elapsed = time.perf_counter() - start
    busy = False
    await ticking
    lateness.sort()
    return elapsed * 1e6 / calls, lateness[int(len(lateness) * 0.99)] if lateness else 0.0


async def _mixed_rounds(
    sides: dict[str, Callable[[int, bool], Awaitable[object]]], calls: int, repeats: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median µs per call and median p99 lag of each side, alternating round by round."""
    per_call: dict[str, list[float]] = {name: [] for name in sides}
    lags: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(max(3, repeats // 3)):
        for name, call in sides.items():
            cost, lag = await _mixed(call, calls)
            per_call[name].append(cost)
            lags[name].append(lag)
    return (
        {name: statistics.median(values) for name, values in per_call.items()},
        {name: statistics.median(values) for name, values in lags.items()},
    )


# -- SQLite ---------------------------------------------------------------------------------------


async def _sqlite(settings: Settings, path: Path, rows: list[Any]) -> list[Result | Skipped]:
    import aiosqlite

    from animedex_store import AsyncCacheRepository, CacheRepository
    from animedex_store.fastpath import statements as sql

    sync = CacheRepository(path)
    sync.set_many("warm", {"k": b"v"}, ttl_seconds=TTL)  # creates and migrates the file
    keys = [(row.backend, row.signature) for row in rows]
    for row in rows:
        sync.set(row.backend, row.signature, row.payload, ttl_seconds=TTL)
    raw = await aiosqlite.connect(path)
    await raw.execute("PRAGMA synchronous = NORMAL")
    try:
        async with AsyncCacheRepository(path) as ours:

            async def raw_get(index: int) -> bytes | None:
                async with raw.execute(sql.get.sql, keys[index % len(keys)]) as cursor:
                    row = await cursor.fetchone()
                return None if row is None or row[1] <= time.time() else row[0]

            async def raw_set(index: int) -> None:
                row, now = rows[index % len(rows)], int(time.time())
                values = (row.backend, f"{row.signature}#raw", now + TTL, now, 0, b"{}", row.payload)
                await raw.execute(sql.upsert.sql, values)
                await raw.commit()

            count = len(rows)
            gets = await _alternating(
                {
                    "ours": lambda index: ours.get(*keys[index % count]),
                    "thread": lambda index: asyncio.to_thread(sync.get, *keys[index % count]),
                    "aiosqlite": raw_get,
                },
                count,
                settings.repeats,
            )
            sets = await _alternating(
                {
                    "ours": lambda index: ours.set(
                        rows[index % count].backend,
                        f"{rows[index % count].signature}#ours",
                        rows[index % count].payload,
                        ttl_seconds=TTL,
                    ),
                    "aiosqlite": raw_set,
                },
                count,
                settings.repeats,
            )

            async def mixed(index: int, is_set: bool) -> object:
                row = rows[index % count]
                if is_set:
                    return await ours.set(row.backend, f"{row.signature}#ours", row.payload, ttl_seconds=TTL)
                return await ours.get(row.backend, row.signature)

            async def raw_mixed(index: int, is_set: bool) -> object:
                return await (raw_set(index) if is_set else raw_get(index))

            calls = QUICK_CALLS if settings.quick else CALLS
            mixed_costs, lags = await _mixed_rounds({"ours": mixed, "aiosqlite": raw_mixed}, calls, settings.repeats)
    finally:
        await raw.close()
        sync.close()
    label = f"{len(rows)} real responses"
    return [
        Result(f"SQLite await get, {label}", gets["ours"], "sync get via asyncio.to_thread", gets["thread"], 0.5),
        Result(f"SQLite await get, {label}", gets["ours"], "aiosqlite, same SELECT", gets["aiosqlite"], 1.0),
        Result(f"SQLite await set, {label}", sets["ours"], "aiosqlite, same upsert + commit", sets["aiosqlite"], 1.0),
        Result(
            f"SQLite {COROUTINES} coroutines, mixed calls, wall µs per call",
            mixed_costs["ours"],
            "aiosqlite, the same calls",
            mixed_costs["aiosqlite"],
        ),
        *_lag_rows("SQLite", lags, "aiosqlite"),
    ]


def _lag_rows(name: str, lags: dict[str, float], baseline: str) -> list[Result]:
    """The ticker's p99 lateness under the mixed calls: against the bound, and against ``baseline``'s."""
    label = f"{name} event-loop lag p99 (µs), {COROUTINES} coroutines of mixed calls"
    return [
        Result(label, lags["ours"], "the 5 ms bound", LAG_BOUND_US, 1.0),
        Result(label, lags["ours"], f"{baseline} doing the same calls", lags[baseline]),
    ]


# -- servers --------------------------------------------------------------------------------------


async def _server(name: str, url: str, settings: Settings, rows: list[Any]) -> list[Result | Skipped]:
    from sqlalchemy.engine import make_url

    from animedex_store import AsyncCacheRepository, CacheRepository
    from animedex_store.sql.async_drivers import driver_for

    sync = CacheRepository(url)  # migrates the sandbox
    for row in rows:
        sync.set(row.backend, row.signature, row.payload, ttl_seconds=TTL)
    driver = driver_for(make_url(url))
    raw_pool: asyncio.Queue[Any] = asyncio.Queue()
    for _ in range(POOL):
        raw_pool.put_nowait(await driver.connect())
    count = len(rows)
    keys = [(row.backend, row.signature) for row in rows]
    try:
        async with AsyncCacheRepository(url, max_connections=POOL) as ours:
            sql = ours._ops.sql  # type: ignore[union-attr]  # the baseline runs exactly these statements

            async def raw(index: int, is_set: bool) -> object:
                connection = await raw_pool.get()
                try:
                    row = rows[index % count]
                    if is_set:
                        now = int(time.time())
                        values = (row.backend, f"{row.signature}#raw", now + TTL, now, 0, b"{}", row.payload)
                        return await driver.run(connection, "count", sql.upsert, values)
                    found = await driver.run(connection, "one", sql.get, (row.backend, row.signature))
                    return None if found is None or found[1] <= time.time() else found[0]
                finally:
                    raw_pool.put_nowait(connection)

            async def mine(index: int, is_set: bool) -> object:
                row = rows[index % count]
                if is_set:
                    return await ours.set(row.backend, f"{row.signature}#ours", row.payload, ttl_seconds=TTL)
                return await ours.get(row.backend, row.signature)

            async def threaded(index: int, is_set: bool) -> object:
                row = rows[index % count]
                if is_set:
                    signature = f"{row.signature}#thread"
                    return await asyncio.to_thread(sync.set, row.backend, signature, row.payload, ttl_seconds=TTL)
                return await asyncio.to_thread(sync.get, row.backend, row.signature)

            gets = await _alternating(
                {"ours": lambda index: mine(index, False), "raw": lambda index: raw(index, False)},
                max(1, count // 2),
                settings.repeats,
            )
            sets = await _alternating(
                {"ours": lambda index: mine(index, True), "raw": lambda index: raw(index, True)},
                max(1, count // 4),
                settings.repeats,
            )
            calls = QUICK_CALLS if settings.quick else CALLS
            mixed, lags = await _mixed_rounds({"ours": mine, "raw": raw, "threaded": threaded}, calls, settings.repeats)
            drivers = await _driver_choice(name, url, sql, keys, settings)
    finally:
        while not raw_pool.empty():
            driver.discard(raw_pool.get_nowait())
        sync.close()
    raw_name = f"raw {type(driver).__name__.replace('Driver', '').lower()}"
    return [
        Result(f"{name} await get, real responses", gets["ours"], f"{raw_name}, same SQL", gets["raw"], 1.3),
        Result(f"{name} await set, real responses", sets["ours"], f"{raw_name}, same SQL", sets["raw"], 1.3),
        Result(
            f"{name} {COROUTINES} coroutines, mixed calls, wall µs per call",
            mixed["ours"],
            f"{raw_name} on {POOL} connections",
            mixed["raw"],
            1.25,
        ),
        Result(
            f"{name} {COROUTINES} coroutines, mixed calls, wall µs per call",
            mixed["ours"],
            "sync repository via asyncio.to_thread",
            mixed["threaded"],
            round(1 / 1.5, 3),
        ),
        *_lag_rows(name, lags, "raw"),
        *drivers,
    ]


async def _driver_choice(
    name: str, url: str, sql: Any, keys: list[tuple[str, str]], settings: Settings
) -> list[Result]:
    """The default driver against the other async driver of its database, raw, on our statements
    (``get`` of the real responses), each in autocommit."""
    from sqlalchemy.engine import make_url

    from animedex_store.sql.statements import Statements

    parsed = make_url(url)
    count = max(1, len(keys) // 2)
    if parsed.get_backend_name() == "postgresql":
        import asyncpg
        import psycopg
        from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect

        from animedex_store.sql.async_drivers import driver_for

        fast = await driver_for(parsed).connect()
        dialect = psycopg_dialect.dialect()
        _args, connect = dialect.create_connect_args(parsed)  # as SQLAlchemy would connect
        slow = await psycopg.AsyncConnection.connect(**connect, autocommit=True)
        psycopg_get = Statements(dialect).get

        async def default_get(index: int) -> object:
            return await fast.fetchrow(sql.get.sql, *keys[index % len(keys)])

        async def other_get(index: int) -> object:
            async with slow.cursor() as cursor:
                await cursor.execute(psycopg_get.sql, psycopg_get.bind(keys[index % len(keys)]))
                return await cursor.fetchone()

        names = ("asyncpg", "psycopg async")

        async def close() -> None:
            await fast.close()
            await slow.close()

        assert isinstance(fast, asyncpg.Connection)
    else:
        try:
            import aiomysql
        except ImportError:
            return []
        import asyncmy

        connect = {
            "host": parsed.host,
            "port": parsed.port or 3306,
            "user": parsed.username,
            "password": parsed.password or "",
        }
        fast = await asyncmy.connect(**connect, database=parsed.database, autocommit=True)
        slow = await aiomysql.connect(**connect, db=parsed.database, autocommit=True)

        async def default_get(index: int) -> object:
            async with fast.cursor() as cursor:
                await cursor.execute(sql.get.sql, keys[index % len(keys)])
                return await cursor.fetchone()

        async def other_get(index: int) -> object:
            async with slow.cursor() as cursor:
                await cursor.execute(sql.get.sql, keys[index % len(keys)])
                return await cursor.fetchone()

        names = ("asyncmy", "aiomysql")

        async def close() -> None:
            await fast.ensure_closed()
            slow.close()

    try:
        gets = await _alternating({"default": default_get, "other": other_get}, count, settings.repeats)
    finally:
        await close()
    return [Result(f"{name} raw get, our SQL: driver choice", gets["default"], f"raw {names[1]}", gets["other"])]
