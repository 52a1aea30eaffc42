"""animedex's real responses (``benchmarks/data``) on SQLite: the seed's module against ours, plain,
zlib and zstd, in one run; and the floor, one raw ``SELECT`` on a plain rowid table, payload last.

Every file holds the same rows: the 300 recorded responses cycled to :data:`ROWS` rows (a
distinct signature each), written with their real headers. Per row: ``get`` (hits, in a
random order), ``set`` (overwriting every row with its own payload), and ``set_many`` of
the whole sample against one raw ``executemany`` of the seed's own upsert in one
transaction into the seed's own table; then the size of each file (checkpointed, so the
write-ahead log is empty).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from animedex_store import CacheRepository

from .measure import Result, Settings, interleaved
from .payloads import RealPayload, real_rows
from .seed_baseline import SeedCache

__all__ = ["run", "ROWS", "QUICK_ROWS", "SEED"]

ROWS = 1_024
QUICK_ROWS = 300
TTL = 3_600
SEED = "seed module (raw sqlite3)"
#: The targets of README "Storage format and compression", against the seed's module on the same rows.
TARGETS = {"get": 0.5, "set": 0.5, "set_many": 1.2, "plain file": 1.05, "zstd file": 0.30, "zstd get": 1.5}
VARIANTS = {"plain": None, "zlib": "zlib", "zstd": "zstd"}
_FLOOR_DDL = (
    "CREATE TABLE floor (backend TEXT NOT NULL, signature TEXT NOT NULL, expires_at INTEGER NOT NULL, "
    "payload BLOB NOT NULL, PRIMARY KEY (backend, signature))"
)
_SEED_UPSERT = (
    "INSERT OR REPLACE INTO cache_rows (backend, signature, payload, expires_at, response_headers, fetched_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def _file_bytes(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return path.stat().st_size


def _loop(call: Callable[[RealPayload], object], rows: list[RealPayload]) -> Callable[[], None]:
    def run() -> None:
        for row in rows:
            call(row)

    return run


def run(settings: Settings, workdir: Path) -> list[Result]:
    rows = real_rows(QUICK_ROWS if settings.quick else ROWS)
    reads = random.Random(12).sample(rows, len(rows))
    by_backend: dict[str, dict[str, bytes]] = {}
    for row in rows:
        by_backend.setdefault(row.backend, {})[row.signature] = row.payload
    seed = SeedCache(workdir / "seed.sqlite")
    ours = {name: CacheRepository(workdir / f"ours-{name}.sqlite", compression=c) for name, c in VARIANTS.items()}
    floor = sqlite3.connect(workdir / "floor.sqlite", isolation_level=None)
    raw = sqlite3.connect(workdir / "raw-seed.sqlite", isolation_level=None)
    try:
        floor.execute("PRAGMA journal_mode = WAL")
        floor.execute(_FLOOR_DDL)
        floor.executemany(
            "INSERT INTO floor VALUES (?, ?, ?, ?)", [(r.backend, r.signature, 4102444800, r.payload) for r in rows]
        )
        SeedCache(workdir / "raw-seed.sqlite").close()  # the seed's own table, for the raw executemany
        caches: dict[str, SeedCache | CacheRepository] = {"seed": seed, **ours}
        for cache in caches.values():
            for row in rows:
                cache.set_with_meta(
                    row.backend, row.signature, row.payload, response_headers=row.headers, ttl_seconds=TTL
                )

        def floor_get(row: RealPayload) -> object:
            return floor.execute(
                "SELECT payload FROM floor WHERE backend = ? AND signature = ?", (row.backend, row.signature)
            ).fetchone()

        gets = interleaved(
            {
                **{
                    name: _loop(lambda row, c=cache: c.get(row.backend, row.signature), reads)
                    for name, cache in caches.items()
                },
                "floor": _loop(floor_get, reads),
            },
            len(reads),
            settings.repeats,
        )
        sets = interleaved(
            {
                name: _loop(lambda row, c=cache: c.set(row.backend, row.signature, row.payload, ttl_seconds=TTL), rows)
                for name, cache in caches.items()
            },
            len(rows),
            settings.repeats,
        )

        def raw_executemany() -> None:
            now = int(time.time())
            raw.execute("BEGIN IMMEDIATE")
            raw.executemany(_SEED_UPSERT, [(r.backend, r.signature, r.payload, now + TTL, b"{}", now) for r in rows])
            raw.execute("COMMIT")

        def set_many(cache: CacheRepository) -> Callable[[], None]:
            def write() -> None:
                for backend, items in by_backend.items():
                    cache.set_many(backend, items, ttl_seconds=TTL)

            return write

        batches = interleaved(
            {**{name: set_many(cache) for name, cache in ours.items()}, "raw": raw_executemany},
            len(rows),
            settings.repeats,
        )
    finally:
        for cache in (seed, *ours.values()):
            cache.close()
        floor.close()
        raw.close()
    sizes = {name: _file_bytes(workdir / f"{name}.sqlite") / 1024 for name in ("seed", *(f"ours-{n}" for n in ours))}

    label = f"{len(rows)} real responses"
    results = [
        Result(f"get hit, {label}, {name}", gets[name], SEED, gets["seed"], _target("get", name)) for name in ours
    ]
    results.append(Result(f"get hit, {label}, plain", gets["plain"], "one raw SELECT, rowid table", gets["floor"]))
    results += [Result(f"set, {label}, {name}", sets[name], SEED, sets["seed"], _target("set", name)) for name in ours]
    results += [
        Result(
            f"set_many of the {label}, per row, {name}",
            batches[name],
            "raw executemany into the seed's table",
            batches["raw"],
            TARGETS["set_many"] if name == "plain" else None,
        )
        for name in ours
    ]
    results += [
        Result(f"file size, {label}, {name} (KiB)", sizes[f"ours-{name}"], SEED, sizes["seed"], _target("file", name))
        for name in ours
    ]
    return results


def _target(what: str, variant: str) -> float | None:
    """The issue's bar for ``what`` in ``variant``: the plain rows for speed, zstd for size and its get."""
    if what == "file":
        return TARGETS.get(f"{variant} file")
    if variant == "zstd" and what == "get":
        return TARGETS["zstd get"]
    return TARGETS[what] if variant == "plain" else None
