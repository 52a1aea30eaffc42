"""Drop-in replacement for animedex's raw-``sqlite3`` cache module.

Switch by changing one import (``from animedex_store.sqlite import SqliteCache``).
The names are the seed's; ``_utcnow`` and ``_user_cache_dir`` are looked up at
call time, so ``monkeypatch.setattr(animedex_store.sqlite, "_utcnow", fake)``
works as it did. ``SqliteCache`` is a :class:`CacheRepository` on a SQLite
file that also keeps the seed's private ``_lock`` and ``_conn`` (the
``sqlite3`` connection, in autocommit mode) for tests that read rows directly.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from .core.defaults import default_ttl_seconds
from .fastpath.connection import SharedSqliteConnection
from .fastpath.sqlite_file import remove_sqlite_file
from .repository import CacheRepository

__all__ = ["SqliteCache", "default_ttl_seconds", "default_cache_path", "selftest"]


def _utcnow() -> datetime:  # patched in tests
    return datetime.now(timezone.utc)


def _user_cache_dir() -> str:  # patched in tests
    from platformdirs import user_cache_dir  # on first use: opening a given path never needs it

    return user_cache_dir("animedex")


def _module_clock() -> datetime:
    # Looked up on every call so a monkeypatched _utcnow takes effect at once.
    return _utcnow()


def default_cache_path() -> Path:
    """``_user_cache_dir() / "cache.sqlite"``, as the seed resolved it."""
    return Path(_user_cache_dir()) / "cache.sqlite"


class SqliteCache(CacheRepository):
    """The seed's ``SqliteCache(path=None)``: a repository on a SQLite file."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        super().__init__(self.path, clock=_module_clock)
        assert isinstance(self._db, SharedSqliteConnection)
        self._lock = self._db.lock
        self._conn = self._db.conn

    def __enter__(self) -> SqliteCache:
        return self


def selftest() -> bool:
    """Round-trip a row through a scratch file under ``_user_cache_dir()``; returns ``True``.

    The file (``selftest.sqlite``) is removed before and after, so it can run
    any number of times in a row.
    """
    path = Path(_user_cache_dir()) / "selftest.sqlite"
    remove_sqlite_file(path)
    cache = SqliteCache(path=path)
    try:
        cache.set("_selftest", "key", b"hello", ttl_seconds=60)
        if cache.get("_selftest", "key") != b"hello":
            raise AssertionError("selftest: the row written was not read back")
        if cache.get("_selftest", "missing") is not None:
            raise AssertionError("selftest: a missing key returned a row")
        cache.set("_selftest", "expired", b"old", ttl_seconds=0)
        if cache.get("_selftest", "expired") is not None:
            raise AssertionError("selftest: a row at its expires_at was returned")
        if default_ttl_seconds("metadata") != 72 * 3600:
            raise AssertionError("selftest: wrong default TTL")
    finally:
        cache.close()
        remove_sqlite_file(path)
    return True
