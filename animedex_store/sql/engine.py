"""Turn a resolved path, URL or Engine into a configured SQLAlchemy engine (the slow path, and servers).

SQLite connections come from :func:`animedex_store.fastpath.sqlite_file.connect`
(``creator=``), the one place that configures them; a caller's SQLite engine
gets the same settings from a connect hook. Transaction control is ours: the
driver runs in autocommit and our ``begin`` hook emits ``BEGIN`` (or ``BEGIN
IMMEDIATE``), so DDL in a migration is really transactional. Server engines
get pre-ping pools.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from ..errors import driver_message
from ..fastpath import sqlite_file
from ..fastpath.targets import DEFAULT_TIMEOUT_SECONDS, MEMORY_TARGET_NAME, Target, resolve_target

__all__ = ["StoreEngine", "open_engine", "mask_url", "target_name", "enable_wal"]

#: Query parameters that carry a password, hidden like the URL's own.
_PASSWORD_QUERY_KEYS = frozenset({"password", "passwd"})


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


def target_name(target: Path | URL | Engine) -> str:
    """How messages name a resolved target: a SQLite file's path, ``sqlite:// (in memory)``, or the
    URL with its password masked (an ``Engine``: its URL's)."""
    if isinstance(target, Engine):
        target = _engine_file(target) or target.url
    if isinstance(target, Path):
        return str(target)
    if target.get_backend_name() == "sqlite" and target.database in (None, "", ":memory:"):
        return MEMORY_TARGET_NAME
    return mask_url(target)


def _engine_file(engine: Engine) -> Path | None:
    """The file of a SQLite ``Engine``; ``None`` for an in-memory one or a server."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    return Path(database) if database and database != ":memory:" else None


def open_engine(
    target: Target,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    create: bool = True,
) -> StoreEngine:
    """Resolve ``target`` (see :func:`animedex_store.fastpath.targets.resolve_target`; an already
    resolved one stays as it is) and configure its engine.

    A SQLite file that does not exist is created on first connection (0600,
    directories 0700), or with ``create=False`` raises :class:`FileNotFoundError`
    now, creating nothing.
    """
    target = resolve_target(target)
    if isinstance(target, Engine):
        if target.dialect.name == "sqlite":
            _install_sqlite_hooks(target, timeout)
        return StoreEngine(target, target_name(target), _engine_file(target), owns_engine=False)
    if isinstance(target, Path):
        if not create:
            sqlite_file.require_file(target)
        return _file_engine(target, timeout)
    if target.get_backend_name() == "sqlite":
        return _memory_engine()
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
    try:
        engine = create_engine(url, pool_pre_ping=True, pool_recycle=3600, **options)
    except ArgumentError as exc:  # no dialect of that name (a missing driver is an ImportError)
        raise ValueError(f"{mask_url(url)}: {driver_message(exc)}") from exc
    return StoreEngine(engine, target_name(url), None, owns_engine=True)


def _memory_engine() -> StoreEngine:
    # The default pool gives each thread its own empty in-memory database:
    # share one connection instead.
    engine = create_engine("sqlite://", poolclass=StaticPool, creator=sqlite_file.connect_memory)
    _take_transaction_control(engine)
    return StoreEngine(engine, MEMORY_TARGET_NAME, None, owns_engine=True)


def _file_engine(path: Path, timeout: float) -> StoreEngine:
    # The URL names the file (and picks the pool); connections come from sqlite_file.connect.
    engine = create_engine(
        URL.create("sqlite", database=str(path)),
        creator=lambda: sqlite_file.connect(path, timeout=timeout, create=True),
    )
    _take_transaction_control(engine)
    return StoreEngine(engine, target_name(path), path, owns_engine=True)


def _install_sqlite_hooks(engine: Engine, timeout: float) -> None:
    """A caller's SQLite engine: our connection settings on each new connection, and our BEGIN."""
    if getattr(engine, "_animedex_hooks", False):
        return
    engine._animedex_hooks = True  # type: ignore[attr-defined]

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        sqlite_file.configure(dbapi_connection, timeout)

    _take_transaction_control(engine)


def _take_transaction_control(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # migrations.lock.schema_lock asks for IMMEDIATE: take the write lock up front so
        # the check-then-migrate sequence cannot be interleaved by another writer.
        mode = connection.get_execution_options().get("animedex_sqlite_begin", "")
        connection.exec_driver_sql(f"BEGIN {mode}".strip())


def enable_wal(store: StoreEngine) -> None:
    """Switch a SQLite file to WAL; see :func:`animedex_store.fastpath.sqlite_file.enable_wal`."""
    if store.path is None:
        return
    # On the DB-API connection: SQLAlchemy's would open a transaction first,
    # and the journal mode cannot change inside one.
    raw = store.engine.raw_connection()
    try:
        sqlite_file.enable_wal(cast(sqlite3.Connection, raw.driver_connection))
    finally:
        raw.close()
