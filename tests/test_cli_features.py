"""``animedex-store`` stats, get, delete, clear and vacuum: output, JSON, exit codes, confirmations."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cli_runner import assert_one_error_line, invoke, invoke_json
from click.testing import CliRunner
from test_cli import CENTURY, PAST

from animedex_store import CacheRepository, cli
from animedex_store.cli import group, rows
from animedex_store.core.clock import FrozenClock
from animedex_store.fastpath.targets import URL_ENV_VAR

COMMANDS = ("stats", "get", "delete", "clear", "vacuum")
BINARY = b'\x00\xff{"binary": true}\r\n\x00'  # no trailing newline may be added or lost


def seed(target: str | Path) -> str:
    """Live rows written now (anilist: 2 rows, jikan: 1) and one anilist row expired in 2000."""
    with CacheRepository(target) as repository:
        repository.set_with_meta("anilist", "q1", BINARY, response_headers={"ETag": "v1"}, ttl_seconds=CENTURY)
        repository.set("anilist", "q2", b"x" * 50_000, ttl_seconds=CENTURY)
        repository.set("jikan", "anime/1", b"12345", ttl_seconds=CENTURY)
    with CacheRepository(target, clock=FrozenClock(PAST)) as repository:
        repository.set("anilist", "old", b"stale body", ttl_seconds=60)
    return str(target)


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return seed(tmp_path / "cache.sqlite")


def signatures(target: str) -> list[tuple[str, str]]:
    with CacheRepository(target) as repository:
        stats = repository.stats()
    return sorted((name, part.rows) for name, part in stats.backends.items())


# -- help ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help_with_url_and_json(runner: CliRunner, command: str) -> None:
    result = invoke(runner, command, "--help")
    for option in ("--url", "--json", URL_ENV_VAR):
        assert option in result.stdout
    # The one-line summaries in the group's help are not cut off.
    assert "..." not in [line for line in invoke(runner, "--help").stdout.splitlines() if f"  {command} " in line][0]


# -- stats --------------------------------------------------------------------------------------


def test_stats_json_counts_per_backend(runner: CliRunner, cache: str) -> None:
    report = invoke_json(runner, "stats", "--url", cache)
    assert (report["rows"], report["expired_rows"], report["payload_bytes"]) == (4, 1, len(BINARY) + 50_015)
    assert report["backends"]["anilist"]["rows"] == 3
    assert report["backends"]["jikan"] == {
        "rows": 1,
        "expired_rows": 0,
        "payload_bytes": 5,
        "oldest_fetched_at": report["backends"]["jikan"]["newest_fetched_at"],
        "newest_fetched_at": report["backends"]["jikan"]["newest_fetched_at"],
    }
    assert report["oldest_fetched_at"] == PAST.isoformat()


def test_stats_text_is_human_readable(runner: CliRunner, cache: str) -> None:
    out = invoke(runner, "stats", "--url", cache).stdout
    assert "rows:     4 (1 expired)" in out
    assert "payload:  48.9 KiB" in out
    assert "2000-01-01 00:00:00 UTC to " in out
    header, anilist, jikan = out.splitlines()[-3:]
    assert header.split() == ["BACKEND", "ROWS", "EXPIRED", "PAYLOAD", "NEWEST", "FETCH"]
    assert anilist.split()[:5] == ["anilist", "3", "1", "48.9", "KiB"]
    assert jikan.split()[:4] == ["jikan", "1", "0", "5"]


def test_stats_on_a_missing_file_reports_it_and_creates_nothing(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nope.sqlite"
    assert invoke_json(runner, "stats", "--url", str(missing))["exists"] is False
    assert "no cache at" in invoke(runner, "stats", "--url", str(missing)).stdout
    assert not missing.exists()


# -- get ----------------------------------------------------------------------------------------


def test_get_writes_the_payload_byte_for_byte(runner: CliRunner, cache: str) -> None:
    assert invoke(runner, "get", "anilist", "q1", "--url", cache).stdout_bytes == BINARY


def test_get_meta_prints_metadata_as_json_without_the_payload(runner: CliRunner, cache: str) -> None:
    meta = json.loads(invoke(runner, "get", "anilist", "q1", "--meta", "--url", cache).stdout)
    assert meta["headers"] == {"ETag": "v1"}
    assert meta["is_stale"] is False and meta["payload_bytes"] == len(BINARY)
    fetched = datetime.fromisoformat(meta["fetched_at"])
    assert fetched.tzinfo is not None
    assert datetime.fromisoformat(meta["expires_at"]) - fetched == timedelta(seconds=CENTURY)
    assert "payload_base64" not in meta


def test_get_json_carries_the_payload_in_base64(runner: CliRunner, cache: str) -> None:
    report = invoke_json(runner, "get", "anilist", "q1", "--url", cache)
    assert base64.b64decode(report["payload_base64"]) == BINARY


def test_get_expired_row_needs_include_expired(runner: CliRunner, cache: str) -> None:
    result = invoke(runner, "get", "anilist", "old", "--url", cache, exit_code=1)
    assert_one_error_line(result, "expired at 2000-01-01 00:01:00 UTC", "--include-expired")
    assert result.stdout == ""
    assert invoke(runner, "get", "anilist", "old", "--include-expired", "--url", cache).stdout_bytes == b"stale body"
    meta = json.loads(invoke(runner, "get", "anilist", "old", "--include-expired", "--meta", "--url", cache).stdout)
    assert meta["is_stale"] is True and meta["expires_at"] == "2000-01-01T00:01:00+00:00"


@pytest.mark.parametrize(
    ("old_flag", "command"),
    [("--stale", ["get", "anilist", "old"]), ("--expired", ["keys", "anilist", "--json"])],
)
def test_old_flag_spellings_still_work_and_say_they_are_deprecated(
    runner: CliRunner, cache: str, old_flag: str, command: list[str]
) -> None:
    old = invoke(runner, *command, old_flag, "--url", cache)
    assert f"{old_flag} is deprecated" in old.stderr and "use --include-expired" in old.stderr
    assert old.stdout_bytes == invoke(runner, *command, "--include-expired", "--url", cache).stdout_bytes
    assert old_flag not in invoke(runner, command[0], "--help").stdout  # hidden from --help


def test_get_missing_row_or_file_is_one_error_line(runner: CliRunner, cache: str, tmp_path: Path) -> None:
    assert_one_error_line(invoke(runner, "get", "anilist", "Q1", "--url", cache, exit_code=1), "no row", "'Q1'")
    missing = tmp_path / "nope.sqlite"
    assert_one_error_line(invoke(runner, "get", "a", "b", "--url", str(missing), exit_code=1), "no cache at")
    assert not missing.exists()


@pytest.mark.parametrize("command", ["get", "delete"])
def test_keys_over_the_limit_are_usage_errors(runner: CliRunner, cache: str, command: str) -> None:
    result = invoke(runner, command, "anilist", "k" * 256, "--url", cache, exit_code=2)
    assert "the limit is 255" in result.stderr


# -- delete and clear ---------------------------------------------------------------------------


def test_delete_one_row_then_it_is_gone(runner: CliRunner, cache: str) -> None:
    assert invoke_json(runner, "delete", "jikan", "anime/1", "--url", cache)["deleted"] is True
    assert signatures(cache) == [("anilist", 3)]
    result = invoke(runner, "delete", "jikan", "anime/1", "--url", cache, exit_code=1)
    assert_one_error_line(result, "no row", "'anime/1'")


def test_clear_without_yes_and_no_terminal_deletes_nothing(runner: CliRunner, cache: str) -> None:
    result = invoke(runner, "clear", "--url", cache, exit_code=1)
    assert_one_error_line(result, "not deleting 4 row(s) (48.9 KiB)", "--yes")
    assert signatures(cache) == [("anilist", 3), ("jikan", 1)]


def test_clear_one_backend_with_yes(runner: CliRunner, cache: str) -> None:
    report = invoke_json(runner, "clear", "--backend", "anilist", "--yes", "--url", cache)
    assert (report["removed"], report["backend"]) == (3, "anilist")
    assert signatures(cache) == [("jikan", 1)]
    assert "removed 1 row(s) from" in invoke(runner, "clear", "-y", "--url", cache).stdout
    assert signatures(cache) == []


@pytest.mark.parametrize(("answer", "exit_code", "left"), [("y\n", 0, []), ("n\n", 1, [("anilist", 3), ("jikan", 1)])])
def test_clear_asks_at_a_terminal(
    runner: CliRunner, cache: str, monkeypatch: pytest.MonkeyPatch, answer: str, exit_code: int, left: list
) -> None:
    monkeypatch.setattr(rows, "_stdin_is_terminal", lambda: True)
    result = runner.invoke(cli.cli, ["clear", "--url", cache], input=answer)
    assert result.exit_code == exit_code, result.output
    assert f"Delete 4 row(s) (48.9 KiB) from {cache}? [y/N]" in result.stderr
    assert signatures(cache) == left


def test_clear_with_nothing_to_delete_does_not_ask(runner: CliRunner, tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    CacheRepository(empty).close()
    assert invoke_json(runner, "clear", "--url", str(empty))["removed"] == 0


# -- vacuum -------------------------------------------------------------------------------------


def test_vacuum_after_clear_gives_space_back(runner: CliRunner, cache: str) -> None:
    invoke(runner, "clear", "--yes", "--url", cache)
    report = invoke_json(runner, "vacuum", "--url", cache)
    assert report["exists"] is True and report["reclaimed_bytes"] > 40_000
    assert " given back" in invoke(runner, "vacuum", "--url", cache).stdout


def test_vacuum_on_a_missing_file_creates_nothing(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nope.sqlite"
    assert "nothing to compact" in invoke(runner, "vacuum", "--url", str(missing)).stdout
    assert not missing.exists()


# -- every engine -------------------------------------------------------------------------------


def test_commands_on_every_engine(runner: CliRunner, engine_url: str) -> None:
    seed(engine_url)
    assert invoke_json(runner, "stats", "--url", engine_url)["rows"] == 4
    assert invoke(runner, "get", "anilist", "q1", "--url", engine_url).stdout_bytes == BINARY
    assert invoke_json(runner, "delete", "anilist", "q1", "--url", engine_url)["deleted"] is True
    assert invoke_json(runner, "clear", "--backend", "jikan", "--yes", "--url", engine_url)["removed"] == 1
    assert invoke_json(runner, "clear", "--yes", "--url", engine_url)["removed"] == 2
    reclaimed = invoke_json(runner, "vacuum", "--url", engine_url)["reclaimed_bytes"]
    assert reclaimed is None if engine_url.startswith("mysql") else reclaimed >= 0
    assert invoke_json(runner, "stats", "--url", engine_url)["rows"] == 0


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (50_017, "48.8 KiB"),
        (5 * 2**30, "5.0 GiB"),
        (3 * 2**40, "3.0 TiB"),
    ],
)
def test_human_size(size: int, text: str) -> None:
    assert group.human_size(size) == text
