"""The revision scripts: where they are, and the newest of them.

Standard library only at import: the fast path is handed :data:`HEAD_REVISION`
on every open, and Alembic loads only when a script is really needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

#: ``progress(done, total)``: rows a long migration step has done so far, of ``total``.
Progress = Callable[[int, int], None]

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy import Connection

__all__ = [
    "HEAD_REVISION",
    "Progress",
    "SCHEMA_VERSION_KEY",
    "SEED_V1_SCHEMA_VERSION",
    "SEED_V2_SCHEMA_VERSION",
    "script_location",
    "alembic_config",
    "script_directory",
]

#: The newest revision in ``alembic/versions``; a test keeps it equal to Alembic's head.
HEAD_REVISION = "0007"

#: The ``cache_meta`` key the seed's own code reads to decide whether to add its v2 columns, and
#: its values: revision ``0002`` writes ``'2'`` (kept while ``cache_rows`` has the seed's v2
#: columns, so an old animedex opening the file works) and its downgrade ``'1'``; adoption reads it.
SCHEMA_VERSION_KEY = "schema_version"
SEED_V1_SCHEMA_VERSION = "1"
SEED_V2_SCHEMA_VERSION = "2"


def script_location() -> Path:
    """Folder of the revision scripts: the source tree's ``alembic/`` when this is
    a checkout (editable installs copy force-included files, which go stale),
    else the copy shipped in the wheel as ``animedex_store/_alembic``."""
    package_dir = Path(__file__).resolve().parent.parent
    source_tree = package_dir.parent
    if (source_tree / "alembic.ini").is_file() and (source_tree / "alembic" / "env.py").is_file():
        return source_tree / "alembic"
    return package_dir / "_alembic"


def alembic_config(connection: Connection | None = None, *, progress: Progress | None = None) -> Config:
    """An Alembic ``Config`` for our scripts, optionally bound to an open connection; a revision that
    rewrites many rows (``0005`` on SQLite) reports to ``progress``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location()))
    if connection is not None:
        config.attributes["connection"] = connection
    if progress is not None:
        config.attributes["progress"] = progress
    return config


def script_directory() -> ScriptDirectory:
    """Alembic's view of the revision scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())
