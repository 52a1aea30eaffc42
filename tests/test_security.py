"""Security: private files, no code execution from data, masked passwords, redacted headers.

Cached responses and their headers can hold users' tokens, so the cache file
and its WAL companions are readable by the owner only; nothing in the package
can execute stored data; a database password never appears in a message, a
log line, a traceback or CLI output; and ``redact_headers`` keeps chosen
headers out of the database altogether.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import os
import sqlite3
import stat
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic_runner import run_alembic
from cli_runner import cli_runner
from dbfiles import rows
from platforms import posix_file_modes
from reliability import LONG_TTL
from sourcefiles import package_sources
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from animedex_store import CacheRepository
from animedex_store.cli import cli
from animedex_store.errors import StoreError, store_error

SECRET = "s3cr3t-Pa55word"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@posix_file_modes
@pytest.mark.parametrize("mask", [0o000, 0o022])
def test_the_cache_file_its_wal_files_and_created_directories_are_private(tmp_path: Path, mask: int) -> None:
    path = tmp_path / "a" / "b" / "cache.sqlite"
    with umask(mask), CacheRepository(path) as repository:
        repository.set("b", "s", b"token", ttl_seconds=LONG_TTL)
        companions = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
        assert all(companion.exists() for companion in companions)  # WAL, while open
        assert {_mode(file) for file in (path, *companions)} == {0o600}
    assert _mode(tmp_path / "a") == 0o700
    assert _mode(tmp_path / "a" / "b") == 0o700


@posix_file_modes
def test_an_existing_file_and_directory_keep_their_modes(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    path.touch(mode=0o640)
    path.chmod(0o640)  # the owner chose this; we do not override it
    tmp_path.chmod(0o755)
    CacheRepository(path).close()
    assert (_mode(path), _mode(tmp_path)) == (0o640, 0o755)


# -- nothing executes stored data -------------------------------------------------

FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def _code_execution(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for every import of a serialiser that runs code and every eval-like call."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module in FORBIDDEN_MODULES:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            found.append((node.lineno, node.func.id))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("load", "loads") and ast.unparse(node.func.value) in ("pickle", "yaml", "marshal"):
                found.append((node.lineno, ast.unparse(node.func)))
    return found


#: The one module allowed to unpickle, and why: Django's cache stores arbitrary Python objects, and every
#: Django cache backend pickles them (issue 29); its docs say what that means for a shared database.
PICKLE_ALLOWED = {"animedex_store/integrations/django/operations.py": {"pickle", "pickle.loads"}}


def test_no_pickle_eval_or_exec_anywhere() -> None:
    found = [
        f"{path}:{line}: {what}"
        for path, tree in package_sources()
        for line, what in _code_execution(tree)
        if what not in PICKLE_ALLOWED.get(Path(path).as_posix(), ())
    ]
    assert found == []


def test_only_the_django_backend_pickles_and_it_does() -> None:
    """The exception above is used, and only where it is granted."""
    found = {Path(path).as_posix() for path, tree in package_sources() if _code_execution(tree)}
    assert found == set(PICKLE_ALLOWED)


def test_the_code_execution_scan_catches_them() -> None:
    planted = ast.parse(
        "import pickle\nfrom marshal import loads\neval(x)\nexec(y)\nyaml.load(z)\nstatement.compile()\n"
    )
    assert [line for line, _ in _code_execution(planted)] == [1, 2, 3, 4, 5]


# -- passwords never shown ----------------------------------------------------------

UNREACHABLE = [
    f"postgresql+psycopg://animedex:{SECRET}@127.0.0.1:1/cache",
    f"postgresql+psycopg://animedex@127.0.0.1:1/cache?sslmode=disable&password={SECRET}",
    f"mysql+pymysql://animedex:{SECRET}@127.0.0.1:1/cache",
]


def _everything_said(exc: BaseException) -> str:
    """The message, the target and the whole traceback with its chained causes."""
    return "\n".join(
        [str(exc), str(getattr(exc, "target", "")), *traceback.format_exception(type(exc), exc, exc.__traceback__)]
    )


@pytest.mark.parametrize("url", UNREACHABLE, ids=["postgresql", "postgresql-query", "mariadb"])
def test_an_unreachable_servers_password_is_masked_in_errors_and_logs(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreError) as caught:
        CacheRepository(url)
    said = _everything_said(caught.value)
    assert "***" in str(caught.value)
    assert SECRET not in said
    assert SECRET not in caplog.text


def _with_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(password=SECRET).render_as_string(hide_password=False)


@pytest.fixture
def server_url_with_password(server_url: str) -> str:
    """A reachable server sandbox, addressed with a password in its URL: PostgreSQL here
    trusts local connections (so it opens); MariaDB's root has none (so it is refused)."""
    return _with_password(server_url)


def test_a_servers_password_is_masked_in_repr_messages_and_logs(
    server_url_with_password: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    said = []
    try:
        with CacheRepository(server_url_with_password) as repository:
            said += [repr(repository), repository.target]
            with pytest.raises(StoreError) as caught:
                repository.set("b", "nul\x00", b"v", ttl_seconds=LONG_TTL)  # refused by PostgreSQL
            said.append(_everything_said(caught.value))
    except StoreError as refused:  # MariaDB: the password is wrong
        said.append(_everything_said(refused))
    assert said and all("***" in text for text in said)
    assert SECRET not in "\n".join(said)
    assert SECRET not in caplog.text


CLI_COMMANDS = [
    ["info"],
    ["info", "--json"],
    ["stats", "--json"],
    ["purge"],
    ["upgrade"],
    ["get", "b", "s"],
    ["delete", "b", "s"],
    ["vacuum"],
]


@pytest.mark.parametrize("command", CLI_COMMANDS, ids=lambda command: " ".join(command))
def test_cli_output_never_shows_a_password(command: list[str], server_url_with_password: str) -> None:
    for url in [server_url_with_password, *UNREACHABLE]:
        result = cli_runner().invoke(cli, [*command, "--url", url])
        assert SECRET not in result.output + result.stderr, (command, result.output, result.stderr)
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_alembic_cli_output_never_shows_a_password(tmp_path: Path) -> None:
    for url in UNREACHABLE:
        result = run_alembic("-x", f"url={url}", "upgrade", "head", home=tmp_path, expect_ok=False)
        assert result.returncode != 0
        assert "***" in result.stdout + result.stderr
        assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (IntegrityError("INSERT INTO cache_rows ...", ("b", SECRET), sqlite3.IntegrityError("refused")), "refused"),
        (PoolTimeoutError("QueuePool limit of size 5 overflow 10 reached", code="3o7r"), "QueuePool limit"),
    ],
    ids=["wrapped-driver-error", "sqlalchemy-error"],
)
def test_error_messages_keep_only_the_drivers_words(error: Exception, words: str) -> None:
    """SQLAlchemy's own text would quote the statement, its parameters (payloads) and a docs link."""
    message = str(store_error(error, "cache.sqlite"))
    assert words in message
    assert SECRET not in message and "[SQL" not in message and "sqlalche.me" not in message


# -- redact_headers ------------------------------------------------------------------

HEADERS = {
    "Authorization": "Bearer token-1",
    "set-cookie": "session=token-2",
    "X-Api-Key": "token-3",
    "Content-Type": "application/json",
    "ETag": '"abc"',
}


def test_redacted_headers_are_never_stored_whatever_their_case(make_repository: Callable[..., CacheRepository]) -> None:
    repository = make_repository(redact_headers=["authorization", "Set-Cookie", "X-API-KEY"])
    repository.set_with_meta("b", "s", b"v", response_headers=HEADERS, ttl_seconds=LONG_TTL)
    assert repository.get_with_meta("b", "s").headers == {"Content-Type": "application/json", "ETag": '"abc"'}
    plain = make_repository()  # without the option, every header is kept
    plain.set_with_meta("b", "t", b"v", response_headers=HEADERS, ttl_seconds=LONG_TTL)
    assert plain.get_with_meta("b", "t").headers == HEADERS


def test_redacted_header_values_never_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with CacheRepository(path, redact_headers={"Authorization", "Set-Cookie", "X-Api-Key"}) as repository:
        repository.set_with_meta("b", "s", b"v", response_headers=HEADERS, ttl_seconds=LONG_TTL)
    stored = b"".join(row[4] for row in rows(path))
    assert b"application/json" in stored
    assert b"token-" not in stored and b"Authorization" not in stored
    assert b"token-" not in b"".join(file.read_bytes() for file in tmp_path.iterdir())


@pytest.mark.parametrize("names", ["Authorization", b"Authorization", 42, ["Authorization", None]])
def test_redact_headers_must_be_an_iterable_of_names(tmp_path: Path, names: object) -> None:
    with pytest.raises(TypeError, match="redact_headers"):
        CacheRepository(tmp_path / "cache.sqlite", redact_headers=names)
