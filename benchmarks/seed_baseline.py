"""The seed's cache, as a baseline: raw ``sqlite3`` with the seed's exact SQL.

Schema creation, migration, ``set``, ``get`` and ``purge_expired`` are copied
from the seed (``shared/seeds/000_8787b42b3a0c9bbc.txt``, in the ``shared``
folder beside this project; SPEC.md names it). The seed's page
omits the bodies of ``set_with_meta`` and ``get_with_meta``, which ``set`` and
``get`` delegate to; they are written here the obvious way from what the page
documents: an ``INSERT OR REPLACE`` of all six columns followed by ``commit()``,
and a ``SELECT`` by key whose expiry is checked against the clock, whose headers
JSON is parsed and whose ``fetched_at`` becomes an aware datetime.

The module imports at module level what the seed's module imports (``json``,
``os``, ``sqlite3``, ``threading``, ``datetime``, ``pathlib``, ``typing`` and
``platformdirs``), so a fresh process importing it pays the seed's import cost:
the cold-start benchmark (:mod:`benchmarks.startup`) compares against that.
Like the seed, ``SeedCache()`` with no path opens the default cache file.
"""

from __future__ import annotations

import json
import os  # noqa: F401 - imported as the seed's module does (its selftest removes files with it)
import sqlite3
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Optional, Tuple, Union  # noqa: F401, UP035 - imported as the seed's module does

from platformdirs import user_cache_dir

__all__ = [
    "SeedCache",
    "default_cache_path",
    "SEED_SCHEMA",
    "SEED_SCHEMA_V1",
    "SEED_CACHE_META_SCHEMA",
    "SEED_ALTERS",
    "SEED_PURGE_SQL",
]

_utcnow = lambda: datetime.now(timezone.utc)  # noqa: E731 - the seed's clock indirection
_user_cache_dir = lambda: user_cache_dir("animedex")  # noqa: E731 - the seed's cache-dir indirection

SEED_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS cache_rows (
backend TEXT NOT NULL,
signature TEXT NOT NULL,
payload BLOB NOT NULL,
expires_at INTEGER NOT NULL,
PRIMARY KEY (backend, signature)
) WITHOUT ROWID;
"""
SEED_CACHE_META_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_meta (
key TEXT PRIMARY KEY,
value TEXT NOT NULL
);
"""
SEED_SCHEMA = (SEED_SCHEMA_V1, SEED_CACHE_META_SCHEMA)
# The seed's v1 -> v2 migration, run by _migrate_schema_locked.
SEED_ALTERS = (
    "ALTER TABLE cache_rows ADD COLUMN response_headers BLOB",
    "ALTER TABLE cache_rows ADD COLUMN fetched_at INTEGER",
)
SEED_PURGE_SQL = "DELETE FROM cache_rows WHERE expires_at <= ?"
_UPSERT_SQL = (
    "INSERT OR REPLACE INTO cache_rows "
    "(backend, signature, payload, expires_at, response_headers, fetched_at) VALUES (?, ?, ?, ?, ?, ?)"
)
_SELECT_SQL = (
    "SELECT payload, expires_at, response_headers, fetched_at FROM cache_rows WHERE backend = ? AND signature = ?"
)


def default_cache_path() -> Path:
    """The seed's default file: ``_user_cache_dir() / "cache.sqlite"``."""
    return Path(_user_cache_dir()) / "cache.sqlite"


class SeedCache:
    """The seed's ``SqliteCache`` on ``path`` (``None``: :func:`default_cache_path`)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.Lock()
        with self._lock:
            for statement in SEED_SCHEMA:
                self._conn.execute(statement)
            self._migrate_schema_locked()
            self._conn.commit()

    def _migrate_schema_locked(self) -> None:
        row = self._conn.execute("SELECT value FROM cache_meta WHERE key = 'schema_version'").fetchone()
        current = 1 if row is None else int(row[0])
        if current < 2:
            for statement in SEED_ALTERS:
                try:
                    self._conn.execute(statement)
                except sqlite3.OperationalError:
                    pass
            current = 2
        self._conn.execute(
            "INSERT OR REPLACE INTO cache_meta (key, value) VALUES ('schema_version', ?)",
            (str(current),),
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _now_seconds(self) -> int:
        return int(_utcnow().timestamp())

    def set(self, backend: str, signature: str, payload: bytes, *, ttl_seconds: int) -> None:
        self.set_with_meta(backend, signature, payload, response_headers={}, ttl_seconds=ttl_seconds)

    def set_with_meta(
        self, backend: str, signature: str, payload: bytes, *, response_headers: Mapping[str, str], ttl_seconds: int
    ) -> None:
        now = self._now_seconds()
        headers = json.dumps(dict(response_headers), ensure_ascii=False).encode("utf-8")
        with self._lock:
            self._conn.execute(_UPSERT_SQL, (backend, signature, bytes(payload), now + int(ttl_seconds), headers, now))
            self._conn.commit()

    def get(self, backend: str, signature: str) -> bytes | None:
        out = self.get_with_meta(backend, signature)
        if out is None:
            return None
        payload, _headers, _fetched_at = out
        return payload

    def get_with_meta(self, backend: str, signature: str) -> tuple[bytes, dict[str, str], datetime | None] | None:
        with self._lock:
            row = self._conn.execute(_SELECT_SQL, (backend, signature)).fetchone()
        if row is None:
            return None
        payload, expires_at, headers, fetched_at = row
        if expires_at <= self._now_seconds():
            return None
        parsed = json.loads(headers.decode("utf-8")) if headers else {}
        fetched = datetime.fromtimestamp(fetched_at, tz=timezone.utc) if fetched_at is not None else None
        return payload, parsed, fetched

    def purge_expired(self) -> int:
        with self._lock:
            cur = self._conn.execute(SEED_PURGE_SQL, (self._now_seconds(),))
            self._conn.commit()
            return cur.rowcount
