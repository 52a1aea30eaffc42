"""Look inside SQLite files from tests, with raw ``sqlite3`` and without writing to them."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FileFingerprint", "SchemaSnapshot", "fingerprint", "rows", "schema", "reading"]

ROW_COLUMNS = "backend, signature, payload, expires_at, response_headers, fetched_at"


@dataclass(frozen=True)
class FileFingerprint:
    """Content hash and modification time: equal fingerprints mean an untouched file."""

    sha256: str
    mtime_ns: int
    siblings: tuple[str, ...]  # names of -wal/-shm/-journal files beside it


def fingerprint(path: Path) -> FileFingerprint:
    """The fingerprint of ``path`` as it is now (read with plain file I/O)."""
    siblings = tuple(sorted(p.name for p in path.parent.glob(path.name + "-*")))
    return FileFingerprint(hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns, siblings)


@contextlib.contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection that refuses writes (``query_only``) to an existing file.

    Not ``mode=ro``: a read-only connection cannot remove the ``-wal``/``-shm``
    files of a WAL database on close, and fingerprints compare those too.
    """
    if not path.is_file():
        raise FileNotFoundError(path)
    conn = sqlite3.connect(os.fspath(path))
    try:
        conn.execute("PRAGMA query_only = ON")
        yield conn
    finally:
        conn.close()


def rows(path: Path) -> list[tuple]:
    """Every ``cache_rows`` row as ``(backend, signature, payload, expires_at, response_headers,
    fetched_at)``, ``None`` for a column the table lacks; sorted by key."""
    with reading(path) as conn:
        present = {info[1] for info in conn.execute("PRAGMA table_info(cache_rows)")}
        select = ", ".join(name if name in present else "NULL" for name in ROW_COLUMNS.split(", "))
        return sorted(conn.execute(f"SELECT {select} FROM cache_rows"))  # constant column names


@dataclass(frozen=True)
class SchemaSnapshot:
    """What a test asserts about the schema of a file."""

    tables: dict[str, str]  # name -> CREATE statement, as sqlite_master keeps it
    indexes: dict[str, str | None]  # name -> CREATE statement (None for a primary key's own index)
    columns: tuple[str, ...]  # of cache_rows, in table order
    cookie: int  # PRAGMA schema_version: SQLite bumps it on every schema change
    alembic_versions: tuple[str, ...]
    schema_version: str | None  # cache_meta's, what the seed's code reads

    @property
    def without_rowid(self) -> bool:
        """Whether ``cache_rows`` is a ``WITHOUT ROWID`` table."""
        return self.tables["cache_rows"].rstrip().upper().endswith("WITHOUT ROWID")


def schema(path: Path) -> SchemaSnapshot:
    """The schema of ``path`` now."""
    with reading(path) as conn:
        tables = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
        indexes = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
        columns = tuple(info[1] for info in conn.execute("PRAGMA table_info(cache_rows)"))
        cookie = conn.execute("PRAGMA schema_version").fetchone()[0]
        versions = ()
        if "alembic_version" in tables:
            versions = tuple(row[0] for row in conn.execute("SELECT version_num FROM alembic_version"))
        meta = None
        if "cache_meta" in tables:
            found = conn.execute("SELECT value FROM cache_meta WHERE key = 'schema_version'").fetchone()
            meta = found and found[0]
    return SchemaSnapshot(tables, indexes, columns, cookie, versions, meta)
