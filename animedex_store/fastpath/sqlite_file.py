"""The one place that opens and configures a ``sqlite3`` connection, on the standard library alone.

The fast path (:mod:`animedex_store.fastpath.opening`) uses :func:`connect` directly;
the SQLAlchemy engines of :mod:`animedex_store.sql.engine` use it through
``create_engine(..., creator=...)``, and a caller's own SQLite ``Engine`` gets
:func:`configure` from a connect hook. So every SQLite connection we run on has
the same settings:

* autocommit (``isolation_level=None``): pysqlite would otherwise open
  transactions itself, and never before DDL, so a failed migration would stay
  half applied; our code says ``BEGIN`` / ``BEGIN IMMEDIATE`` itself;
* the busy timeout first: wait for other writers instead of failing at once
  with "database is locked";
* ``synchronous = NORMAL``: with WAL it is durable at checkpoints and never
  corrupts; a power loss may drop the last commits, which a cache can afford.

New files are created ``0600`` and new directories ``0700`` (cached responses
and headers can hold users' tokens; POSIX only: Windows has no such modes).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from pathlib import Path

from ..errors import ReadOnlyError, StoreError, sqlite_result_code
from .uri import sqlite_file_uri

__all__ = [
    "connect",
    "connect_memory",
    "configure",
    "create_private_file",
    "enable_wal",
    "remove_sqlite_file",
    "require_file",
]

#: SQLITE_BUSY, the primary result code of "database is locked".
_SQLITE_BUSY = 5


def configure(connection: sqlite3.Connection, timeout: float) -> None:
    """Apply our settings to an open connection (see the module docstring for why each)."""
    busy_timeout_ms = int(timeout * 1000)  # an int: nothing but digits reaches the SQL
    connection.isolation_level = None
    connection.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    connection.execute("PRAGMA synchronous = NORMAL")


def connect(path: Path, *, timeout: float, create: bool) -> sqlite3.Connection:
    """Open the SQLite file ``path`` configured as we run it.

    ``create``: make a missing file (``0600``, missing directories ``0700``);
    otherwise a missing file raises :class:`FileNotFoundError` and nothing is
    created. A file in a directory we cannot write is opened read-only.
    """
    if create:
        create_private_file(path)
    else:
        require_file(path)
    database, uri = _database_name(path)
    connection = sqlite3.connect(database, uri=uri, check_same_thread=False)
    try:
        configure(connection, timeout)
    except BaseException:
        connection.close()
        raise
    return connection


def require_file(path: Path) -> None:
    """Raise :class:`FileNotFoundError` naming ``path`` when no file is there: how every caller
    that must not create a SQLite file (reading, inspecting, ``migrate=False``) learns it is missing."""
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such SQLite file", str(path))


def connect_memory() -> sqlite3.Connection:
    """A new private in-memory database, configured as :func:`connect` configures files."""
    connection = sqlite3.connect(":memory:", check_same_thread=False)
    configure(connection, 0)
    return connection


def create_private_file(path: Path) -> None:
    """Create missing directories (0700) and the file (0600); an existing file is left as it is."""
    missing = [parent for parent in reversed(path.parents) if not parent.exists()]
    try:
        for directory in missing:
            try:
                directory.mkdir(mode=0o700)
            except FileExistsError:
                pass
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            pass
    except OSError as exc:
        error = ReadOnlyError if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else StoreError
        raise error(f"cannot create {path}: {exc.strerror} ({exc.filename})", target=str(path)) from exc


def _database_name(path: Path) -> tuple[str, bool]:
    """What to pass ``sqlite3.connect`` for ``path``, and whether it is a URI.

    A WAL database needs its ``-wal`` and ``-shm`` files even to be read, and
    SQLite cannot create them in a read-only directory. ``immutable=1`` reads
    without them; that is consistent because nobody can write a WAL database
    there either (writers must create those files). A ``-wal`` or ``-journal``
    left behind holds commits the file lacks, so then ``mode=ro`` reads through it.
    """
    if not path.exists() or os.access(path.parent, os.W_OK):
        return str(path), False
    leftovers = any(path.with_name(path.name + suffix).exists() for suffix in ("-wal", "-journal"))
    query = {"mode": "ro"} if leftovers else {"mode": "ro", "immutable": "1"}
    return sqlite_file_uri(path, **query), True


def enable_wal(connection: sqlite3.Connection) -> None:
    """Switch the file to WAL (persistent in its header). Call only once the file is
    known to be ours, so a foreign file is never modified. Outside any transaction."""
    deadline = time.monotonic() + connection.execute("PRAGMA busy_timeout").fetchone()[0] / 1000
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            # The switch reads the header and then needs the write lock. While another
            # connection holds RESERVED (a concurrent opener re-checking the schema under
            # its lock), SQLite refuses that upgrade at once, without its busy handler
            # (waiting could deadlock), so the busy timeout is honoured here instead.
            busy = sqlite_result_code(exc) == _SQLITE_BUSY  # also before 3.11, which has no sqlite_errorcode
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def remove_sqlite_file(path: Path) -> None:
    """Delete a SQLite file with its ``-wal``, ``-shm`` and ``-journal`` companions, if present."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
