"""Listing and counting one backend's keys (``keys``, ``count``, ``contains_many``), on every engine:
which rows, in which order, how many, in pages; the arguments checked when the call is made."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from animedex_store import CacheRepository
from animedex_store.core.listing import EVERY_ROW, KeyPage
from animedex_store.testing import FROZEN_AT, FrozenClock

#: Each test that opens repositories runs on CacheRepository and AsyncCacheRepository (conftest).
BOTH_FLAVOURS = True

#: signature -> (payload size, TTL seconds): sizes and expiries in other orders than the signatures,
#: with ties on both to show the signature breaks them.
ROWS = {"a": (30, 300), "b": (10, 100), "c": (20, 100), "d": (10, 50), "e": (40, 0), "f": (20, 400)}


@pytest.fixture
def listed(repo: CacheRepository) -> CacheRepository:
    """``ROWS`` in backend "b", and one row of another backend that must never show."""
    for signature, (size, ttl) in ROWS.items():
        repo.set("b", signature, b"x" * size, ttl_seconds=ttl)
    repo.set("other", "a", b"y", ttl_seconds=500)
    return repo


def _expected(live_after: int | None, *, expired_by: int | None = None) -> list[tuple[str, int, int]]:
    """``(signature, expires in seconds, size)`` of the ROWS the bounds choose, by signature."""
    return [
        (signature, ttl, size)
        for signature, (size, ttl) in sorted(ROWS.items())
        if (live_after is None or ttl > live_after) and (expired_by is None or ttl <= expired_by)
    ]


def _listed(repository: CacheRepository, **options: object) -> list[tuple[str, int, int]]:
    return [
        (key.signature, int((key.expires_at - FROZEN_AT).total_seconds()), key.size)
        for key in repository.keys("b", **options)  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize("page_size", [1, 2, 1000])
@pytest.mark.parametrize(
    ("order_by", "sort"),
    [
        ("signature", lambda row: row[0]),
        ("expires_at", lambda row: (row[1], row[0])),
        ("size", lambda row: (row[2], row[0])),
    ],
)
@pytest.mark.parametrize("descending", [False, True])
def test_keys_come_in_the_order_asked_page_after_page(
    listed: CacheRepository, order_by: str, sort, descending: bool, page_size: int
) -> None:
    expected = sorted(_expected(0, expired_by=None), key=sort, reverse=descending)
    assert _listed(listed, order_by=order_by, descending=descending, page_size=page_size) == expected
    for limit in (1, 3, 5, 6):
        assert (
            _listed(listed, order_by=order_by, descending=descending, page_size=page_size, limit=limit)
            == (expected[:limit])
        )


def test_which_rows_live_expired_only_all_and_as_of(listed: CacheRepository, frozen_clock: FrozenClock) -> None:
    assert _listed(listed) == _expected(0)  # live now: "e" (TTL 0) expired at once
    assert _listed(listed, include_expired=True) == _expected(None)
    assert _listed(listed, expired_only=True) == _expected(None, expired_by=0)
    later = FROZEN_AT + timedelta(seconds=100)
    assert _listed(listed, as_of=later) == _expected(100)
    assert _listed(listed, expired_only=True, as_of=later) == _expected(None, expired_by=100)
    assert _listed(listed, expired_only=True, include_expired=True, as_of=later) == _expected(None, expired_by=100)
    frozen_clock.advance(100)  # as_of defaults to the repository's now
    assert _listed(listed) == _expected(100)
    assert _listed(listed, as_of=FROZEN_AT) == _expected(0)
    naive = (FROZEN_AT + timedelta(seconds=300)).replace(tzinfo=None)  # naive is UTC
    assert _listed(listed, as_of=naive) == _expected(300)


@pytest.mark.parametrize(
    "options",
    [{}, {"include_expired": True}, {"expired_only": True}, {"as_of": FROZEN_AT + timedelta(seconds=100)}],
    ids=["live", "all", "expired", "as_of"],
)
def test_count_counts_what_keys_lists(listed: CacheRepository, options: dict[str, object]) -> None:
    assert listed.count("b", **options) == len(list(listed.keys("b", **options)))  # type: ignore[arg-type]
    assert listed.count("nobody", **options) == 0  # type: ignore[arg-type]


def test_contains_many_names_the_stored_signatures_without_reading_payloads(listed: CacheRepository) -> None:
    asked = ["a", "e", "zz", "a", *(f"missing{number}" for number in range(600))]  # over one chunk
    assert listed.contains_many("b", asked) == {"a"}  # "e" expired
    assert listed.contains_many("b", asked, include_expired=True) == {"a", "e"}
    assert listed.contains_many("other", ["a", "b"]) == {"a"}
    assert listed.contains_many("b", []) == frozenset()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda repo: repo.keys(123), TypeError, "backend must be str"),
        (lambda repo: repo.keys("b", page_size=0), ValueError, "page_size must be at least 1"),
        (lambda repo: repo.keys("b", limit=0), ValueError, "limit must be at least 1"),
        (lambda repo: repo.keys("b", limit=True), TypeError, "limit must be int"),
        (lambda repo: repo.keys("b", order_by="url"), ValueError, "order_by must be one of"),
        (lambda repo: repo.keys("b", as_of="now"), TypeError, "as_of must be a datetime"),
        (lambda repo: repo.count("b", as_of=0), TypeError, "as_of must be a datetime"),
        (lambda repo: repo.contains_many("b", "abc"), TypeError, "not a single str"),
        (lambda repo: repo.contains_many("b", ["ok", 5]), TypeError, "signature must be str"),
    ],
)
def test_arguments_are_checked_when_the_call_is_made(listed: CacheRepository, call, error, message) -> None:
    with pytest.raises(error, match=message):
        call(listed)  # keys() raises here, not at the first next()


def test_now_is_the_repository_clock_in_utc(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    assert repo.now() == FROZEN_AT
    frozen_clock.advance(1.5)
    assert repo.now() == FROZEN_AT + timedelta(seconds=1.5)
    with CacheRepository("sqlite://", clock=lambda: datetime(2030, 1, 1)) as naive:  # naive is UTC
        assert naive.now() == datetime(2030, 1, 1, tzinfo=timezone.utc)
    with CacheRepository("sqlite://") as system:
        assert abs(system.now() - datetime.now(timezone.utc)) < timedelta(minutes=1)


@pytest.mark.parametrize(
    "options", [{"order_by": "expires_at"}, {"order_by": "expires_at", "expired_only": True}, {"count": True}]
)
def test_a_backend_is_listed_by_expiry_through_its_index(tmp_path: Path, options: dict[str, object]) -> None:
    path = tmp_path / "cache.sqlite"
    with CacheRepository(path) as repo:
        statements = repo._sql
    if options.pop("count", False):
        statement, values = statements.count_live, ("b", 0)
    else:
        page = (options["order_by"], False, bool(options.get("expired_only")), False)
        statement, values = statements.keys_page(page), ("b", 0, None, None, 10)  # type: ignore[arg-type]
    connection = sqlite3.connect(path)
    plan = " | ".join(
        row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {statement.sql}", statement.bind(values))
    )
    connection.close()
    assert "INDEX ix_cache_rows_backend_expires_at" in plan and "TEMP B-TREE" not in plan, plan


@pytest.mark.parametrize(
    ("order_by", "index"), [("signature", "sqlite_autoindex_cache_rows_1"), ("size", "ix_cache_rows_backend_size")]
)
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("after", [False, True])
@pytest.mark.parametrize("bound", [0, EVERY_ROW], ids=["live", "every row"])
def test_a_backend_is_listed_by_signature_or_size_through_an_index_that_holds_the_order(
    tmp_path: Path, order_by: str, index: str, descending: bool, after: bool, bound: int
) -> None:
    """requests-cache's ``sorted(key="key" | "size")``: read in order until the page is full, never every
    row of the backend sorted (17 ms for ten of 100,000 by signature; revision 0007 indexes the size)."""
    path = tmp_path / "cache.sqlite"
    with CacheRepository(path) as repo:
        statement = repo._sql.keys_page(KeyPage(order_by, descending, False, after))
    connection = sqlite3.connect(path)
    values = statement.bind(("b", bound, 5, "s", 10))
    plan = " | ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {statement.sql}", values))
    connection.close()
    assert f"INDEX {index}" in plan and "TEMP B-TREE" not in plan, plan


@pytest.mark.parametrize("name", ["get_many", "present_many", "delete_many"])
def test_reads_of_many_keys_look_them_up_in_the_primary_key(tmp_path: Path, name: str) -> None:
    """Not a range over ix_cache_rows_backend_expires_at, which would read every live row of the backend."""
    path = tmp_path / "cache.sqlite"
    with CacheRepository(path) as repo:
        statement = getattr(repo._sql, name)(16)
    connection = sqlite3.connect(path)
    values = ("b", *(f"s{number}" for number in range(16)))
    plan = " | ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {statement.sql}", values))
    connection.close()
    assert plan == "SEARCH cache_rows USING INDEX sqlite_autoindex_cache_rows_1 (backend=? AND signature=?)", plan
