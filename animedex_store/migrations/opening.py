"""The slow path: open a database through SQLAlchemy and bring it to the head revision, safely.

Everything that is not an up-to-date SQLite file comes here (see
:mod:`animedex_store.fastpath.opening`): a missing, behind, seed-written,
foreign or unreadable file, in-memory ``sqlite://``, server URLs and
``Engine`` targets. Decisions are made in one place, under the migration lock
(:mod:`.lock`):

* at head: nothing to do (one ``SELECT`` on ``alembic_version``, no Alembic import);
* empty: build from revision ``0001``;
* seed tables without ``alembic_version``: stamp by shape (:mod:`.adoption`), then upgrade;
* behind: upgrade; newer than this package, or tables we don't know: refuse.

This is the only module that runs Alembic's upgrade, and only when the database is behind.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL, make_url

from ..core.compiled import StatementSet
from ..core.connections import Database
from ..errors import (
    ConnectionFailedError,
    MigrationError,
    SchemaBehindError,
    StoreError,
    driver_message,
    store_error,
)
from ..fastpath import statements as sqlite_statements
from ..fastpath.opening import READ_REVISION, read_revision, revision_of
from ..fastpath.sqlite_file import connect_memory
from ..fastpath.targets import DEFAULT_TIMEOUT_SECONDS
from ..sql.engine import StoreEngine, enable_wal, open_engine, target_name
from ..sql.servers import AsyncServerConnections, connections_for
from ..sql.statements import Statements
from .adoption import adopt_legacy, current_revision
from .lock import schema_lock
from .revisions import HEAD_REVISION, Progress, alembic_config

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "open_migrated",
    "open_store",
    "ensure_schema",
    "read_revision_fast",
    "locked_and_adopted",
    "migrated_memory_database",
    "migrate_connection",
    "open_server_async",
    "open_engine_async",
]


def open_migrated(target: Path | URL | Engine, *, migrate: bool, timeout: float) -> Database:
    """A repository's database on the resolved ``target``, brought to head unless ``migrate=False``."""
    store = open_store(target, migrate=migrate, timeout=timeout)
    try:
        db = connections_for(store)
    except Exception as exc:
        store.dispose()
        raise store_error(exc, store.target) from exc
    return db, sqlite_statements if store.is_sqlite else Statements.for_dialect(store.engine.dialect)


def open_store(
    target: Path | URL | Engine,
    *,
    migrate: bool = True,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    progress: Progress | None = None,
) -> StoreEngine:
    """Configure the resolved ``target``'s engine and bring its database to head.

    With ``migrate=False`` nothing is created or changed, and a missing or
    behind database raises :class:`SchemaBehindError`. SQLite switches to WAL
    only once the file is known to be ours. On failure the engine is disposed
    and the error is a :class:`StoreError` naming the target. A migration step
    that rewrites rows reports to ``progress(done, total)``.
    """
    try:
        store = open_engine(target, timeout=timeout, create=migrate)
    except FileNotFoundError as exc:
        raise SchemaBehindError(
            f"{exc.filename} does not exist; open it with migrate=True or run "
            "`animedex-store upgrade --url ...` to create it (nothing was created)",
            target=exc.filename,
        ) from None
    try:
        if ensure_schema(store.engine, store.target, migrate=migrate, progress=progress):
            enable_wal(store)
    except Exception as exc:
        store.dispose()
        raise store_error(exc, store.target) from exc
    return store


def read_revision_fast(engine: Engine) -> str | None:
    """The revision in ``alembic_version``, or ``None`` when it cannot be read cheaply.

    One statement on a raw DB-API connection: this runs on every open.
    Any driver error (no such table, not a database, locked) sends the caller
    to the locked slow path, which reports real problems precisely.
    """
    raw = engine.raw_connection()
    try:
        revision = read_revision(raw)
        raw.rollback()
    except engine.dialect.loaded_dbapi.Error:
        # PostgreSQL aborts the transaction on a failed statement; end it.
        with contextlib.suppress(engine.dialect.loaded_dbapi.Error):
            raw.rollback()
        return None
    finally:
        raw.close()
    return revision


@contextlib.contextmanager
def locked_and_adopted(connection: Connection, target: str, *, writes: bool) -> Iterator[str | None]:
    """What must hold before any revision runs, whether a repository opens or the ``alembic`` command
    runs: a transaction on ``connection`` holding the migration lock (:mod:`.lock`; only when it
    ``writes``: SQLite's write lock alone writes to an empty file) and a seed file recognised and
    stamped (:mod:`.adoption`; only classified when it does not write). Yields the revision stamped."""
    with schema_lock(connection, target) if writes else connection.begin():
        yield adopt_legacy(connection, target, dry_run=not writes)


def migrated_memory_database() -> sqlite3.Connection:
    """A new private in-memory SQLite database at head, built by the real migrations (the pytest
    plugin copies one per test)."""
    store = open_store(make_url("sqlite://"))
    try:
        raw = store.engine.raw_connection()
        try:
            built = connect_memory()
            cast(sqlite3.Connection, raw.driver_connection).backup(built)
        finally:
            raw.close()
    finally:
        store.dispose()
    return built


def ensure_schema(engine: Engine, target: str, *, migrate: bool = True, progress: Progress | None = None) -> bool:
    """Make sure the database is at :data:`HEAD_REVISION`.

    Returns ``True`` when this call changed the schema (so SQLite can switch to
    WAL once the file is known to be ours). Raises a :class:`StoreError`
    naming ``target`` on refusal or failure; a failed migration is rolled back.
    """
    if read_revision_fast(engine) == HEAD_REVISION:
        return False
    with engine.connect() as connection:
        return migrate_connection(connection, target, migrate=migrate, progress=progress)


def migrate_connection(
    connection: Connection, target: str, *, migrate: bool = True, progress: Progress | None = None
) -> bool:
    """:func:`ensure_schema` on an open connection, under the migration lock: what an async
    repository runs through ``AsyncConnection.run_sync`` on its async driver."""
    with locked_and_adopted(connection, target, writes=migrate) as stamped:
        current = current_revision(connection)
        if current == HEAD_REVISION:
            return False
        if not migrate:
            raise SchemaBehindError(
                f"{target} is at schema revision {stamped or current or 'none'}, older than this "
                f"package's {HEAD_REVISION}; open it with migrate=True or run "
                f"`animedex-store upgrade --url ...` (nothing was changed)",
                target=target,
            )
        from alembic import command

        try:
            command.upgrade(alembic_config(connection, progress=progress), "head")
        except StoreError:
            raise
        except Exception as exc:
            # MariaDB/MySQL commit each DDL statement: what ran stays, and every
            # revision is written to pick up from there on the next open.
            outcome = (
                "stopped part way; opening it again resumes the migration"
                if connection.dialect.name in ("mysql", "mariadb")
                else "was rolled back"
            )
            message = f"migrating {target} to {HEAD_REVISION} failed and {outcome}: {driver_message(exc)}"
            raise MigrationError(message, target=target) from exc
    return True


def open_server_async(
    target: URL, *, migrate: bool, max_connections: int
) -> tuple[AsyncServerConnections, StatementSet]:
    """The async repository's connections to the server ``target`` (a URL of any driver's spelling)
    and their statements, the database brought to head unless ``migrate=False``. Blocking: runs on a
    thread, with an event loop of its own for the check (one query on ``alembic_version`` on the
    async driver) and a migration (the same code as the sync side, through SQLAlchemy's ``run_sync``
    on the async driver). What it opens there it closes there, failed or not; the connections
    returned hold nothing yet (each event loop that calls makes its own)."""
    import asyncio

    from ..sql.async_drivers import driver_for

    driver = driver_for(target)
    name = target_name(target)
    asyncio.run(_bring_to_head(AsyncServerConnections(driver, name, max_connections=1), target, migrate))
    return AsyncServerConnections(driver, name, max_connections=max_connections), Statements.for_dialect(
        driver.sa_dialect
    )


async def open_engine_async(
    engine: AsyncEngine, *, migrate: bool, max_connections: int
) -> tuple[AsyncServerConnections, StatementSet]:
    """:func:`open_server_async` on a caller's ``AsyncEngine``, on the caller's loop (its pool belongs there)."""
    from ..sql.async_drivers import EngineDriver

    driver = EngineDriver(engine)
    connections = AsyncServerConnections(driver, target_name(engine.sync_engine), max_connections=max_connections)
    await _bring_to_head(connections, engine, migrate)
    return connections, Statements.for_dialect(driver.sa_dialect)


async def _bring_to_head(connections: AsyncServerConnections, target: URL | AsyncEngine, migrate: bool) -> None:
    """Check the revision on ``connections`` and migrate if it is behind; ``connections`` hold no
    connection afterwards, whatever happened (a failed open leaves no session behind)."""
    try:
        try:
            revision: str | None = revision_of(await connections.fetchall(READ_REVISION, ()))
        except ConnectionFailedError:
            raise
        except StoreError:  # no alembic_version table (yet): the locked path decides
            revision = None
    finally:
        await connections.close()
    if revision != HEAD_REVISION:
        await _migrate_on_async_engine(target, connections.driver, connections.target, migrate)


async def _migrate_on_async_engine(target: URL | AsyncEngine, driver: Any, name: str, migrate: bool) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = (
        create_async_engine(driver.url, poolclass=NullPool, async_creator=driver.native_connect)
        if isinstance(target, URL)
        else target
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(migrate_connection, name, migrate=migrate)
    except StoreError:
        raise
    except Exception as exc:
        raise store_error(exc, name) from exc
    finally:
        if engine is not target:
            await engine.dispose()
