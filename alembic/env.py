"""Alembic environment for animedex-store.

Two ways in:
* from ``animedex_store.migrations.opening`` when a repository opens: it passes its own
  connection (``config.attributes["connection"]``), already inside a locked
  transaction, and has already adopted any seed file;
* from the ``alembic`` command in a checkout: this file resolves the URL
  (``-x url=`` > ``$ANIMEDEX_STORE_URL`` > ``sqlalchemy.url`` > default path),
  and takes the same lock and adopts seed files the same way, through
  ``animedex_store.migrations.opening.locked_and_adopted``.

It does not call ``logging.config.fileConfig``: that would reset the logging
of an application that migrates on open.
"""

from __future__ import annotations

import os
from typing import Any

from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError

from alembic import context
from animedex_store.core.defaults import default_cache_path
from animedex_store.errors import StoreError, store_error
from animedex_store.fastpath.targets import URL_ENV_VAR
from animedex_store.migrations.opening import locked_and_adopted
from animedex_store.sql.engine import enable_wal, open_engine
from animedex_store.sql.models import BACKEND_SIZE_INDEX, Base

config = context.config
# Commands that may write: only these lock for writing and adopt a seed file (stamp it) for
# real, and only upgrade creates a missing file. The others must not create or write anything.
WRITING_COMMANDS = {"upgrade", "downgrade", "stamp"}


def cli_target() -> str:
    """The database the ``alembic`` command works on, by the documented precedence."""
    target = (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get(URL_ENV_VAR)
        or config.get_main_option("sqlalchemy.url")
        or str(default_cache_path())
    )
    return target if "://" in target else f"sqlite:///{target}"


def _ignore_seed_reflection_quirk(_context: MigrationContext, _revision: object, directives: list[Any]) -> None:
    """Drop one known false diff from ``alembic check``/autogenerate.

    SQLite reflects the seed's ``cache_meta.key TEXT PRIMARY KEY`` as nullable
    (rowid tables allow NULL in a non-integer primary key); we don't rewrite
    users' tables to change that.
    """
    for upgrade_ops in directives[0].upgrade_ops_list:
        kept = []
        for op in upgrade_ops.ops:
            if isinstance(op, ops.ModifyTableOps) and op.table_name == "cache_meta":
                op.ops = [
                    change
                    for change in op.ops
                    if not (
                        isinstance(change, ops.AlterColumnOp)
                        and change.column_name == "key"
                        and change.modify_nullable is False
                        and change.modify_type is None
                    )
                ]
                if not op.ops:
                    continue
            kept.append(op)
        upgrade_ops.ops = kept


def _built_here(_item: object, name: str | None, kind: str, _reflected: bool, _compare_to: object) -> bool:
    """Whether ``alembic check`` compares an object: 0007's index on an expression only on PostgreSQL
    (MariaDB/MySQL cannot build it, and SQLAlchemy cannot reflect it on SQLite)."""
    if kind == "index" and name == BACKEND_SIZE_INDEX.name:
        return context.get_context().dialect.name == "postgresql"
    return True


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
        process_revision_directives=_ignore_seed_reflection_quirk,
        include_object=_built_here,
        **kwargs,
    )


def _command_name() -> str | None:
    """The ``alembic`` command being run, or ``None`` when Alembic is driven from code.

    Code gets no command line, so a programmatic ``command.current(cfg)`` and
    ``command.upgrade(cfg)`` look alike here. ``None`` counts as read-only: guessing
    "upgrade" would let a read-only call create a missing file or stamp a seed file.
    Code that migrates passes its connection (``migrations.revisions.alembic_config(connection)``),
    as ``migrations.opening.ensure_schema`` does, and never reaches this.
    """
    command = getattr(config.cmd_opts, "cmd", None)
    return command[0].__name__ if command else None


def run_migrations_offline() -> None:
    _configure(url=cli_target(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    command = _command_name()
    writes = command in WRITING_COMMANDS
    try:
        store = open_engine(cli_target(), create=command == "upgrade")
    except FileNotFoundError as exc:
        message = f"{exc.filename} does not exist (nothing was created); `alembic upgrade head` creates it"
        raise CommandError(message) from None
    except StoreError as exc:  # a file or directory that cannot be created
        raise CommandError(str(exc)) from exc
    try:
        with store.engine.connect() as connection, locked_and_adopted(connection, store.target, writes=writes):
            _configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
        if writes:
            enable_wal(store)
    except (StoreError, DBAPIError) as exc:
        # The operator gets "FAILED: <what and which file>" like any Alembic error,
        # not a traceback ending in a driver message that names no file.
        raise CommandError(str(store_error(exc, store.target))) from exc
    finally:
        store.engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
