"""SQLite ``file:`` URIs for paths (placeholder until the portable builder lands)."""

from __future__ import annotations

from pathlib import PurePath
from urllib.parse import quote, urlencode

__all__ = ["sqlite_file_uri"]


def sqlite_file_uri(path: PurePath, **query: str) -> str:
    """A ``file:`` URI naming ``path`` with ``query`` parameters."""
    uri = f"file:{quote(str(path))}"
    return f"{uri}?{urlencode(query)}" if query else uri
