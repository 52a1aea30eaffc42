"""Turn a path, URL or Engine into a configured SQLAlchemy engine.

SQLite gets one connect hook (busy timeout first, then per-connection pragmas)
and hands transaction control to us: the driver runs in autocommit and our
``begin`` hook emits ``BEGIN`` (or ``BEGIN IMMEDIATE``), so DDL in a migration
is really transactional. Server engines get pre-ping pools.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from .errors import ReadOnlyError, StoreError

__all__ = [
    "StoreEngine",
    "open_engine",
    "resolve_target",
    "remove_sqlite_file",
    "mask_url",
    "DEFAULT_TIMEOUT_SECONDS",
    "URL_ENV_VAR",
]

#: Environment variable naming the database when no target is given.
URL_ENV_VAR = "ANIMEDEX_STORE_URL"
#: Query parameters that carry a password, hidden like the URL's own.
_PASSWORD_QUERY_KEYS = frozenset({"password", "passwd"})
#: How long a write waits for another connection's lock before failing.
DEFAULT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class StoreEngine:
    """An engine plus how to name it in messages and where its file is, if any."""

    engine: Engine
    target: str  # the file path, or the URL with its password masked
    path: Path | None  # the SQLite file; None for in-memory and servers
    owns_engine: bool  # False when the caller passed an Engine: we must not dispose it

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def dispose(self) -> None:
        """Close the engine's connections, unless the caller owns the engine."""
        if self.owns_engine:
            self.engine.dispose()


def mask_url(url: str | URL) -> str:
    """The URL as a string with its password replaced by ``***``, also one given as a
    query parameter (libpq and PyMySQL accept ``?password=...``)."""
    url = make_url(url)
    secret = sorted(key for key in url.query if key.lower() in _PASSWORD_QUERY_KEYS)
    shown = url.difference_update_query(secret).render_as_string(hide_password=True)
    if secret:
        shown += ("&" if "?" in shown else "?") + "&".join(f"{key}=***" for key in secret)
    return shown


def resolve_target(target: str | os.PathLike[str] | URL | Engine | None) -> Path | URL | Engine:
    """What ``target`` names, without opening anything: a SQLite file's absolute
    ``Path`` (``~`` expanded), a ``URL`` (a server, or ``sqlite://`` in memory), or the
    ``Engine`` itself. ``None`` → ``$ANIMEDEX_STORE_URL``, else the default cache file."""
    if isinstance(target, Engine):
        return target
    if target is None:
        target = os.environ.get(URL_ENV_VAR) or None
    if target is None:
        from .paths import default_cache_path

        target = default_cache_path()
    if isinstance(target, str) and "://" in target:
        target = make_url(target)
    if isinstance(target, URL):
        if target.get_backend_name() != "sqlite" or target.database in (None, "", ":memory:"):
            return target
        target = target.database
    if isinstance(target, (str, os.PathLike)):
        # Absolute: a pool reconnecting after a chdir must open the same file.
        return Path(target).expanduser().absolute()
    raise TypeError(f"target must be a path, URL string, sqlalchemy URL or Engine, not {type(target).__name__}")


def open_engine(
    target: str | os.PathLike[str] | URL | Engine | None,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    create: bool = True,
) -> StoreEngine:
    """Resolve ``target`` (see :func:`resolve_target`) and configure its engine.

    A SQLite file that does not exist is created (0600, directories 0700), or
    with ``create=False`` raises :class:`FileNotFoundError`, creating nothing.
    """
    target = resolve_target(target)
    if isinstance(target, Engine):
        if target.dialect.name == "sqlite":
            _install_sqlite_hooks(target, timeout)
        database = target.url.database if target.dialect.name == "sqlite" else None
        path = Path(database) if database and database != ":memory:" else None
        return StoreEngine(target, str(path) if path else mask_url(target.url), path, owns_engine=False)
    if isinstance(target, Path):
        if not create and not target.exists():
            raise FileNotFoundError(errno.ENOENT, "no such SQLite file", str(target))
        return _file_engine(target, timeout)
    if target.get_backend_name() == "sqlite":
        return _memory_engine(timeout)
    return _server_engine(target)


def _server_engine(url: URL) -> StoreEngine:
    options: dict[str, object] = {}
    if url.get_backend_name() in ("mysql", "mariadb"):
        # InnoDB's default REPEATABLE READ takes gap locks on every row a DELETE
        # scans, so purges and upserts deadlock each other; each call is one
        # statement, so READ COMMITTED loses nothing.
        options["isolation_level"] = "READ COMMITTED"
    # Pre-ping: a pooled session the server dropped (restart, idle timeout, a
    # killed backend) is replaced at checkout instead of failing the call.
    engine = create_engine(url, pool_pre_ping=True, pool_recycle=3600, **options)
    return StoreEngine(engine, mask_url(url), None, owns_engine=True)


def _memory_engine(timeout: float) -> StoreEngine:
    # The default pool gives each thread its own empty in-memory database:
    # share one connection instead.
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    _install_sqlite_hooks(engine, timeout)
    return StoreEngine(engine, "sqlite:// (in memory)", None, owns_engine=True)


def _file_engine(path: Path, timeout: float) -> StoreEngine:
    _create_private_file(path)
    engine = create_engine(_sqlite_file_url(path), connect_args={"check_same_thread": False})
    _install_sqlite_hooks(engine, timeout)
    return StoreEngine(engine, str(path), path, owns_engine=True)


def _create_private_file(path: Path) -> None:
    """Create missing directories (0700) and the file (0600): cached responses
    and headers can hold users' tokens. An existing file is left as it is."""
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


def _sqlite_file_url(path: Path) -> URL:
    """The URL to open ``path`` with: read-write, or read-only when its directory is read-only.

    A WAL database needs its ``-wal`` and ``-shm`` files even to be read, and
    SQLite cannot create them in a read-only directory. ``immutable=1`` reads
    without them; that is consistent because nobody can write a WAL database
    there either (writers must create those files). A ``-wal`` or ``-journal``
    left behind holds commits the file lacks, so then ``mode=ro`` reads through it.
    """
    if not path.exists() or os.access(path.parent, os.W_OK):
        return URL.create("sqlite", database=str(path))
    leftovers = any(path.with_name(path.name + suffix).exists() for suffix in ("-wal", "-journal"))
    query = {"uri": "true", "mode": "ro"} if leftovers else {"uri": "true", "mode": "ro", "immutable": "1"}
    return URL.create("sqlite", database=f"file:{quote(str(path))}", query=query)


def remove_sqlite_file(path: Path) -> None:
    """Delete a SQLite file with its ``-wal``, ``-shm`` and ``-journal`` companions, if present."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _install_sqlite_hooks(engine: Engine, timeout: float) -> None:
    if getattr(engine, "_animedex_hooks", False):
        return
    engine._animedex_hooks = True  # type: ignore[attr-defined]
    busy_timeout_ms = int(timeout * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Autocommit driver: pysqlite would otherwise open transactions itself,
        # and never before DDL, so a failed migration would stay half applied.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Wait for other writers instead of failing at once with "database is locked".
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        # WAL + NORMAL is durable at checkpoints and never corrupts; a power
        # loss may drop the last commits, which a cache can afford.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        # schema.schema_lock asks for IMMEDIATE: take the write lock up front so
        # the check-then-migrate sequence cannot be interleaved by another writer.
        mode = connection.get_execution_options().get("animedex_sqlite_begin", "")
        connection.exec_driver_sql(f"BEGIN {mode}".strip())


def enable_wal(store: StoreEngine) -> None:
    """Switch a SQLite file to WAL (persistent in the file header). Called only
    once the file is known to be ours, so a foreign file is never modified."""
    if store.path is None:
        return
    # On the DB-API connection: SQLAlchemy's would open a transaction first,
    # and the journal mode cannot change inside one.
    raw = store.engine.raw_connection()
    try:
        driver = raw.driver_connection
        deadline = time.monotonic() + driver.execute("PRAGMA busy_timeout").fetchone()[0] / 1000
        while True:
            try:
                driver.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                # The switch reads the header and then needs the write lock. While another
                # connection holds RESERVED (a concurrent opener re-checking the schema under
                # its lock), SQLite refuses that upgrade at once, without its busy handler
                # (waiting could deadlock), so the busy timeout is honoured here instead.
                busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == 5  # SQLITE_BUSY (no codes before 3.11)
                if not busy or time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)
    finally:
        raw.close()
