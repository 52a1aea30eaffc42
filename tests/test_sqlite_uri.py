"""``sqlite_file_uri``: SQLite ``file:`` URIs for POSIX, Windows drive-letter and UNC paths."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from urllib.parse import unquote

import pytest
from fresh_interpreter import HEAVY

from animedex_store.fastpath import uri as sqlite_uri
from animedex_store.fastpath.uri import sqlite_file_uri


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (PurePosixPath("/home/a/cache.sqlite"), "file:///home/a/cache.sqlite"),
        (PurePosixPath("/home/a b/cache.sqlite"), "file:///home/a%20b/cache.sqlite"),
        (PurePosixPath("/tmp/100%/why?/#1/x.sqlite"), "file:///tmp/100%25/why%3F/%231/x.sqlite"),
        (PurePosixPath("/tmp/é/x.sqlite"), "file:///tmp/%C3%A9/x.sqlite"),
        (PurePosixPath("/tmp/a&b=c/x.sqlite"), "file:///tmp/a%26b%3Dc/x.sqlite"),
        (PurePosixPath("//two/slashes.sqlite"), "file:////two/slashes.sqlite"),
        (PurePosixPath("cache.sqlite"), "file:cache.sqlite"),
        (PurePosixPath("sub dir/cache.sqlite"), "file:sub%20dir/cache.sqlite"),
        (PureWindowsPath(r"C:\Users\a b\cache.sqlite"), "file:///C:/Users/a%20b/cache.sqlite"),
        (PureWindowsPath("C:/Users/a/cache.sqlite"), "file:///C:/Users/a/cache.sqlite"),
        (PureWindowsPath(r"d:\100%\#?\x.sqlite"), "file:///d:/100%25/%23%3F/x.sqlite"),
        (PureWindowsPath(r"\\server\share\x.sqlite"), "file:////server/share/x.sqlite"),
        (PureWindowsPath(r"\\server\share\a b\x.sqlite"), "file:////server/share/a%20b/x.sqlite"),
        (PureWindowsPath(r"\cache.sqlite"), "file:///cache.sqlite"),
        (PureWindowsPath(r"sub\cache.sqlite"), "file:sub/cache.sqlite"),
    ],
)
def test_uri_for(path: PurePath, expected: str) -> None:
    assert sqlite_file_uri(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        PurePosixPath("/home/a b/c.sqlite"),
        PureWindowsPath(r"C:\Users\a b\cache.sqlite"),
        PureWindowsPath(r"\\server\share\x.sqlite"),
        PurePosixPath("rel/x.sqlite"),
    ],
)
def test_the_authority_is_always_empty(path: PurePath) -> None:
    """SQLite refuses any authority but "" and "localhost" (unless built with SQLITE_ALLOW_URI_AUTHORITY)."""
    rest = sqlite_file_uri(path)[len("file:") :]
    if rest.startswith("//"):
        assert rest[2] == "/", rest


@pytest.mark.parametrize(
    "path",
    [
        PurePosixPath("/a/100%/b c/d?e/f#g/h.sqlite"),
        PureWindowsPath(r"C:\100%\b c\f#g\h.sqlite"),
        PureWindowsPath(r"\\host\share\x y\z.sqlite"),
    ],
)
def test_the_path_decodes_back_to_the_file(path: PurePath) -> None:
    """What SQLite does with the path: up to ``?``/``#``, %HH decoded, Windows' ``/X:`` slash dropped."""
    uri = sqlite_file_uri(path, mode="ro")
    assert "#" not in uri and " " not in uri
    body = uri[len("file://") :].split("?", 1)[0]
    decoded = unquote(body)
    if isinstance(path, PureWindowsPath) and decoded[2:3] == ":":
        decoded = decoded[1:]
    assert type(path)(decoded) == path


def test_query_parameters_are_appended_and_encoded() -> None:
    path = PurePosixPath("/c.sqlite")
    assert sqlite_file_uri(path, mode="ro", immutable="1") == "file:///c.sqlite?mode=ro&immutable=1"
    assert sqlite_file_uri(path, vfs="a&b=c") == "file:///c.sqlite?vfs=a%26b%3Dc"


@pytest.mark.parametrize(
    "path",
    [PureWindowsPath("C:cache.sqlite"), PureWindowsPath(r"\\?\C:\x.sqlite"), PureWindowsPath(r"\\.\C:\x.sqlite")],
)
def test_windows_paths_a_uri_cannot_express_are_refused(path: PureWindowsPath) -> None:
    with pytest.raises(ValueError, match="URI"):
        sqlite_file_uri(path)


def test_a_real_file_opens_read_only_through_the_uri(tmp_path: Path) -> None:
    """On this machine: a file under a directory with every awkward character opens through its URI."""
    directory = tmp_path / "a b%20 c#d?e é"
    if sys.platform == "win32":  # ``?`` is not allowed in Windows file names
        directory = tmp_path / "a b%20 c#d é"
    directory.mkdir()
    path = directory / "cache.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (v TEXT)")
        connection.execute("INSERT INTO t VALUES ('here')")
    connection.close()
    uri = sqlite_file_uri(path, mode="ro")
    connection = sqlite3.connect(uri, uri=True)
    try:
        assert connection.execute("SELECT v FROM t").fetchall() == [("here",)]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            connection.execute("INSERT INTO t VALUES ('no')")
    finally:
        connection.close()
    assert sorted(p.name for p in directory.iterdir()) == ["cache.sqlite"]


def test_the_module_is_standard_library_only() -> None:
    """Loaded on its own (not through the package), it works and imports none of the dependencies."""
    code = (
        "import importlib.util, sys; from pathlib import PureWindowsPath\n"
        f"spec = importlib.util.spec_from_file_location('sqlite_uri', {sqlite_uri.__file__!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print(module.sqlite_file_uri(PureWindowsPath('C:/x y.sqlite')))\n"
        f"print(sorted(m for m in {(*HEAVY, 'platformdirs')!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == "file:///C:/x%20y.sqlite\n[]\n"
