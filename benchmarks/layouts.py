"""Why revision 0005's SQLite layout: the candidate tables on animedex's real responses, raw ``sqlite3``.

Each candidate holds the same rows (the recorded responses cycled to
:data:`~benchmarks.real_payloads.ROWS`, real headers, the ``expires_at`` index)
and is timed in the same run against the seed's own table: ``get`` (payload and
``expires_at`` by key, random order), an ``expires_at``-only lookup (a miss
check, or an overwrite reading the old expiry), an upsert overwriting a row,
and the file size. Layout ``rowid, small columns first`` is what 0005 builds.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

from .measure import Result, Settings, interleaved
from .payloads import real_rows
from .real_payloads import QUICK_ROWS, ROWS
from .seed_baseline import SEED_ALTERS, SEED_SCHEMA_V1

__all__ = ["run", "LAYOUTS"]

_KEY = "backend TEXT NOT NULL, signature TEXT NOT NULL"
_CODEC = "codec INTEGER NOT NULL DEFAULT 0"
#: Candidate ``cache_rows`` tables, each with a ``codec`` column, by name.
LAYOUTS = {
    "WITHOUT ROWID, seed's column order": f"CREATE TABLE cache_rows ({_KEY}, payload BLOB NOT NULL, expires_at "
    f"INTEGER NOT NULL, response_headers BLOB, fetched_at INTEGER, {_CODEC}, PRIMARY KEY (backend, signature)) "
    "WITHOUT ROWID",
    "WITHOUT ROWID, small columns first": f"CREATE TABLE cache_rows ({_KEY}, expires_at INTEGER NOT NULL, fetched_at "
    f"INTEGER, {_CODEC}, response_headers BLOB, payload BLOB NOT NULL, PRIMARY KEY (backend, signature)) WITHOUT ROWID",
    "rowid, seed's column order": f"CREATE TABLE cache_rows ({_KEY}, payload BLOB NOT NULL, expires_at INTEGER NOT "
    f"NULL, response_headers BLOB, fetched_at INTEGER, {_CODEC}, PRIMARY KEY (backend, signature))",
    "rowid, small columns first (0005)": f"CREATE TABLE cache_rows ({_KEY}, expires_at INTEGER NOT NULL, fetched_at "
    f"INTEGER, {_CODEC}, response_headers BLOB, payload BLOB NOT NULL, PRIMARY KEY (backend, signature))",
}
SEED_TABLE = "the seed's own table"
_INDEX = "CREATE INDEX ix_cache_rows_expires_at ON cache_rows (expires_at)"
_COLUMNS = "backend, signature, payload, expires_at, response_headers, fetched_at"
_UPSERT = (
    f"INSERT INTO cache_rows ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (backend, signature) DO UPDATE SET "
    "payload = excluded.payload, expires_at = excluded.expires_at, response_headers = excluded.response_headers, "
    "fetched_at = excluded.fetched_at"
)
_GET = "SELECT payload, expires_at FROM cache_rows WHERE backend = ? AND signature = ?"
_EXPIRY = "SELECT expires_at FROM cache_rows WHERE backend = ? AND signature = ?"


def _open(path: Path, ddl: list[str]) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    for statement in ddl:
        connection.execute(statement)
    return connection


def run(settings: Settings, workdir: Path) -> list[Result]:
    rows = [
        (row.backend, row.signature, row.payload, 4102444800, row.headers_blob, 1_800_000_000)
        for row in real_rows(QUICK_ROWS if settings.quick else ROWS)
    ]
    keys = random.Random(12).sample([row[:2] for row in rows], len(rows))
    tables = {"seed": [SEED_SCHEMA_V1, *SEED_ALTERS, _INDEX], **{name: [ddl, _INDEX] for name, ddl in LAYOUTS.items()}}
    connections = {
        name: _open(workdir / f"layout-{index}.sqlite", ddl) for index, (name, ddl) in enumerate(tables.items())
    }
    try:
        for connection in connections.values():
            connection.execute("BEGIN")
            connection.executemany(_UPSERT, rows)
            connection.execute("COMMIT")

        def each(sql: str, values: list[tuple[object, ...]]) -> dict[str, Callable[[], None]]:
            def loop(connection: sqlite3.Connection) -> Callable[[], None]:
                def run_all() -> None:
                    for value in values:
                        connection.execute(sql, value).fetchall()

                return run_all

            return {name: loop(connection) for name, connection in connections.items()}

        timings = {
            "get hit": interleaved(each(_GET, keys), len(keys), settings.repeats),
            "expires_at-only lookup": interleaved(each(_EXPIRY, keys), len(keys), settings.repeats),
            "upsert overwriting a row": interleaved(each(_UPSERT, rows), len(rows), settings.repeats),
        }
        for connection in connections.values():
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        for connection in connections.values():
            connection.close()
    sizes = {name: (workdir / f"layout-{index}.sqlite").stat().st_size / 1024 for index, name in enumerate(tables)}
    label = f"{len(rows)} real responses"
    results = [
        Result(f"layout {name}: {what}, {label}", times[name], SEED_TABLE, times["seed"])
        for what, times in timings.items()
        for name in LAYOUTS
    ]
    results += [
        Result(f"layout {name}: file size, {label} (KiB)", sizes[name], SEED_TABLE, sizes["seed"]) for name in LAYOUTS
    ]
    return results
