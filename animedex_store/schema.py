"""Bring a database to the schema this package expects, safely, when it opens.

This is the only module that imports Alembic, and only when the fast path
finds the database behind. Decisions are made here, in one place, under a lock:

* at head: nothing to do (one ``SELECT`` on ``alembic_version``, no Alembic import);
* empty: build from revision ``0001``;
* seed tables without ``alembic_version``: recognise the seed's state by its
  columns, stamp the matching revision, then upgrade (no row is rewritten);
* behind: upgrade; newer than this package, or tables we don't know: refuse.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import Inspector

from .engine import StoreEngine, enable_wal, open_engine
from .errors import (
    MigrationError,
    SchemaBehindError,
    SchemaTooNewError,
    StoreError,
    UnknownSchemaError,
    driver_message,
    store_error,
)
from .opening import HEAD_REVISION, VERSION_TABLE, read_revision
from .targets import DEFAULT_TIMEOUT_SECONDS, Target

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = [
    "HEAD_REVISION",
    "open_store",
    "ensure_schema",
    "schema_lock",
    "adopt_legacy",
    "alembic_config",
    "script_location",
]

SEED_V1_COLUMNS = frozenset({"backend", "signature", "payload", "expires_at"})
SEED_V2_COLUMNS = frozenset({"response_headers", "fetched_at"})
OUR_TABLES = frozenset({"cache_rows", "cache_meta", "cache_locks", VERSION_TABLE})

# Seconds a MariaDB/MySQL process waits for another one's migration.
SERVER_LOCK_TIMEOUT_SECONDS = 300


def script_location() -> Path:
    """Folder of the revision scripts: the source tree's ``alembic/`` when this is
    a checkout (editable installs copy force-included files, which go stale),
    else the copy shipped in the wheel as ``animedex_store/_alembic``."""
    package_dir = Path(__file__).resolve().parent
    source_tree = package_dir.parent
    if (source_tree / "alembic.ini").is_file() and (source_tree / "alembic" / "env.py").is_file():
        return source_tree / "alembic"
    return package_dir / "_alembic"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` for our scripts, optionally bound to an open connection."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


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


def open_store(
    target: Target,
    *,
    migrate: bool = True,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> StoreEngine:
    """Open ``target`` as a repository does: configure its engine and bring it to head.

    With ``migrate=False`` nothing is created or changed, and a missing or
    behind database raises :class:`SchemaBehindError`. SQLite switches to WAL
    only once the file is known to be ours. On failure the engine is disposed
    and the error is a :class:`StoreError` naming ``target``.
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
        if ensure_schema(store.engine, store.target, migrate=migrate):
            enable_wal(store)
    except Exception as exc:
        store.dispose()
        raise store_error(exc, store.target) from exc
    return store


def ensure_schema(engine: Engine, target: str, *, migrate: bool = True) -> bool:
    """Make sure the database is at :data:`HEAD_REVISION`.

    Returns ``True`` when this call changed the schema (so SQLite can switch to
    WAL once the file is known to be ours). Raises a :class:`StoreError`
    naming ``target`` on refusal or failure; a failed migration is rolled back.
    """
    if read_revision_fast(engine) == HEAD_REVISION:
        return False
    with engine.connect() as connection, schema_lock(connection, target):
        stamped = adopt_legacy(connection, target, dry_run=not migrate)
        current = _current_revision(connection)
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
            command.upgrade(alembic_config(connection), "head")
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


def _current_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    return rows[0] if len(rows) == 1 else None


def adopt_legacy(connection: Connection, target: str, *, dry_run: bool = False) -> str | None:
    """Classify the database under the lock and stamp a seed file by its shape.

    Returns the revision stamped (``None`` when nothing needed stamping).
    Refuses, touching nothing, a database that holds tables we don't know or
    a revision newer than this package. With ``dry_run`` nothing is written.
    """
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    if VERSION_TABLE in tables:
        # Before the table check: a newer animedex-store may have added tables of
        # its own, and the user must hear "upgrade the package", not "not ours".
        _refuse_unknown_revisions(connection, target)
    foreign = sorted(tables - OUR_TABLES)
    if foreign:
        raise UnknownSchemaError(
            f"{target} holds tables animedex-store did not create ({', '.join(foreign)}); "
            "refusing to touch it. Point animedex-store at its own file, database or schema.",
            target=target,
        )
    if VERSION_TABLE in tables:
        return None
    if not tables:
        return None  # empty: revision 0001 builds it
    revision = _seed_revision(connection, inspector, tables, target)
    if not dry_run:
        from alembic.runtime.migration import MigrationContext

        MigrationContext.configure(connection).stamp(_script_directory(), revision)
    return revision


def _refuse_unknown_revisions(connection: Connection, target: str) -> None:
    current = _current_revision(connection)
    if current is None or current == HEAD_REVISION:
        return
    from alembic.util import CommandError

    try:
        known = _script_directory().get_revision(current)
    except CommandError:
        known = None
    if known is None:
        raise SchemaTooNewError(
            f"{target} is at schema revision {current!r}, which this animedex-store does not know: "
            "it was written by a newer version. Upgrade animedex-store (pip install -U animedex-store); "
            "nothing was changed.",
            target=target,
        )


def _seed_revision(connection: Connection, inspector: Inspector, tables: set[str], target: str) -> str:
    """The revision matching a seed-written file: ``0002`` only for a complete v2."""
    columns = {column["name"] for column in inspector.get_columns("cache_rows")} if "cache_rows" in tables else set()
    meta_columns = (
        {column["name"] for column in inspector.get_columns("cache_meta")} if "cache_meta" in tables else None
    )
    if (
        not columns >= SEED_V1_COLUMNS
        or not columns <= SEED_V1_COLUMNS | SEED_V2_COLUMNS
        or (meta_columns is not None and meta_columns != {"key", "value"})
    ):
        raise UnknownSchemaError(
            f"{target} has cache tables of an unknown shape (cache_rows columns: "
            f"{', '.join(sorted(columns)) or 'none'}); refusing to touch it.",
            target=target,
        )
    if columns == SEED_V1_COLUMNS | SEED_V2_COLUMNS and meta_columns is not None:
        version = connection.execute(text("SELECT value FROM cache_meta WHERE key = 'schema_version'")).scalar()
        if version == "2":
            return "0002"
    # v1, or a v2 interrupted between its ALTERs or before writing schema_version:
    # 0002 adds only what is missing.
    return "0001"


@contextlib.contextmanager
def schema_lock(connection: Connection, target: str) -> Iterator[Connection]:
    """Open a transaction holding the engine's migration lock; commit on success.

    SQLite: ``BEGIN IMMEDIATE`` (the write lock, with real transactional DDL
    because engine.py hands BEGIN to us). PostgreSQL: a transaction-scoped
    advisory lock. MariaDB/MySQL: ``GET_LOCK`` (its DDL commits implicitly, so
    each revision is written to be safe to re-run).
    """
    dialect = connection.dialect.name
    if dialect == "sqlite":
        connection.execution_options(animedex_sqlite_begin="IMMEDIATE")
    with connection.begin():
        if dialect == "postgresql":
            # One lock per database and schema: sandboxes and tenants don't wait on each other.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(current_database() || '.' || current_schema() || :tag))"),
                {"tag": ":animedex_store"},
            )
            yield connection
        elif dialect in ("mysql", "mariadb"):
            name = "CONCAT('animedex_store:', LEFT(SHA1(DATABASE()), 40))"
            got = connection.execute(
                text(f"SELECT GET_LOCK({name}, :timeout)"), {"timeout": SERVER_LOCK_TIMEOUT_SECONDS}
            ).scalar()
            if got != 1:
                raise MigrationError(
                    f"timed out after {SERVER_LOCK_TIMEOUT_SECONDS}s waiting for another process's "
                    f"migration of {target}",
                    target=target,
                )
            try:
                yield connection
            finally:
                connection.execute(text(f"SELECT RELEASE_LOCK({name})"))
        else:
            yield connection
