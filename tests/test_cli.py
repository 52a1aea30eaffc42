"""The ``animedex-store`` command line: help, JSON output, exit codes, and what each command touches.

Every test points the platform cache dir at a temporary directory
(``XDG_CACHE_HOME``), so the default target is never the real user cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import click
import pytest
from alembic_runner import migrate_file
from cli_runner import assert_one_error_line, invoke, invoke_json
from click.testing import CliRunner
from dbfiles import fingerprint, rows
from legacy import SeedState, write_seed_file

from animedex_store import CacheRepository, default_cache_path
from animedex_store.cli import cli
from animedex_store.core.clock import FrozenClock
from animedex_store.fastpath.targets import URL_ENV_VAR
from animedex_store.migrations.revisions import HEAD_REVISION

COMMANDS = ("selftest", "info", "upgrade", "purge")
SECRET_URL = "postgresql+psycopg://u:secret@127.0.0.1:1/x"  # nothing listens on port 1
PAST = datetime(2000, 1, 1, tzinfo=timezone.utc)
CENTURY = 100 * 365 * 86400


def seeded_file(target: Path | str) -> Path | str:
    """A head-revision cache with 3 live rows and 2 rows expired long ago (payloads 1+2+3+4+5 bytes)."""
    clock = FrozenClock(PAST)
    with CacheRepository(target, clock=clock) as repository:
        for size, ttl in ((1, CENTURY), (2, CENTURY), (3, CENTURY), (4, 60), (5, 60)):
            repository.set("anilist", f"media:{size}", b"x" * size, ttl_seconds=ttl)
    return target


# -- help and usage ------------------------------------------------------------
def test_group_help_lists_every_command(runner: CliRunner) -> None:
    result = invoke(runner, "--help")
    for command in COMMANDS:
        assert f"  {command} " in result.stdout


def test_group_help_shows_every_summary_whole_on_80_columns(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--help"], terminal_width=80)
    listed = result.stdout.split("Commands:\n")[1].splitlines()
    assert len(listed) == len(cli.commands)
    assert not [line for line in listed if line.endswith("...")]


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help_with_url_and_json(runner: CliRunner, command: str) -> None:
    result = invoke(runner, command, "--help")
    assert f"Usage: animedex-store {command}" in result.stdout or f"Usage: cli {command}" in result.stdout
    for option in ("--url", "--json", URL_ENV_VAR):
        assert option in result.stdout


@pytest.mark.parametrize(
    "args",
    [("nonsense",), ("info", "--bogus"), ("purge", "extra-argument"), ("info", "--url", "postgresql://h:notaport/x")],
)
def test_usage_errors_exit_2(runner: CliRunner, args: tuple[str, ...]) -> None:
    result = invoke(runner, *args, exit_code=2)
    assert "Usage:" in result.stderr


def test_group_mounts_in_another_click_app(runner: CliRunner, tmp_path: Path) -> None:
    """animedex will mount it as ``animedex cache``."""

    @click.group()
    def animedex() -> None:
        pass

    animedex.add_command(cli, name="cache")
    path = seeded_file(tmp_path / "cache.sqlite")
    result = runner.invoke(animedex, ["cache", "info", "--url", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 5


# -- selftest ------------------------------------------------------------------
def test_selftest_runs_twice_and_leaves_the_cache_dir_empty(runner: CliRunner, cache_dir: Path) -> None:
    for _ in range(2):
        report = invoke_json(runner, "selftest")
        assert report["ok"] is True
        assert all(check["ok"] for check in report["checks"])
        names = " ".join(check["name"] for check in report["checks"])
        for word in ("drop-in", "set then get", "headers", "expires_at", "purge_expired", "removed"):
            assert word in names
        assert list(cache_dir.iterdir()) == []


def test_selftest_text_output(runner: CliRunner) -> None:
    result = invoke(runner, "selftest")
    assert result.stdout.splitlines()[-1].startswith("selftest passed")
    assert all(line.startswith("ok ") for line in result.stdout.splitlines()[:-1])


def test_selftest_never_touches_the_real_cache(runner: CliRunner, cache_dir: Path) -> None:
    real = seeded_file(default_cache_path())
    before = fingerprint(real)
    invoke(runner, "selftest")
    assert fingerprint(real) == before
    assert sorted(path.name for path in cache_dir.iterdir()) == ["cache.sqlite"]


def test_selftest_on_an_explicit_target_keeps_its_rows(runner: CliRunner, tmp_path: Path) -> None:
    path = seeded_file(tmp_path / "mine.sqlite")
    before = rows(path)
    report = invoke_json(runner, "selftest", "--url", str(path))
    assert report["ok"] is True
    assert not any("drop-in" in check["name"] for check in report["checks"])
    # Its scratch rows were purged on a 1970 clock: the user's rows, even expired ones, stay.
    assert rows(path) == before


def test_selftest_failure_exits_1_with_the_failed_check(runner: CliRunner, cache_dir: Path) -> None:
    cache_dir.parent.mkdir(parents=True)
    cache_dir.write_bytes(b"a file where the cache directory should be")
    result = invoke(runner, "selftest", exit_code=1)
    assert result.stdout.splitlines()[0].startswith("FAIL")
    assert result.stdout.splitlines()[-1] == "selftest FAILED"
    assert_one_error_line(result, "selftest failed: drop-in")
    report = invoke_json(runner, "selftest", exit_code=1)
    assert report["ok"] is False and report["checks"][-1]["ok"] is False and report["checks"][-1]["error"]


# -- info ----------------------------------------------------------------------
def test_info_on_a_missing_file_reports_it_and_creates_nothing(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cache.sqlite"
    report = invoke_json(runner, "info", "--url", str(path))
    assert (report["state"], report["exists"], report["rows"], report["revision"]) == ("missing", False, None, None)
    assert report["target"] == str(path)
    assert not path.parent.exists()


def test_info_default_target_is_the_default_cache_file(runner: CliRunner, cache_dir: Path) -> None:
    report = invoke_json(runner, "info")
    assert report["target"] == str(default_cache_path())
    assert not cache_dir.exists()


def test_info_follows_the_environment_variable(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = seeded_file(tmp_path / "env.sqlite")
    monkeypatch.setenv(URL_ENV_VAR, str(path))
    assert invoke_json(runner, "info")["target"] == str(path)


def test_info_counts_rows_expired_rows_and_payload_bytes(runner: CliRunner, tmp_path: Path) -> None:
    path = seeded_file(tmp_path / "cache.sqlite")
    report = invoke_json(runner, "info", "--url", str(path))
    assert report["state"] == "current" and report["revision"] == report["head"] == HEAD_REVISION
    assert (report["rows"], report["expired_rows"], report["payload_bytes"]) == (5, 2, 15)
    text = invoke(runner, "info", "--url", str(path)).stdout
    for line in (f"cache:         {path}", "rows:          5 (2 expired)", "payload:       15 B"):
        assert line in text


def test_info_shows_sizes_for_people(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with CacheRepository(path) as repository:
        for index in range(3):
            repository.set("anilist", f"media:{index}", b"x" * 512 * 1024, ttl_seconds=CENTURY)
    assert "payload:       1.5 MiB" in invoke(runner, "info", "--url", str(path)).stdout


def test_info_on_a_seed_file_reports_it_without_adopting_it(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "seed.sqlite"
    now = int(time.time())
    stored = write_seed_file(path, SeedState.V1, rows=40, now=now)
    before = fingerprint(path)
    report = invoke_json(runner, "info", "--url", str(path))
    assert (report["state"], report["revision"]) == ("legacy", "0001")
    assert report["rows"] == len(stored)
    assert report["expired_rows"] == sum(row.expired(now) for row in stored)
    assert report["payload_bytes"] == sum(len(row.payload) for row in stored)
    assert fingerprint(path) == before


def test_info_on_a_database_behind_reports_its_revision_without_migrating(runner: CliRunner, tmp_path: Path) -> None:
    path = seeded_file(tmp_path / "cache.sqlite")
    migrate_file(path, "0002", downgrade=True)
    before = fingerprint(path)
    report = invoke_json(runner, "info", "--url", str(path))
    assert (report["state"], report["revision"], report["rows"]) == ("behind", "0002", 5)
    assert fingerprint(path) == before


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_that_is_not_a_database_is_refused_and_left_untouched(
    runner: CliRunner, tmp_path: Path, command: str
) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff" + bytes(4096))
    before = fingerprint(path)
    result = invoke(runner, command, "--url", str(path), exit_code=1)
    assert_one_error_line(result, str(path), "not a SQLite database")
    assert fingerprint(path) == before


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_password_is_never_printed(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, command: str, how: str
) -> None:
    if how == "environment":
        monkeypatch.setenv(URL_ENV_VAR, SECRET_URL)
    args = ["--url", SECRET_URL] if how == "option" else []
    for json_flag in ([], ["--json"]):
        result = invoke(runner, command, *args, *json_flag, exit_code=1)
        assert "secret" not in result.output + result.stderr
        assert_one_error_line(result, "u:***@127.0.0.1:1")


# -- upgrade -------------------------------------------------------------------
def test_upgrade_adopts_a_seed_file_then_has_nothing_to_do(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "seed.sqlite"
    write_seed_file(path, SeedState.V1, rows=40)
    before = rows(path)
    report = invoke_json(runner, "upgrade", "--url", str(path))
    assert report == {
        "target": str(path),
        "before": "0001",
        "before_state": "legacy",
        "after": HEAD_REVISION,
        "changed": True,
    }
    assert invoke_json(runner, "info", "--url", str(path))["state"] == "current"
    assert [row[:4] for row in rows(path)] == [row[:4] for row in before]
    assert invoke_json(runner, "upgrade", "--url", str(path))["changed"] is False
    assert "nothing to do" in invoke(runner, "upgrade", "--url", str(path)).stdout


def test_upgrade_creates_a_missing_file_at_head(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    result = invoke(runner, "upgrade", "--url", str(path))
    assert f"migrated {path} from a new database to revision {HEAD_REVISION}" in result.stdout
    assert invoke_json(runner, "info", "--url", str(path))["revision"] == HEAD_REVISION


# -- purge ---------------------------------------------------------------------
def test_purge_removes_only_expired_rows(runner: CliRunner, tmp_path: Path) -> None:
    path = seeded_file(tmp_path / "cache.sqlite")
    assert invoke_json(runner, "purge", "--url", str(path)) == {"target": str(path), "exists": True, "removed": 2}
    assert sorted(row[1] for row in rows(path)) == ["media:1", "media:2", "media:3"]
    assert invoke(runner, "purge", "--url", str(path)).stdout.strip() == f"removed 0 expired row(s) from {path}"


def test_purge_of_a_missing_file_creates_nothing(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "absent.sqlite"
    assert invoke_json(runner, "purge", "--url", str(path)) == {"target": str(path), "exists": False, "removed": 0}
    assert not path.exists()


# -- the installed executable ----------------------------------------------------
def _executable() -> str:
    found = shutil.which("animedex-store", path=str(Path(sys.executable).parent)) or shutil.which("animedex-store")
    if found is None:
        pytest.fail("the animedex-store console script is not installed (pip install -e .)")
    return found


def test_the_installed_executable(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    env.pop(URL_ENV_VAR, None)
    path = seeded_file(tmp_path / "cache.sqlite")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([_executable(), *args], env=env, capture_output=True, text=True, timeout=120)

    info = run("info", "--url", str(path), "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["rows"] == 5
    selftest = run("selftest")
    assert selftest.returncode == 0, selftest.stdout + selftest.stderr
    assert "selftest passed" in selftest.stdout
    failed = run("info", "--url", SECRET_URL)
    assert failed.returncode == 1 and "secret" not in failed.stdout + failed.stderr
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr
    assert run("info", "--no-such-option").returncode == 2


def test_importing_the_library_does_not_import_the_cli() -> None:
    code = "import sys, animedex_store; print(sorted(m for m in ('click', 'animedex_store.cli') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


# -- every engine ----------------------------------------------------------------
def test_commands_on_every_engine(runner: CliRunner, engine_url: str) -> None:
    assert invoke_json(runner, "info", "--url", engine_url)["state"] in ("missing", "empty")  # SQLite: no file yet
    assert invoke_json(runner, "upgrade", "--url", engine_url)["changed"] is True
    seeded_file(engine_url)
    report = invoke_json(runner, "info", "--url", engine_url)
    assert (report["state"], report["rows"], report["expired_rows"], report["payload_bytes"]) == ("current", 5, 2, 15)
    assert invoke_json(runner, "selftest", "--url", engine_url)["ok"] is True
    assert invoke_json(runner, "purge", "--url", engine_url)["removed"] == 2
    assert invoke_json(runner, "info", "--url", engine_url)["rows"] == 3
