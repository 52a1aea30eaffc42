"""Drive Alembic from tests: the ``alembic`` command of this venv, or in-process on an engine or a file."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from sourcefiles import REPO_ROOT
from sqlalchemy import Engine

from animedex_store.fastpath.targets import URL_ENV_VAR
from animedex_store.migrations.revisions import alembic_config
from animedex_store.sql.engine import open_engine

__all__ = ["REPO_ROOT", "ALEMBIC", "run_alembic", "package_engine", "migrate_engine", "migrate_file", "revisions"]

#: The ``alembic`` executable installed beside this interpreter.
ALEMBIC = Path(sys.executable).with_name("alembic")
CLI_TIMEOUT_SECONDS = 60


def run_alembic(
    *args: str, home: Path, env: dict[str, str] | None = None, expect_ok: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``alembic *args`` from the checkout with ``HOME`` and ``XDG_CACHE_HOME`` under
    ``home`` (so the default cache path is there) and ``$ANIMEDEX_STORE_URL`` unset
    unless ``env`` sets it. Asserts the exit status unless ``expect_ok`` is false."""
    environment = {key: value for key, value in os.environ.items() if key != URL_ENV_VAR}
    environment.update(HOME=str(home), XDG_CACHE_HOME=str(home / "xdg-cache"), **(env or {}))
    result = subprocess.run(
        [str(ALEMBIC), *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
    )
    if expect_ok:
        assert result.returncode == 0, f"alembic {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@contextlib.contextmanager
def package_engine(target: str | Path) -> Iterator[Engine]:
    """An engine on ``target`` configured as the package configures its own (``open_engine``:
    its pragmas, its ``BEGIN``), disposed afterwards. Opening it migrates nothing."""
    store = open_engine(target)
    try:
        yield store.engine
    finally:
        store.engine.dispose()


def migrate_engine(engine: Engine, revision: str, *, downgrade: bool = False) -> None:
    """Upgrade (or downgrade) ``engine``'s database to ``revision`` in-process, in one transaction,
    on a connection handed to Alembic (its cookbook's recipe: no lock, no adoption, just the revisions)."""
    from alembic import command

    with engine.begin() as connection:
        (command.downgrade if downgrade else command.upgrade)(alembic_config(connection), revision)


def migrate_file(path: Path, revision: str, *, downgrade: bool = False) -> None:
    """:func:`migrate_engine` on the SQLite file at ``path``."""
    with package_engine(path) as engine:
        migrate_engine(engine, revision, downgrade=downgrade)


def revisions() -> list[str]:
    """Every revision id, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]
