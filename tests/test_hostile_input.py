"""Hostile input: every value round-trips exactly or fails with a clear error, on every engine.

Keys that look like SQL or LIKE patterns, control characters, emoji; keys far
over the limit; empty and 50 MB payloads; headers with non-ASCII and control
characters. And a source scan: the package never builds SQL from strings
except the few reviewed constants listed here.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from reliability import LONG_TTL
from sourcefiles import package_sources

from animedex_store import CacheRepository
from animedex_store.sql.models import KEY_MAX_LENGTH

HOSTILE_KEYS = [
    "it's",
    'say "hi"',
    "'; DROP TABLE cache_rows; --",
    "100%",
    "%",
    "_",
    "a_c",
    "%_%",
    "back\\slash",
    "\\%",
    "tab\there",
    "line\nbreak\r\n",
    "\x1b[31mred\x1b[0m",
    "\u202eright-to-left",
    "zero\u200bwidth",
    "\U0001f600 emoji",
    "\U0001f600" * KEY_MAX_LENGTH,  # the limit counts characters, not bytes
    "x" * KEY_MAX_LENGTH,
    "",
    " ",
]


def test_hostile_keys_round_trip_exactly_and_match_only_themselves(
    make_repository: Callable[..., CacheRepository],
) -> None:
    repository = make_repository()
    for index, key in enumerate(HOSTILE_KEYS):
        repository.set(key, key, f"{index}".encode(), ttl_seconds=LONG_TTL)
    # "a_c" and "abc", "%" and "100%": a key used as a pattern must match nothing else.
    repository.set("abc", "abc", b"decoy", ttl_seconds=LONG_TTL)
    for index, key in enumerate(HOSTILE_KEYS):
        assert repository.get(key, key) == f"{index}".encode(), repr(key)
        assert repository.get_with_meta(key, key).payload == f"{index}".encode()
        assert repository.get("abc", key) is None
    assert repository.clear("%") == 1
    assert repository.get("100%", "100%") == str(HOSTILE_KEYS.index("100%")).encode()
    for key in HOSTILE_KEYS:
        assert repository.delete(key, key) == (key != "%"), repr(key)  # ("%", "%") went with clear("%")
    assert repository.get("abc", "abc") == b"decoy"


def test_nul_in_a_key_round_trips_or_is_refused_as_a_value_error(
    make_repository: Callable[..., CacheRepository], engine_url: str
) -> None:
    repository = make_repository()
    key = "before\x00after"
    if engine_url.startswith("postgresql"):
        # PostgreSQL text cannot hold NUL: a ValueError naming the database, nothing written.
        with pytest.raises(ValueError, match="cannot store this value"):
            repository.set("b", key, b"v", ttl_seconds=LONG_TTL)
        assert repository.get("b", "before") is None
        return
    repository.set("b", key, b"v", ttl_seconds=LONG_TTL)
    assert repository.get("b", key) == b"v"
    assert repository.get("b", "before") is None


@pytest.mark.parametrize("key", ["lone \ud800 surrogate", "\udfff"])
def test_text_that_is_not_valid_unicode_is_a_value_error(
    make_repository: Callable[..., CacheRepository], key: str
) -> None:
    repository = make_repository()
    with pytest.raises(ValueError, match="surrogates not allowed"):
        repository.set("b", key, b"v", ttl_seconds=LONG_TTL)
    with pytest.raises(ValueError, match="surrogates not allowed"):
        repository.set_with_meta("b", "k", b"v", response_headers={"X": key}, ttl_seconds=LONG_TTL)
    assert repository.get("b", "k") is None
    assert repository.stats().rows == 0


@pytest.mark.parametrize("length", [KEY_MAX_LENGTH + 1, 1024 * 1024])
def test_keys_over_the_limit_are_refused_before_the_database_is_touched(tmp_path: Path, length: int) -> None:
    long_key = "k" * length
    path = tmp_path / "cache.sqlite"
    with CacheRepository(path) as repository:
        calls = [
            lambda: repository.set(long_key, "s", b"v", ttl_seconds=1),
            lambda: repository.set("b", long_key, b"v", ttl_seconds=1),
            lambda: repository.set_with_meta("b", long_key, b"v", response_headers={}, ttl_seconds=1),
            lambda: repository.get("b", long_key),
            lambda: repository.get_with_meta(long_key, "s"),
            lambda: repository.delete("b", long_key),
            lambda: repository.set_many("b", {long_key: b"v"}, ttl_seconds=1),
        ]
        for call in calls:
            with pytest.raises(ValueError, match=f"is {length} characters long; the limit is {KEY_MAX_LENGTH}"):
                call()
        assert repository.stats().rows == 0


def test_empty_and_50_mb_payloads_round_trip_exactly(
    make_repository: Callable[..., CacheRepository], engine_url: str
) -> None:
    repository = make_repository()
    repository.set("b", "empty", b"", ttl_seconds=LONG_TTL)
    assert repository.get("b", "empty") == b""  # empty, not missing
    big = os.urandom(50 * 1024 * 1024)
    if engine_url.startswith("mysql"):
        # MariaDB/MySQL refuse statements over the server's max_allowed_packet
        # (16 MiB by default) by dropping the connection: that must read clearly.
        try:
            repository.set("b", "big", big, ttl_seconds=LONG_TTL)
        except ValueError as exc:
            assert "max_allowed_packet" in str(exc)
            assert repository.get("b", "big") is None
            repository.set("b", "after", b"still works", ttl_seconds=LONG_TTL)
            assert repository.get("b", "after") == b"still works"
            return
    else:
        repository.set("b", "big", big, ttl_seconds=LONG_TTL)
    assert repository.get("b", "big") == big
    assert repository.get_with_meta("b", "big").payload == big


HOSTILE_HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "X-Title": "\u9032\u6483\u306e\u5de8\u4eba \u2014 caf\u00e9 \U0001f600",
    "X-Control": "nul\x00 bell\x07 escape\x1b cr\r lf\n tab\t del\x7f",
    "X-Quotes": "'\"\\ {}[],:",
    "": "",
    "x-" + "\u00fc" * 100: "v" * 100_000,
    "\u0130stanbul": "dotted capital I",
    "\u2028line separator": "\u2029paragraph separator",
}


def test_hostile_headers_round_trip_exactly(make_repository: Callable[..., CacheRepository]) -> None:
    repository = make_repository()
    repository.set_with_meta("b", "k", b"v", response_headers=HOSTILE_HEADERS, ttl_seconds=LONG_TTL)
    assert repository.get_with_meta("b", "k").headers == HOSTILE_HEADERS
    repository.close()
    assert make_repository().get_with_meta("b", "k").headers == HOSTILE_HEADERS


# -- no SQL built from strings ---------------------------------------------------

_SQL_START = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|PRAGMA|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|"
    r"RELEASE|VACUUM|OPTIMIZE|ANALYZE|WITH|SET|GRANT|TRUNCATE|LOCK)\b",  # our SQL is written in capitals
)
# The reviewed exceptions: (file, interpolated expression) -> why it is not user input.
ALLOWED_INTERPOLATIONS = {
    ("animedex_store/fastpath/sqlite_file.py", "busy_timeout_ms"): "int(timeout * 1000), computed beside it",
    ("animedex_store/sql/engine.py", "mode"): "our execution option: '' or 'IMMEDIATE'",
    ("animedex_store/migrations/lock.py", "name"): "a constant SQL expression defined beside it",
    ("animedex_store/sql/sandbox.py", "quoted"): "a name sandbox() generates, quoted by the dialect",
}


def _is_constant(node: ast.expr) -> bool:
    """An UPPER_CASE module constant, or an attribute that is one."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return bool(name) and name.upper() == name


def _string_built_sql(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, interpolated expression) of every SQL string built from non-constant pieces.

    Error messages (anything under a ``raise``) may quote SQL words freely.
    """
    messages = {id(node) for raised in ast.walk(tree) if isinstance(raised, ast.Raise) for node in ast.walk(raised)}
    found = []
    for node in ast.walk(tree):
        if id(node) in messages:
            continue
        if isinstance(node, ast.JoinedStr):
            head = node.values[0] if node.values else None
            if isinstance(head, ast.Constant) and _SQL_START.match(str(head.value)):
                pieces = [part.value for part in node.values if isinstance(part, ast.FormattedValue)]
                found += [(node.lineno, ast.unparse(piece)) for piece in pieces if not _is_constant(piece)]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
            if isinstance(node.left, ast.Constant) and _SQL_START.match(str(node.left.value)):
                if not _is_constant(node.right):
                    found.append((node.lineno, ast.unparse(node.right)))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            target = node.func.value
            if isinstance(target, ast.Constant) and _SQL_START.match(str(target.value)):
                found.append((node.lineno, ast.unparse(node)))
    return found


def test_no_sql_is_built_from_strings() -> None:
    offending = [
        f"{path}:{line}: {piece}"
        for path, tree in package_sources()
        for line, piece in _string_built_sql(tree)
        if (path, piece) not in ALLOWED_INTERPOLATIONS
    ]
    assert offending == [], "SQL built from strings (use SQLAlchemy constructs or bound parameters)"


def test_the_sql_scan_catches_string_built_sql() -> None:
    planted = ast.parse(
        "cursor.execute(f'SELECT * FROM t WHERE k = {key}')\n"
        "cursor.execute('DELETE FROM t WHERE k = %s' % key)\n"
        "cursor.execute('UPDATE t SET v = {}'.format(value))\n"
        "cursor.execute(f'SELECT version_num FROM {VERSION_TABLE}')\n"
        "raise StoreError(f'SELECT failed on {target}')\n"
    )
    assert [line for line, _ in _string_built_sql(planted)] == [1, 2, 3]
