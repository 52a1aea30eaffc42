"""SQLite ``file:`` URIs for POSIX and Windows paths (stdlib only, no I/O).

SQLite's URI rules (https://www.sqlite.org/uri.html): the authority must be
empty or ``localhost`` (anything else is an error unless SQLite was built with
``SQLITE_ALLOW_URI_AUTHORITY``); ``%HH`` escapes are decoded in the path and the
query; the path ends at the first ``?`` or ``#``; on Windows a path that starts
with ``/X:`` loses its leading slash. So:

- POSIX ``/home/a b/c.sqlite``            -> ``file:///home/a%20b/c.sqlite``
- Windows ``C:\\Users\\a b\\c.sqlite``    -> ``file:///C:/Users/a%20b/c.sqlite``
- Windows UNC ``\\\\server\\share\\c.sqlite`` -> ``file:////server/share/c.sqlite``
  (an empty authority and the path ``//server/share/c.sqlite``: the host stays
  in the path, which Windows opens as the UNC path)
- a relative path ``c.sqlite``             -> ``file:c.sqlite``
"""

from __future__ import annotations

from pathlib import PurePath, PureWindowsPath
from urllib.parse import quote

__all__ = ["sqlite_file_uri"]

# Left as they are in the path: separators and the drive letter's colon. Everything
# else outside RFC 3986's unreserved set is %-encoded, ``%``, ``?``, ``#`` and spaces included.
_PATH_SAFE = "/:"


def sqlite_file_uri(path: PurePath, **query: str) -> str:
    """The SQLite ``file:`` URI that opens ``path``, with ``query`` parameters (e.g. ``mode="ro"``).

    ``path`` is read with its own flavour: a :class:`~pathlib.PureWindowsPath`
    gives a Windows URI on any platform. Raises :class:`ValueError` for Windows
    paths a URI cannot express: drive-relative (``C:cache.sqlite``) and device
    paths (``\\\\?\\...``, ``\\\\.\\...``).
    """
    if not isinstance(path, PurePath):
        path = PurePath(path)
    if isinstance(path, PureWindowsPath):
        text = _windows_path(path)
    else:
        text = str(path)
    encoded = quote(text, safe=_PATH_SAFE)
    # Absolute paths get an empty authority: "file://" + "/..." (a UNC path keeps "//host" in the path).
    uri = f"file://{encoded}" if encoded.startswith("/") else f"file:{encoded}"
    if query:
        uri += "?" + "&".join(f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in query.items())
    return uri


def _windows_path(path: PureWindowsPath) -> str:
    """``path`` with forward slashes, absolute ones starting with ``/``."""
    drive = path.drive
    if drive.startswith(("\\\\?\\", "\\\\.\\")):
        raise ValueError(f"{path}: device paths (\\\\?\\, \\\\.\\) have no SQLite file: URI")
    if drive and not path.root and not drive.startswith("\\\\"):
        raise ValueError(f"{path}: a drive-relative path has no SQLite file: URI; make it absolute")
    text = path.as_posix()
    if len(drive) == 2 and path.root:  # C:/Users/... -> /C:/Users/... (SQLite strips that slash on Windows)
        return "/" + text
    return text  # //server/share/... (UNC), /rooted/on/the/current/drive, or relative
