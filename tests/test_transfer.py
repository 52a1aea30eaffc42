"""``copy_store``: rows move between engines byte for byte, in batches, re-runnably."""

from __future__ import annotations

import json
import math
import random
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_runner import cli_runner
from platforms import needs_pty
from rowdump import DUMPED, dump_rows, plain_engine, rows
from sqlalchemy import insert
from terminal import run_cli_on_a_terminal

from animedex_store import CacheRepository
from animedex_store.cli import cli
from animedex_store.errors import ConnectionFailedError
from animedex_store.ops.copy import copy_store

NOW = 1_800_000_000
KEYS = [
    ("anilist", "media:1"),
    ("anilist", "Media:1"),
    ("anilist", "media:1 "),
    ("jikan", "café"),
    ("jikan", "cafe\u0301"),
    ("it's", '"quoted" \\ %s %(x)s ?'),
    ("emoji 🍥", "👩‍👩‍👧"),
    ("", ""),
    ("x" * 255, "ナ" * 255),
]


def sample_rows() -> list[tuple]:
    """Rows as the cache can hold them (the columns of ``rowdump.DUMPED``): live, expired, pre-v2
    (NULL meta), odd payloads and headers, and payloads stored compressed (codec 1: zlib)."""
    generator = random.Random(4)
    payloads = [b"", b"\x00\xff" * 3, generator.randbytes(1 << 20), "ナルト".encode()]
    headers = [b"{}", '{"X-Título": "ナルト 🍥"}'.encode(), None, b"\xff not json"]
    made = []
    for index, (backend, signature) in enumerate(KEYS):
        expires_at = NOW + (-5, 0, 60, 2**40)[index % 4]  # NOW itself is expired
        fetched_at = None if headers[index % 4] is None else NOW - index
        payload, codec = payloads[index % 4], 0
        if index % 3 == 1:
            payload, codec = zlib.compress(payload * 4096), 1
        made.append((backend, signature, payload, expires_at, headers[index % 4], fetched_at, codec))
    return made


def is_live(row: tuple) -> bool:
    return row[3] > NOW


def sqlite_url(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / name}"


def filled(url: str, values: list[tuple]) -> str:
    """``url`` migrated to head by a repository, then ``values`` inserted as they are."""
    CacheRepository(url).close()
    engine = plain_engine(url)
    with engine.begin() as connection:
        connection.execute(insert(rows), [dict(zip(DUMPED, row)) for row in values])
    engine.dispose()
    return url


def contents(url: str) -> list[tuple]:
    engine = plain_engine(url)
    try:
        return dump_rows(engine)
    finally:
        engine.dispose()


@pytest.mark.server
def test_round_trip_through_every_engine_is_byte_exact(tmp_path: Path, open_sandbox: Callable[[str], str]) -> None:
    original = sorted(sample_rows())
    chain = [
        filled(sqlite_url(tmp_path, "source.sqlite"), original),
        open_sandbox("postgresql"),
        open_sandbox("mariadb"),
        sqlite_url(tmp_path, "back.sqlite"),
    ]
    for source, destination in zip(chain, chain[1:]):
        summary = copy_store(source, destination, include_expired=True, batch_size=4, now=NOW)
        assert summary.rows_copied == len(original)
        assert summary.expired_skipped == 0
        assert contents(destination) == original, destination
    for source, destination in zip(chain, chain[1:]):  # again: upserts, nothing duplicated
        copy_store(source, destination, include_expired=True, now=NOW)
    assert all(contents(url) == original for url in chain)


def test_copies_live_rows_in_batches(tmp_path: Path) -> None:
    original = sample_rows()
    source = filled(sqlite_url(tmp_path, "source.sqlite"), original)
    destination = sqlite_url(tmp_path, "destination.sqlite")
    live = sorted(row for row in original if is_live(row))
    totals: list[int] = []
    batches: list[int] = []
    summary = copy_store(source, destination, batch_size=2, now=NOW, on_start=totals.append, on_batch=batches.append)
    assert contents(destination) == live
    assert totals == [len(live)]
    assert sum(batches) == len(live) and len(batches) == math.ceil(len(live) / 2) and max(batches) == 2
    assert summary.as_dict() == {
        "source": str(tmp_path / "source.sqlite"),
        "destination": str(tmp_path / "destination.sqlite"),
        "rows_copied": len(live),
        "payload_bytes": sum(len(row[2]) for row in live),
        "expired_skipped": len(original) - len(live),
        "include_expired": False,
    }
    assert contents(source) == sorted(original)  # the source is only read


def test_rerun_replaces_same_keys_and_keeps_other_rows(tmp_path: Path) -> None:
    original = [row for row in sample_rows() if is_live(row)]
    source = filled(sqlite_url(tmp_path, "source.sqlite"), original)
    stale_copy = (*original[0][:2], b"older payload", NOW + 1, None, None, 0)
    unrelated = ("other", "row", b"keep me", NOW + 1, b"{}", NOW, 0)
    destination = filled(sqlite_url(tmp_path, "destination.sqlite"), [stale_copy, unrelated])
    copy_store(source, destination, now=NOW)
    copy_store(source, destination, now=NOW)
    assert contents(destination) == sorted([*original, unrelated])


def test_empty_source_copies_nothing(tmp_path: Path) -> None:
    batches: list[int] = []
    summary = copy_store(
        sqlite_url(tmp_path, "a.sqlite"), sqlite_url(tmp_path, "b.sqlite"), now=NOW, on_batch=batches.append
    )
    assert (summary.rows_copied, summary.payload_bytes, batches) == (0, 0, [])
    assert contents(sqlite_url(tmp_path, "b.sqlite")) == []


def test_same_database_is_refused(tmp_path: Path) -> None:
    url = filled(sqlite_url(tmp_path, "a.sqlite"), sample_rows())
    with pytest.raises(ValueError, match="same database"):
        copy_store(url, str(tmp_path / "a.sqlite"), now=NOW)
    assert contents(url) == sorted(sample_rows())
    with pytest.raises(ValueError, match="same database: postgresql://u:\\*\\*\\*@h/db"):
        copy_store("postgresql://u:pw@h/db", "postgresql://u:pw@h/db")
    with pytest.raises(ValueError, match="same database"):
        copy_store(tmp_path / "new.sqlite", f"sqlite:///{tmp_path / 'new.sqlite'}")
    assert not (tmp_path / "new.sqlite").exists()  # refused before anything was opened


@pytest.mark.parametrize(
    ("batch_size", "error"), [(0, ValueError), (-1, ValueError), (True, TypeError), (2.0, TypeError)]
)
def test_bad_batch_size(tmp_path: Path, batch_size: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        copy_store(sqlite_url(tmp_path, "a.sqlite"), sqlite_url(tmp_path, "b.sqlite"), batch_size=batch_size)
    assert not (tmp_path / "a.sqlite").exists()


def test_unreachable_destination_names_it_with_the_password_masked(tmp_path: Path) -> None:
    source = filled(sqlite_url(tmp_path, "a.sqlite"), sample_rows())
    with pytest.raises(ConnectionFailedError) as raised:
        copy_store(source, "postgresql+psycopg://user:s3cret@127.0.0.1:9/db", now=NOW)
    assert "user:***@127.0.0.1:9/db" in str(raised.value)
    assert "s3cret" not in str(raised.value)
    assert contents(source) == sorted(sample_rows())


# -- the command ------------------------------------------------------------------------------


def test_cli_copy_prints_a_json_summary(tmp_path: Path) -> None:
    original = [row for row in sample_rows() if is_live(row)]
    source = filled(sqlite_url(tmp_path, "source.sqlite"), original)
    destination = tmp_path / "destination.sqlite"
    result = cli_runner().invoke(cli, ["copy", source, str(destination), "--include-expired", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "source": str(tmp_path / "source.sqlite"),
        "destination": str(destination),
        "rows_copied": len(original),
        "payload_bytes": sum(len(row[2]) for row in original),
        "expired_skipped": 0,
        "include_expired": True,
    }
    assert contents(f"sqlite:///{destination}") == sorted(original)


@pytest.mark.parametrize(
    ("arguments", "exit_code", "message"),
    [
        (["same", "same"], 2, "same database"),
        (["a", "b", "--batch-size", "0"], 2, "batch-size"),
        (["a"], 2, "Missing argument"),
        (["a", "postgresql+psycopg://user:s3cret@127.0.0.1:9/db"], 1, "user:***@127.0.0.1:9/db"),
    ],
)
def test_cli_copy_failures(tmp_path: Path, monkeypatch, arguments: list[str], exit_code: int, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli_runner().invoke(cli, ["copy", *arguments])
    assert result.exit_code == exit_code
    assert message in result.stderr and "s3cret" not in result.output


@needs_pty
def test_cli_copy_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    values = [(f"b{i % 3}", f"s{i}", b"x" * i, NOW + 10**9, b"{}", NOW, 0) for i in range(1200)]
    source = filled(sqlite_url(tmp_path, "source.sqlite"), values)
    seen, stdout = run_cli_on_a_terminal("copy", source, str(tmp_path / "destination.sqlite"), "--batch-size", "100")
    assert "copying rows" in seen and "[####" in seen and "1200/1200" in seen and "100/1200" in seen
    assert stdout.startswith("copied 1200 row(s)") and "copying" not in stdout
