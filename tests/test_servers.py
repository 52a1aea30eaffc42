"""PostgreSQL and MariaDB: schema, migration under server locks, crashes, reconnects, many processes.

The repository contract itself runs on every engine in ``test_repository.py``;
this file covers what only servers have.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic_runner import revisions, run_alembic
from reliability import JOIN_TIMEOUT_SECONDS, LONG_TTL, context, lost_writes, payload_for, run_children, run_contention
from rowdump import plain_engine, rows
from sqlalchemy import Connection, Engine, bindparam, create_engine, event, insert, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from animedex_store import CacheRepository
from animedex_store.errors import ConnectionFailedError, MigrationError
from animedex_store.migrations.opening import ensure_schema
from animedex_store.migrations.revisions import HEAD_REVISION
from animedex_store.sql.engine import open_engine
from animedex_store.sql.sandbox import SANDBOX_PREFIX
from animedex_store.testing import TEST_URL_ENV_VAR

pytestmark = pytest.mark.server
OpenSandbox = Callable[[str], str]


def server_name(url: str) -> str:
    return "postgresql" if make_url(url).get_backend_name() == "postgresql" else "mariadb"


def versions(url: str) -> list[str]:
    engine = plain_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def table_definitions(url: str) -> dict[str, Any]:
    """Columns (name, type, nullability, collation), primary keys and indexes of our tables."""
    engine = plain_engine(url)
    try:
        with engine.connect() as connection:
            inspector = inspect(connection)
            return {
                table: (
                    [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
                    inspector.get_pk_constraint(table)["constrained_columns"],
                    sorted((i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(table)),
                )
                for table in sorted(inspector.get_table_names())
            }
    finally:
        engine.dispose()


# -- schema -----------------------------------------------------------------------------------


def test_alembic_check_reports_no_drift(server_url: str, tmp_path: Path) -> None:
    CacheRepository(server_url).close()
    result = run_alembic("-x", f"url={server_url}", "check", home=tmp_path)
    assert "No new upgrade operations detected" in result.stdout


def test_alembic_downgrade_and_upgrade(server_url: str, tmp_path: Path) -> None:
    with CacheRepository(server_url) as repository:
        repository.set_with_meta("b", "k", b"kept", response_headers={"h": "v"}, ttl_seconds=LONG_TTL)
    for expected in reversed(revisions()[:-1]):
        run_alembic("-x", f"url={server_url}", "downgrade", "-1", home=tmp_path)
        assert versions(server_url) == [expected]
    with CacheRepository(server_url) as repository:  # migrates back to head, rows kept
        assert repository.get_with_meta("b", "k")[:3] == (b"kept", {}, None)
    assert versions(server_url) == [HEAD_REVISION]
    run_alembic("-x", f"url={server_url}", "downgrade", "base", home=tmp_path)
    assert set(table_definitions(server_url)) == {"alembic_version"} and versions(server_url) == []
    run_alembic("-x", f"url={server_url}", "upgrade", "head", home=tmp_path)
    assert versions(server_url) == [HEAD_REVISION]
    assert set(table_definitions(server_url)) == {"alembic_version", "cache_rows", "cache_meta", "cache_locks"}


def test_dialect_types(server_url: str) -> None:
    CacheRepository(server_url).close()
    columns, primary_key, indexes = table_definitions(server_url)["cache_rows"]
    types = {name: kind.upper() for name, kind, _nullable in columns}
    if server_name(server_url) == "postgresql":
        assert types["payload"] == types["response_headers"] == "BYTEA"
        assert types["backend"] == types["signature"] == "VARCHAR(255)"
    else:
        assert types["payload"] == types["response_headers"] == "LONGBLOB"
        assert "UTF8MB4_NOPAD_BIN" in types["backend"] and "UTF8MB4_NOPAD_BIN" in types["signature"]
    assert types["expires_at"] == types["fetched_at"] == "BIGINT"
    assert primary_key == ["backend", "signature"]
    assert ("ix_cache_rows_expires_at", ("expires_at",)) in indexes
    # Claims (revision 0004) are keyed exactly like the rows they guard.
    columns, primary_key, _indexes = table_definitions(server_url)["cache_locks"]
    lock_types = {name: kind.upper() for name, kind, _nullable in columns}
    assert lock_types["backend"] == lock_types["signature"] == types["backend"]
    assert lock_types["lease_until"] == "BIGINT"
    assert primary_key == ["backend", "signature"]
    assert all(not nullable for _name, _kind, nullable in columns)


def test_a_failed_migration_is_rolled_back_or_resumed(server_url: str) -> None:
    engine = create_engine(server_url)

    @event.listens_for(engine, "before_cursor_execute")
    def fail_at_the_index(_conn, _cursor, statement: str, *_args: Any) -> None:
        if statement.startswith("CREATE INDEX"):
            raise RuntimeError("simulated failure in the last revision")

    postgresql = server_name(server_url) == "postgresql"
    with pytest.raises(MigrationError, match="rolled back" if postgresql else "opening it again resumes"):
        CacheRepository(engine)
    engine.dispose()
    if postgresql:
        assert table_definitions(server_url) == {}  # transactional DDL: not even alembic_version remains
    CacheRepository(server_url).close()
    assert versions(server_url) == [HEAD_REVISION]


# -- crashes during a MariaDB migration ---------------------------------------------------------

DDL = ("CREATE ", "ALTER ", "DROP ")


def migration_statements(url: str) -> list[tuple[str, Any]]:
    """The writing statements a migration from empty runs, with their parameters, in order."""
    engine = create_engine(url)
    seen: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(_conn, _cursor, statement: str, parameters: Any, *_args: Any) -> None:
        if statement.lstrip().upper().startswith((*DDL, "INSERT ", "UPDATE ", "DELETE ")):
            seen.append((statement, parameters))

    CacheRepository(engine).close()
    engine.dispose()
    return seen


def crash_points(statements: list[tuple[str, Any]]) -> list[int]:
    """Where a crash leaves committed work behind: MariaDB commits at every DDL
    statement (with the data changes before it); what follows the last one is lost."""
    return [index + 1 for index, (statement, _) in enumerate(statements) if statement.lstrip().upper().startswith(DDL)]


def test_mariadb_migration_resumes_after_a_crash_at_every_ddl(open_sandbox: OpenSandbox) -> None:
    reference = open_sandbox("mariadb")
    statements = migration_statements(reference)
    points = crash_points(statements)
    assert len(points) >= 6  # alembic_version, cache_rows, cache_meta, two columns, index, cache_locks
    expected = table_definitions(reference)
    for point in points:
        url = open_sandbox("mariadb")
        engine = plain_engine(url)
        with engine.connect() as connection:
            for statement, parameters in statements[:point]:
                connection.exec_driver_sql(statement, parameters)
            connection.commit()
        stored = _insert_rows(engine)
        engine.dispose()
        CacheRepository(url).close()
        assert versions(url) == [HEAD_REVISION], statements[point - 1][0]
        assert table_definitions(url) == expected, statements[point - 1][0]
        assert _read_back(url, stored) == stored


def _insert_rows(engine: Engine) -> dict[str, bytes]:
    """A few rows in the seed's v1 columns, if ``cache_rows`` exists yet; key -> payload."""
    with engine.begin() as connection:
        if not inspect(connection).has_table("cache_rows"):
            return {}
        written = {f"k{i}": payload_for(f"k{i}") for i in range(3)}
        values = [{"backend": "b", "signature": k, "payload": p, "expires_at": 2**40} for k, p in written.items()]
        connection.execute(insert(rows), values)
    return written


def _read_back(url: str, written: dict[str, bytes]) -> dict[str, bytes]:
    with CacheRepository(url) as repository:
        return {key: repository.get("b", key) for key in written}


# -- connections ------------------------------------------------------------------------------


@contextlib.contextmanager
def administration(url: str) -> Iterator[Connection]:
    """An autocommit connection to ``url``'s server, outside the sandbox."""
    parsed = make_url(url)
    if server_name(url) == "postgresql":
        parsed = parsed.difference_update_query(["options"])
    else:
        parsed = parsed.set(database=None)
    engine = create_engine(parsed, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


#: MariaDB's error for KILL of a session that has already ended.
UNKNOWN_THREAD_ID = 1094


def kill_connections(admin: Connection, *, postgresql: bool, **where: str) -> int:
    """Terminate the server sessions matching ``where`` (one column); returns how many."""
    ((column, value),) = where.items()
    if postgresql:
        query = f"SELECT pid FROM pg_stat_activity WHERE {column} = :value AND pid <> pg_backend_pid()"
        sessions = admin.execute(text(query), {"value": value}).scalars().all()
        for pid in sessions:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    else:
        query = f"SELECT id FROM information_schema.processlist WHERE {column} = :value AND id <> CONNECTION_ID()"
        sessions = []
        for session in admin.execute(text(query), {"value": value}).scalars().all():
            try:
                admin.exec_driver_sql(f"KILL {int(session)}")
            except OperationalError as error:  # a session killed earlier stays listed while it ends
                if error.orig.args[0] != UNKNOWN_THREAD_ID:
                    raise
            else:
                sessions.append(session)
    return len(sessions)


def findable(url: str) -> tuple[str, dict[str, str]]:
    """``url`` made recognisable, and the column naming its sessions for :func:`kill_connections`:
    a unique application name on PostgreSQL, the sandbox database on MariaDB."""
    if server_name(url) == "postgresql":
        tag = f"animedex_test_{uuid.uuid4().hex[:12]}"
        tagged = make_url(url).update_query_dict({"application_name": tag})
        return tagged.render_as_string(hide_password=False), {"application_name": tag}
    return url, {"db": make_url(url).database}


def test_killed_sessions_between_calls_are_survived(server_url: str) -> None:
    postgresql = server_name(server_url) == "postgresql"
    url, where = findable(server_url)
    with CacheRepository(url) as repository, administration(url) as admin:
        repository.set("b", "before", b"1", ttl_seconds=60)
        for round_number in range(3):
            assert kill_connections(admin, postgresql=postgresql, **where) >= 1
            repository.set("b", f"after{round_number}", b"2", ttl_seconds=60)  # a write first
            assert kill_connections(admin, postgresql=postgresql, **where) >= 1
            assert repository.get("b", "before") == b"1"  # and a read first
            assert repository.get_with_meta("b", f"after{round_number}").payload == b"2"


def test_a_session_lost_during_a_call_fails_that_call_only(server_url: str) -> None:
    """Without pre-ping (the caller's own engine) a dead pooled session is found by the call
    itself: it raises ConnectionFailedError, and the session is not handed out again."""
    postgresql = server_name(server_url) == "postgresql"
    url, where = findable(server_url)
    engine = create_engine(url, pool_pre_ping=False, pool_size=1)
    try:
        with CacheRepository(engine) as repository, administration(url) as admin:
            repository.set("b", "k", b"v", ttl_seconds=60)
            assert kill_connections(admin, postgresql=postgresql, **where) == 1
            with pytest.raises(ConnectionFailedError):
                repository.get("b", "k")
            assert repository.get("b", "k") == b"v"
    finally:
        engine.dispose()


def test_server_refusing_then_accepting_connections(server_url: str) -> None:
    """While the account cannot log in, calls fail with ConnectionFailedError (password
    masked); once it can again, the same repository carries on."""
    postgresql = server_name(server_url) == "postgresql"
    account, password = f"animedex_test_{uuid.uuid4().hex[:12]}", f"pw-{uuid.uuid4().hex}"
    with administration(server_url) as admin:
        if postgresql:
            schema = make_url(server_url).query["options"].split()[0].removeprefix("-csearch_path=")
            admin.exec_driver_sql(f"CREATE ROLE {account} LOGIN PASSWORD '{password}'")
            admin.exec_driver_sql(f"GRANT ALL ON SCHEMA {schema} TO {account}")
            lock, unlock = f"ALTER ROLE {account} NOLOGIN", f"ALTER ROLE {account} LOGIN"
            drop = [f"DROP OWNED BY {account}", f"DROP ROLE {account}"]
        else:
            user = f"'{account}'@'%%'"  # any host; %% because PyMySQL formats the statement
            admin.exec_driver_sql(f"CREATE USER {user} IDENTIFIED BY '{password}'")
            admin.exec_driver_sql(f"GRANT ALL ON `{make_url(server_url).database}`.* TO {user}")
            lock, unlock = f"ALTER USER {user} ACCOUNT LOCK", f"ALTER USER {user} ACCOUNT UNLOCK"
            drop = [f"DROP USER {user}"]
        url = make_url(server_url).set(username=account, password=password).render_as_string(hide_password=False)
        try:
            with CacheRepository(url) as repository:
                repository.set("b", "k", b"kept", ttl_seconds=60)
                admin.exec_driver_sql(lock)
                kill_connections(admin, postgresql=postgresql, **{"usename" if postgresql else "user": account})
                for call in (lambda: repository.get("b", "k"), lambda: repository.set("b", "k", b"x", ttl_seconds=1)):
                    with pytest.raises(ConnectionFailedError) as raised:
                        call()
                    assert password not in str(raised.value) and f"{account}:***@" in str(raised.value)
                admin.exec_driver_sql(unlock)
                assert repository.get("b", "k") == b"kept"
                repository.set("b", "k", b"new", ttl_seconds=60)
                assert repository.get("b", "k") == b"new"
        finally:
            for statement in drop:
                admin.exec_driver_sql(statement)


def test_opening_with_a_wrong_password_names_the_url_masked(server_url: str) -> None:
    url = make_url(server_url).set(username="animedex_nobody", password="n0t-the-s3cret")
    with pytest.raises(ConnectionFailedError) as raised:
        CacheRepository(url.render_as_string(hide_password=False))
    assert "n0t-the-s3cret" not in str(raised.value) and "animedex_nobody:***@" in str(raised.value)


# -- many processes ---------------------------------------------------------------------------

PROCESSES = 8
OPERATIONS = 500


def first_open(url: str, start: Any, results: Any) -> None:
    """Wait for the others, open ``url`` at the same moment, and report whether this process migrated it."""
    try:
        store = open_engine(url)
        try:
            start.wait(JOIN_TIMEOUT_SECONDS)
            migrated = ensure_schema(store.engine, store.target)
        finally:
            store.engine.dispose()
        key = f"process {os.getpid()}"
        with CacheRepository(url) as repository:
            repository.set("opened", key, b"ok", ttl_seconds=LONG_TTL)
        results.put((key, migrated, None))
    except Exception as exc:  # reported to the parent, which expects none
        results.put((None, None, repr(exc)))


def test_concurrent_first_open_migrates_once(server_url: str) -> None:
    start = context().Barrier(PROCESSES)
    outcomes = run_children(first_open, [(server_url, start)] * PROCESSES)
    assert [error for _key, _migrated, error in outcomes if error] == []
    assert sorted(migrated for _key, migrated, _error in outcomes) == [False] * (PROCESSES - 1) + [True]
    assert versions(server_url) == [HEAD_REVISION]
    with CacheRepository(server_url) as repository:
        assert all(repository.get("opened", key) == b"ok" for key, _migrated, _error in outcomes)


def test_processes_on_one_server_lose_nothing(server_url: str) -> None:
    results = run_contention(server_url, PROCESSES, OPERATIONS)
    assert [f"worker {result.worker}: {error}" for result in results for error in result.errors] == []
    assert sum(sum(result.operations.values()) for result in results) == PROCESSES * OPERATIONS
    assert sum(len(result.written) + len(result.written_with_meta) for result in results) > PROCESSES * OPERATIONS // 4
    assert lost_writes(server_url, results) == []


# -- the pytest plugin ------------------------------------------------------------------------

APPLICATION_TESTS = """
import os


def record(repository):
    with open(os.environ["TARGETS_FILE"], "a") as targets:
        targets.write(repository.target + "\\n")


def test_first_writes_and_expires(cache_repository, frozen_clock):
    record(cache_repository)
    cache_repository.set("b", "k", b"v", ttl_seconds=10)
    assert cache_repository.get("b", "k") == b"v"
    frozen_clock.advance(10)
    assert cache_repository.get("b", "k") is None


def test_second_starts_empty(cache_repository):
    record(cache_repository)
    assert cache_repository.get_with_meta("b", "k", include_expired=True) is None
"""


@pytest.mark.parametrize("how", ["option", "environment"])
def test_plugin_runs_cache_repository_on_a_server(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, server_base_url: str, how: str
) -> None:
    targets = pytester.path / "targets.txt"
    monkeypatch.setenv("TARGETS_FILE", str(targets))
    pytester.makepyfile(test_application=APPLICATION_TESTS)
    options = ["-p", "no:cacheprovider", "-p", "no:asyncio"]  # sync tests: no async plugin
    if how == "option":
        result = pytester.runpytest(*options, f"--animedex-store-url={server_base_url}")
    else:
        monkeypatch.setenv(TEST_URL_ENV_VAR, server_base_url)
        result = pytester.runpytest(*options)
    result.assert_outcomes(passed=2)
    sandboxes = [re.search(rf"{SANDBOX_PREFIX}[0-9a-f]+", line).group() for line in targets.read_text().splitlines()]
    assert len(set(sandboxes)) == 2  # one schema/database per test
    assert all(server_name(line) == server_name(server_base_url) for line in targets.read_text().splitlines())
    with administration(server_base_url) as admin:
        left = admin.execute(
            text("SELECT schema_name FROM information_schema.schemata WHERE schema_name IN :names").bindparams(
                bindparam("names", expanding=True)
            ),
            {"names": sandboxes},
        ).all()
    assert left == []  # dropped after each test
