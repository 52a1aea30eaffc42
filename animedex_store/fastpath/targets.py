"""What a target names (a SQLite file, a URL or an ``Engine``), decided without opening anything.

Paths, ``None`` and plain ``sqlite:///path`` strings are resolved on the
standard library alone, so opening a cache file never imports SQLAlchemy just
to parse its name. Other URL strings go through SQLAlchemy's ``make_url``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Union

from ..core.defaults import default_cache_path
from ..errors import driver_message

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL

__all__ = ["Target", "URL_ENV_VAR", "DEFAULT_TIMEOUT_SECONDS", "MEMORY_TARGET_NAME", "resolve_target"]

#: What a repository, ``copy`` or a command can be pointed at.
Target = Union[str, "os.PathLike[str]", "URL", "Engine", None]
#: Environment variable naming the database when no target is given.
URL_ENV_VAR = "ANIMEDEX_STORE_URL"
#: How long a write waits for another connection's lock before failing.
DEFAULT_TIMEOUT_SECONDS = 30.0
#: How messages name an in-memory SQLite database (``sqlite://``).
MEMORY_TARGET_NAME = "sqlite:// (in memory)"
#: ``sqlite:///`` + a path: the one URL spelling resolved without SQLAlchemy.
_SQLITE_FILE_PREFIX = "sqlite:///"


def resolve_target(target: Target) -> Path | URL | Engine:
    """What ``target`` names, without opening anything: a SQLite file's absolute
    ``Path`` (``~`` expanded), a ``URL`` (a server, or ``sqlite://`` in memory), or the
    ``Engine`` itself. ``None`` → ``$ANIMEDEX_STORE_URL``, else the default cache file.

    A malformed URL string raises ``ValueError``; anything else ``TypeError``.
    """
    if target is None:
        target = os.environ.get(URL_ENV_VAR) or default_cache_path()
    if isinstance(target, str) and "://" in target:
        target = _plain_sqlite_path(target) or _parse_url(target)
    if isinstance(target, (str, os.PathLike)):
        # Absolute: a pool reconnecting after a chdir must open the same file.
        return Path(target).expanduser().absolute()
    return _resolve_sqlalchemy_object(target)


def _plain_sqlite_path(url: str) -> str | None:
    """The path of ``sqlite:///path`` when SQLAlchemy would read it the same way:
    no query, no percent-escapes, not the in-memory name; else ``None``."""
    path = url[len(_SQLITE_FILE_PREFIX) :] if url.startswith(_SQLITE_FILE_PREFIX) else ""
    if not path or path == ":memory:" or "?" in path or "%" in path:
        return None
    return path


def _parse_url(url: str) -> URL:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except ArgumentError as exc:
        raise ValueError(driver_message(exc)) from exc


def _resolve_sqlalchemy_object(target: object) -> Path | URL | Engine:
    # The caller holds a SQLAlchemy object, so SQLAlchemy is already imported.
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL

    if isinstance(target, Engine):
        return target
    if isinstance(target, URL):
        database = target.database
        if target.get_backend_name() != "sqlite" or not database or database == ":memory:":
            return target
        return Path(database).expanduser().absolute()
    raise TypeError(f"target must be a path, URL string, sqlalchemy URL or Engine, not {type(target).__name__}")
