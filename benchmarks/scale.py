"""``purge_expired`` and ``get`` as the table grows, on SQLite files built for the run.

Each size gets two files holding the same rows: one migrated by us (with the
``expires_at`` index of revision 0003) and one with the seed's schema, which
has none. Rows are bulk-loaded with ``executemany`` in one transaction; 1 % of
them, every 100th key (as in a real cache, where what expires is spread over
the key space), are expired.

* ``get``: random live keys over the whole table, ours at each size against
  the smallest size, and against the seed at the largest.
* ``purge_expired`` at the largest size: ours against the seed's query on the
  seed's schema, and against deleting the same rows by primary key in one
  transaction (the floor: what deleting them costs however they are found).
  The expired rows are put back, untimed, between rounds.

Payloads are 256 bytes unless ``--scale-payload`` says otherwise: a million
2 KiB rows make two 4.7 GB files that take minutes to build.
"""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import time
from contextlib import closing
from functools import partial
from pathlib import Path

from animedex_store import CacheRepository

from .measure import Result, Settings, interleaved, per_op_us
from .seed_baseline import SeedCache

__all__ = ["run"]

EXPIRED_EVERY = 100  # 1 % expired
PURGE_TARGET = 1 / 20  # the target: at least 20x faster than the seed's query
GET_FLAT_TARGET = 1.5  # get at any size within 1.5x of the smallest
_INSERT = (
    "INSERT INTO cache_rows (backend, signature, payload, expires_at, response_headers, fetched_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_DELETE_BY_KEY = "DELETE FROM cache_rows WHERE backend = ? AND signature = ?"


def _rows(size: int, now: int, payload: bytes) -> tuple[list[tuple], list[tuple]]:
    """``size`` rows as (live, expired)."""
    live, expired = [], []
    for number in range(size):
        is_expired = number % EXPIRED_EVERY == 0
        expires_at = now - 60 if is_expired else now + 86_400
        (expired if is_expired else live).append(
            ("anilist", f"query:Media:id={number:08d}", payload, expires_at, b"{}", now)
        )
    return live, expired


def _load(connection: sqlite3.Connection, statement: str, rows: list[tuple]) -> float:
    """Run ``statement`` for every row in one write transaction; µs taken."""
    start = time.perf_counter_ns()
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany(statement, rows)
    connection.execute("COMMIT")
    return (time.perf_counter_ns() - start) / 1000


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def _build(path: Path, opener: type[CacheRepository] | type[SeedCache], rows: list[tuple]) -> None:
    opener(path).close()  # our migrations, or the seed's DDL
    with closing(_raw(path)) as connection:
        _load(connection, _INSERT, rows)


def _rows_label(size: int, settings: Settings) -> str:
    return f"{size:,} rows of {settings.scale_payload:,} B"


def _get_each(cache: CacheRepository | SeedCache, keys: list[str]) -> None:
    for key in keys:
        cache.get("anilist", key)


def _purge(cache: CacheRepository | SeedCache, expected: int) -> float:
    start = time.perf_counter_ns()
    removed = cache.purge_expired()
    elapsed = (time.perf_counter_ns() - start) / 1000
    if removed != expected:
        raise RuntimeError(f"purge_expired removed {removed} rows, expected {expected}")
    return elapsed


def _purges(
    ours: CacheRepository, ours_path: Path, seed: SeedCache, seed_path: Path, expired: list[tuple], repeats: int
):
    """Median µs of ours, the seed's and the by-key floor, alternating, restoring the rows each time."""
    samples: dict[str, list[float]] = {"ours": [], "seed": [], "floor": []}
    keys = [row[:2] for row in expired]
    with closing(_raw(ours_path)) as ours_raw, closing(_raw(seed_path)) as seed_raw:
        for _ in range(repeats):
            samples["seed"].append(_purge(seed, len(expired)))
            _load(seed_raw, _INSERT, expired)
            samples["ours"].append(_purge(ours, len(expired)))
            _load(ours_raw, _INSERT, expired)
            samples["floor"].append(_load(ours_raw, _DELETE_BY_KEY, keys))
            _load(ours_raw, _INSERT, expired)
    return {name: statistics.median(times) for name, times in samples.items()}


def _against_seed(
    ours: CacheRepository, ours_path: Path, live: list[tuple], expired: list[tuple], keys: list[str], settings: Settings
) -> tuple[float, list[Result]]:
    """At the largest size: get and purge, ours against the seed on a seed-schema copy of the rows."""
    seed_path = ours_path.with_name(ours_path.name.replace("ours", "seed"))
    _build(seed_path, SeedCache, live + expired)
    seed = SeedCache(seed_path)
    try:
        runs = {"ours": partial(_get_each, ours, keys), "seed": partial(_get_each, seed, keys)}
        gets = interleaved(runs, settings.ops, settings.repeats)
        purge = _purges(ours, ours_path, seed, seed_path, expired, max(3, settings.repeats // 3))
    finally:
        seed.close()
    label = f"purge_expired ({_rows_label(len(live) + len(expired), settings)}, {len(expired):,} expired)"
    return gets["ours"], [
        Result(
            f"get hit, {_rows_label(len(live) + len(expired), settings)}", gets["ours"], "seed, same rows", gets["seed"]
        ),
        Result(label, purge["ours"], "seed query on seed schema", purge["seed"], PURGE_TARGET),
        Result(label, purge["ours"], "delete same rows by key", purge["floor"]),
    ]


def run(settings: Settings, workdir: Path) -> list[Result]:
    now = int(time.time())
    smallest, largest = min(settings.scale_sizes), max(settings.scale_sizes)
    get_us: dict[int, float] = {}
    seed_results: list[Result] = []
    for size in settings.scale_sizes:
        live, expired = _rows(size, now, os.urandom(settings.scale_payload))
        ours_path = workdir / f"scale-{size}-ours.sqlite"
        _build(ours_path, CacheRepository, live + expired)
        with CacheRepository(ours_path) as ours:
            keys = [row[1] for row in random.Random(size).choices(live, k=settings.ops)]
            if size == largest:
                get_us[size], seed_results = _against_seed(ours, ours_path, live, expired, keys, settings)
            else:
                get_us[size] = per_op_us(partial(_get_each, ours, keys), settings.ops, settings.repeats)
    flatness = [
        Result(
            f"get hit, {_rows_label(size, settings)}",
            get_us[size],
            f"at {smallest:,} rows",
            get_us[smallest],
            GET_FLAT_TARGET,
        )
        for size in settings.scale_sizes
        if size != smallest
    ]
    return flatness + seed_results
