"""The ``alembic`` command from a checkout (README, "Migrations").

Each test runs this venv's ``alembic`` executable in the repository root with
``HOME``/``XDG_CACHE_HOME`` in a temporary directory, so the default cache path
resolves there and no real cache is touched.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic_runner import REPO_ROOT, revisions, run_alembic
from dbfiles import fingerprint, reading, rows, schema
from legacy import SeedState, write_foreign_database, write_seed_file

from animedex_store.fastpath.targets import URL_ENV_VAR
from animedex_store.migrations.revisions import HEAD_REVISION, alembic_config


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def journal_mode(path: Path) -> str:
    with reading(path) as conn:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]


def test_upgrade_current_history_check_and_downgrade(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    x_url = ("-x", f"url={url(path)}")

    run_alembic(*x_url, "upgrade", "head", home=tmp_path)
    assert schema(path).alembic_versions == (HEAD_REVISION,)
    assert not schema(path).without_rowid  # revision 0005's layout
    assert journal_mode(path) == "wal"  # the CLI switches a file it created, as the open path does

    assert f"{HEAD_REVISION} (head)" in run_alembic(*x_url, "current", home=tmp_path).stdout
    history = run_alembic(*x_url, "history", home=tmp_path).stdout
    assert all(revision in history for revision in revisions())
    assert "No new upgrade operations detected" in run_alembic(*x_url, "check", home=tmp_path).stdout

    run_alembic(*x_url, "downgrade", "-1", home=tmp_path)
    assert schema(path).alembic_versions == (revisions()[-2],)
    assert run_alembic(*x_url, "current", home=tmp_path).stdout.split() == [revisions()[-2]]
    failed = run_alembic(*x_url, "check", home=tmp_path, expect_ok=False)
    assert failed.returncode != 0 and "not up to date" in failed.stdout + failed.stderr

    run_alembic(*x_url, "upgrade", "head", home=tmp_path)
    assert schema(path).alembic_versions == (HEAD_REVISION,)


def test_upgrade_head_sql_prints_the_ddl_without_touching_the_database(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"

    sql = run_alembic("-x", f"url={url(path)}", "upgrade", "head", "--sql", home=tmp_path).stdout

    assert "CREATE TABLE cache_rows" in sql and "WITHOUT ROWID" in sql
    assert "CREATE TABLE cache_meta" in sql and "'schema_version', '2'" in sql
    assert f"'{HEAD_REVISION}'" in sql
    assert not path.exists()


def _ini_with_url(tmp_path: Path, database: Path) -> Path:
    """A copy of the checkout's alembic.ini elsewhere, its scripts still the checkout's, with a URL."""
    text = (REPO_ROOT / "alembic.ini").read_text()
    script_location = "script_location = %(here)s/alembic"
    assert script_location in text and "# sqlalchemy.url =" in text
    text = text.replace(script_location, f"script_location = {REPO_ROOT / 'alembic'}")
    text = text.replace("# sqlalchemy.url =", f"sqlalchemy.url = {url(database)}")
    ini = tmp_path / "elsewhere" / "alembic.ini"
    ini.parent.mkdir()
    ini.write_text(text)
    return ini


@pytest.mark.parametrize("winner", ["x-argument", "environment", "ini", "default-path"])
def test_url_precedence(tmp_path: Path, winner: str) -> None:
    """``-x url=`` > ``$ANIMEDEX_STORE_URL`` > ``sqlalchemy.url`` in the ini > the default path."""
    home = tmp_path / "home"
    candidates = {
        "x-argument": tmp_path / "x.sqlite",
        "environment": tmp_path / "env.sqlite",
        "ini": tmp_path / "ini.sqlite",
        "default-path": home / "xdg-cache" / "animedex" / "cache.sqlite",
    }
    order = list(candidates)
    present = order[order.index(winner) :]  # the winner and every source below it
    args: list[str] = []
    env: dict[str, str] = {}
    if "ini" in present:
        args += ["-c", str(_ini_with_url(tmp_path, candidates["ini"]))]
    if "environment" in present:
        env["ANIMEDEX_STORE_URL"] = url(candidates["environment"])
    if "x-argument" in present:
        args += ["-x", f"url={url(candidates['x-argument'])}"]

    run_alembic(*args, "upgrade", "head", home=home, env=env)

    assert schema(candidates[winner]).alembic_versions == (HEAD_REVISION,)
    assert [name for name, path in candidates.items() if path.exists()] == [winner]


def test_upgrade_head_adopts_a_seed_v1_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    stored = write_seed_file(path, SeedState.V1)

    run_alembic("-x", f"url={url(path)}", "upgrade", "head", home=tmp_path)

    adopted = schema(path)
    assert adopted.alembic_versions == (HEAD_REVISION,) and adopted.schema_version == "2"
    assert not adopted.without_rowid  # revision 0005 rebuilt the seed's table
    assert rows(path) == sorted(row.as_tuple() for row in stored)
    assert "No new upgrade operations detected" in run_alembic("-x", f"url={url(path)}", "check", home=tmp_path).stdout


def test_read_only_commands_do_not_stamp_a_seed_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    write_seed_file(path, SeedState.V2, rows=20)
    before = fingerprint(path)

    assert run_alembic("-x", f"url={url(path)}", "current", home=tmp_path).stdout.strip() == ""

    assert fingerprint(path) == before


@pytest.mark.parametrize("command", ["current", "check"])
def test_read_only_commands_do_not_create_a_missing_file(tmp_path: Path, command: str) -> None:
    path = tmp_path / "new" / "cache.sqlite"

    failed = run_alembic("-x", f"url={url(path)}", command, home=tmp_path / "home", expect_ok=False)

    assert failed.returncode != 0
    assert f"FAILED: {path} does not exist (nothing was created)" in failed.stdout + failed.stderr
    assert not path.parent.exists()


@pytest.mark.parametrize("command", ["current", "check"])
def test_read_only_commands_do_not_write_an_empty_file(tmp_path: Path, command: str) -> None:
    """SQLite writes page 1 of an empty file when a write transaction (BEGIN IMMEDIATE) ends."""
    path = tmp_path / "cache.sqlite"
    path.touch()
    before = fingerprint(path)

    run_alembic("-x", f"url={url(path)}", command, home=tmp_path, expect_ok=False)

    assert path.stat().st_size == 0 and fingerprint(path) == before


def test_programmatic_current_without_a_connection_does_not_stamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Called from code there is no command line to name the command: it counts as read-only."""
    from alembic import command

    path = tmp_path / "cache.sqlite"
    write_seed_file(path, SeedState.V1, rows=5)
    before = fingerprint(path)
    monkeypatch.setenv(URL_ENV_VAR, url(path))

    command.current(alembic_config())

    assert fingerprint(path) == before


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: path.write_bytes(b"plain text, not a database\n" * 40), "not a SQLite database"),
        (write_foreign_database, "did not create (notes)"),
    ],
    ids=["not-sqlite", "foreign-tables"],
)
def test_upgrade_refuses_a_file_that_is_not_ours_untouched(tmp_path: Path, make, reason: str) -> None:
    path = tmp_path / "cache.sqlite"
    make(path)
    before = fingerprint(path)

    failed = run_alembic("-x", f"url={url(path)}", "upgrade", "head", home=tmp_path, expect_ok=False)

    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert f"FAILED: {path}" in output and reason in output
    assert "Traceback" not in output  # the store's message, not a stack
    assert fingerprint(path) == before
