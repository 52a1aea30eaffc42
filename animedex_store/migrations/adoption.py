"""What a database holds, decided under the migration lock: ours, the seed's, or refused.

* ``alembic_version`` at a revision this package knows: ours;
* seed tables without ``alembic_version``: recognised by their columns (whether
  or not ``cache_rows`` is ``WITHOUT ROWID``) and stamped at the matching
  revision, so the upgrade that follows adds only what is missing; no row is
  rewritten;
* empty: nothing to stamp (revision ``0001`` builds it);
* tables we don't know, or a revision newer than this package: refused,
  touching nothing.
"""

from __future__ import annotations

from sqlalchemy import Connection, inspect, select
from sqlalchemy.engine import Inspector

from ..errors import SchemaTooNewError, UnknownSchemaError
from ..fastpath.opening import VERSION_TABLE, read_revision
from ..sql.models import CacheMeta
from .revisions import HEAD_REVISION, SCHEMA_VERSION_KEY, SEED_V2_SCHEMA_VERSION, script_directory

__all__ = ["adopt_legacy", "current_revision", "SEED_V1_COLUMNS", "SEED_V2_COLUMNS", "OUR_TABLES"]

SEED_V1_COLUMNS = frozenset({"backend", "signature", "payload", "expires_at"})
SEED_V2_COLUMNS = frozenset({"response_headers", "fetched_at"})
OUR_TABLES = frozenset({"cache_rows", "cache_meta", "cache_locks", VERSION_TABLE})


def current_revision(connection: Connection) -> str | None:
    """The one revision in ``alembic_version``; ``None`` without the table or without exactly one row.

    Looks for the table first: on PostgreSQL a failed ``SELECT`` would abort the transaction."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return read_revision(connection.connection)


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

        MigrationContext.configure(connection).stamp(script_directory(), revision)
    return revision


def _refuse_unknown_revisions(connection: Connection, target: str) -> None:
    current = current_revision(connection)
    if current is None or current == HEAD_REVISION:
        return
    from alembic.util import CommandError

    try:
        known = script_directory().get_revision(current)
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
        version = connection.execute(select(CacheMeta.value).where(CacheMeta.key == SCHEMA_VERSION_KEY)).scalar()
        if version == SEED_V2_SCHEMA_VERSION:
            return "0002"
    # v1, or a v2 interrupted between its ALTERs or before writing schema_version:
    # 0002 adds only what is missing.
    return "0001"
