"""Alembic environment for animedex-store.

Two ways in:
* from ``animedex_store.schema`` when a repository opens: it passes its own
  connection (``config.attributes["connection"]``), already inside a locked
  transaction, and has already adopted any seed file;
* from the ``alembic`` command in a checkout: this file resolves the URL
  (``-x url=`` > ``$ANIMEDEX_STORE_URL`` > ``sqlalchemy.url`` > default path),
  takes the same lock and adopts seed files the same way.

It does not call ``logging.config.fileConfig``: that would reset the logging
of an application that migrates on open.
"""

from __future__ import annotations

import os

from alembic.operations import ops
from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError

from alembic import context
from animedex_store import schema
from animedex_store.engine import URL_ENV_VAR, enable_wal, open_engine
from animedex_store.errors import StoreError, store_error
from animedex_store.models import Base
from animedex_store.paths import default_cache_path

config = context.config
# Commands that may write: only these adopt a seed file (stamp it) for real.
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


def _ignore_seed_reflection_quirk(_context, _revision, directives) -> None:
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


def _configure(**kwargs) -> None:
    context.configure(
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
        process_revision_directives=_ignore_seed_reflection_quirk,
        **kwargs,
    )


def _command_name() -> str:
    command = getattr(config.cmd_opts, "cmd", None)
    return command[0].__name__ if command else "upgrade"


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
    store = open_engine(cli_target())
    writes = _command_name() in WRITING_COMMANDS
    try:
        with store.engine.connect() as connection, schema.schema_lock(connection, store.target):
            schema.adopt_legacy(connection, store.target, dry_run=not writes)
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
