"""Cache files exactly as animedex's raw-``sqlite3`` cache (the seed) left them.

``write_seed_file(path, state)`` builds one of the states the seed's code could
leave on disk, with the seed's own DDL and migration (from
:mod:`benchmarks.seed_baseline`, the seed's code kept as the benchmarks'
baseline), its pragmas (WAL, ``synchronous=NORMAL``) and its ``INSERT OR
REPLACE``, and returns the rows it stored so a test can check every one of
them after adoption.

Half of the rows are written while the file is still v1 (their v2 columns read
``NULL``), the rest after the state's schema steps, filling whatever columns
then exist. Every fourth row is expired at :data:`NOW` (some exactly at it).
"""

from __future__ import annotations

import enum
import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from animedex_store.repository import epoch_seconds
from animedex_store.testing import FROZEN_AT
from benchmarks.seed_baseline import SEED_ALTERS, SEED_CACHE_META_SCHEMA, SEED_SCHEMA_V1, SeedCache

__all__ = [
    "NOW",
    "SeedRow",
    "SeedState",
    "open_like_seed",
    "insert_like_seed",
    "planned_row",
    "write_seed_file",
    "write_foreign_database",
]

#: The time the rows are written at and judged against: ``FrozenClock()``'s start.
NOW = epoch_seconds(FROZEN_AT)

# Not in the seed we have: a cache_rows made as a plain rowid table. Adoption
# recognises the shape by its columns, so it must accept this one too.
SEED_SCHEMA_V1_ROWID = SEED_SCHEMA_V1.replace(" WITHOUT ROWID", "")

V1_COLUMNS = ("backend", "signature", "payload", "expires_at")


class SeedState(enum.Enum):
    """What the seed's code could leave on disk (value: a short id for test names)."""

    V1 = "v1"  # cache_rows only: before the seed had cache_meta
    V1_ROWID = "v1-rowid"  # the same, without WITHOUT ROWID
    V1_META = "v1-meta"  # v2 code died right after creating cache_meta (DDL autocommits)
    HEADERS_ONLY = "headers-only"  # v2 code died between its two ALTERs
    V2_NO_VERSION = "v2-no-version"  # v2 columns, died before committing schema_version
    V2_VERSION_1 = "v2-version-1"  # v2 columns but schema_version '1'
    V2 = "v2"  # the seed's v2 __init__ ran to the end


# (create cache_meta, how many of the ALTERs ran, schema_version written) for the
# states simulating a crash part-way through the seed's v1 -> v2 migration.
_PARTIAL_STEPS: dict[SeedState, tuple[bool, int, str | None]] = {
    SeedState.V1: (False, 0, None),
    SeedState.V1_ROWID: (False, 0, None),
    SeedState.V1_META: (True, 0, None),
    SeedState.HEADERS_ONLY: (True, 1, None),
    SeedState.V2_NO_VERSION: (True, 2, None),
    SeedState.V2_VERSION_1: (True, 2, "1"),
}


@dataclass(frozen=True)
class SeedRow:
    """One stored row; the v2 fields are ``None`` where the row has no such value."""

    backend: str
    signature: str
    payload: bytes
    expires_at: int
    response_headers: bytes | None = None
    fetched_at: int | None = None

    def expired(self, now: int = NOW) -> bool:
        """Whether the row reads as missing at ``now`` (``expires_at <= now``)."""
        return self.expires_at <= now

    def headers(self) -> dict[str, str]:
        """The headers ``get_with_meta`` must return: ``{}`` for none or a corrupt blob."""
        try:
            return json.loads(self.response_headers) if self.response_headers else {}
        except ValueError:
            return {}

    def as_tuple(self) -> tuple:
        """The row as ``SELECT backend, signature, payload, expires_at, response_headers, fetched_at``."""
        return (self.backend, self.signature, self.payload, self.expires_at, self.response_headers, self.fetched_at)


def open_like_seed(path: Path) -> sqlite3.Connection:
    """Run the seed's ``SqliteCache.__init__`` on ``path`` and return its connection."""
    return SeedCache(path)._conn  # the seed's own tests read rows through _conn too


def insert_like_seed(conn: sqlite3.Connection, row: SeedRow, columns: tuple[str, ...] = V1_COLUMNS) -> SeedRow:
    """``INSERT OR REPLACE`` the row's values for ``columns`` (constant names); returns the row as stored."""
    values = {name: getattr(row, name) for name in columns}
    statement = f"INSERT OR REPLACE INTO cache_rows ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    conn.execute(statement, tuple(values.values()))
    return SeedRow(**values)


def write_seed_file(path: Path, state: SeedState, *, rows: int = 300, now: int = NOW) -> list[SeedRow]:
    """Create ``path`` in ``state`` holding ``rows`` rows; returns them as stored."""
    planned = [planned_row(index, now) for index in range(rows)]
    half = rows // 2
    conn = sqlite3.connect(str(path))
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(SEED_SCHEMA_V1_ROWID if state is SeedState.V1_ROWID else SEED_SCHEMA_V1)
        stored = [insert_like_seed(conn, row) for row in planned[:half]]
        conn.commit()
        if state is SeedState.V2:
            conn.close()
            conn = open_like_seed(path)
        else:
            _apply_partial_v2(conn, *_PARTIAL_STEPS[state])
        columns = tuple(info[1] for info in conn.execute("PRAGMA table_info(cache_rows)"))
        stored += [insert_like_seed(conn, row, columns) for row in planned[half:]]
        conn.commit()
    finally:
        conn.close()
    return stored


def write_foreign_database(path: Path) -> None:
    """Add a table the seed never made (``notes``): a database animedex-store must refuse."""
    conn = sqlite3.connect(str(path))
    try:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.commit()
    finally:
        conn.close()


def _apply_partial_v2(conn: sqlite3.Connection, create_meta: bool, alters: int, version: str | None) -> None:
    if create_meta:
        conn.execute(SEED_CACHE_META_SCHEMA)
    for statement in SEED_ALTERS[:alters]:
        conn.execute(statement)
    if version is not None:
        conn.execute("INSERT OR REPLACE INTO cache_meta (key, value) VALUES ('schema_version', ?)", (version,))
    conn.commit()


# Signature endings that must stay distinct keys: case, a trailing space,
# NFC vs NFD, non-ASCII.
_SIGNATURE_VARIANTS = ("plain", "Plain", "plain ", "caf\u00e9", "cafe\u0301", "\u9032\u6483")
_BACKENDS = ("anilist", "jikan", "kitsu")


def planned_row(index: int, now: int = NOW) -> SeedRow:
    """The deterministic row number ``index``, with every optional field filled."""
    signature = f"{index // len(_SIGNATURE_VARIANTS)}/{_SIGNATURE_VARIANTS[index % len(_SIGNATURE_VARIANTS)]}"
    digest = hashlib.sha256(signature.encode("utf-8")).digest()
    payload = digest + bytes(range(256))[: index % 256]  # binary, not UTF-8
    if index == 1:
        payload = b""
    elif index == 2:
        payload = digest * 4096  # 128 KiB
    # Every fourth row is expired; index 0 expires exactly at `now`.
    expires_at = now - (index % 50) if index % 4 == 0 else now + 3600 + index
    if index % 10 == 3:
        headers = b"\xff not json"
    else:
        headers = json.dumps(
            {"Content-Type": "application/json", "X-Title": f"\u9032\u6483 #{index}", "ETag": f'"{index}"'},
            ensure_ascii=False,
        ).encode("utf-8")
    return SeedRow(_BACKENDS[index % len(_BACKENDS)], signature, payload, expires_at, headers, now - 10 - index)
