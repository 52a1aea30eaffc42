"""``set_many``/``get_many`` of 1,000 rows against 1,000 single calls, per row, on a SQLite file;
and ``set_many`` against one raw ``executemany`` of the same upsert in one transaction."""

from __future__ import annotations

import time
from pathlib import Path

from animedex_store import CacheRepository
from animedex_store.fastpath import statements as sqlite_statements
from animedex_store.fastpath.sqlite_file import connect

from .hot_path import BACKEND, PAYLOAD
from .measure import Result, Settings, interleaved
from .seed_baseline import SeedCache

__all__ = ["run", "ROWS"]

ROWS = 1_000
TTL = 3_600
#: The target: a batch costs at most a tenth of single calls, per row.
BATCH_TARGET = 0.1
#: The target: set_many within 1.2x of the raw driver doing the same.
RAW_TARGET = 1.2


def run(settings: Settings, workdir: Path) -> list[Result]:
    ours = CacheRepository(workdir / "batch-ours.sqlite")
    seed = SeedCache(workdir / "batch-seed.sqlite")
    CacheRepository(workdir / "batch-raw.sqlite").close()  # our schema, in WAL, for the raw driver
    raw = connect(workdir / "batch-raw.sqlite", timeout=30, create=False)
    items = {f"query:Page:page={number}": PAYLOAD for number in range(ROWS)}
    keys = list(items)
    try:

        def raw_executemany() -> None:
            # What set_many does, by hand: rows built from the mapping, one upsert executemany, one transaction.
            now = int(time.time())
            rows = [(BACKEND, key, now + TTL, now, 0, b"{}", payload) for key, payload in items.items()]
            raw.execute("BEGIN IMMEDIATE")
            raw.executemany(sqlite_statements.upsert.sql, rows)
            raw.execute("COMMIT")

        def ours_set_single() -> None:
            for key in keys:
                ours.set(BACKEND, key, PAYLOAD, ttl_seconds=TTL)

        def seed_set_single() -> None:
            for key in keys:
                seed.set(BACKEND, key, PAYLOAD, ttl_seconds=TTL)

        def ours_get_single() -> None:
            for key in keys:
                ours.get(BACKEND, key)

        def seed_get_single() -> None:
            for key in keys:
                seed.get(BACKEND, key)

        writes = interleaved(
            {
                "batch": lambda: ours.set_many(BACKEND, items, ttl_seconds=TTL),
                "single": ours_set_single,
                "seed": seed_set_single,
                "raw": raw_executemany,
            },
            ROWS,
            settings.repeats,
        )
        reads = interleaved(
            {"batch": lambda: ours.get_many(BACKEND, keys), "single": ours_get_single, "seed": seed_get_single},
            ROWS,
            settings.repeats,
        )
        if len(ours.get_many(BACKEND, keys)) != ROWS:
            raise RuntimeError("get_many did not find every row set_many wrote")
        return [
            Result(
                f"set_many ({ROWS} rows), per row", writes["batch"], "our set x1000", writes["single"], BATCH_TARGET
            ),
            Result(f"set_many ({ROWS} rows), per row", writes["batch"], "seed set x1000", writes["seed"]),
            Result(
                f"set_many ({ROWS} rows), per row",
                writes["batch"],
                "raw sqlite3 executemany",
                writes["raw"],
                RAW_TARGET,
            ),
            Result(f"get_many ({ROWS} rows), per row", reads["batch"], "our get x1000", reads["single"], BATCH_TARGET),
            Result(f"get_many ({ROWS} rows), per row", reads["batch"], "seed get x1000", reads["seed"]),
        ]
    finally:
        ours.close()
        seed.close()
        raw.close()
