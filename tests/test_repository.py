"""The repository contract (README, "The API in 15 lines"), the seed module's behaviour ported, on every engine."""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Callable
from datetime import datetime, timezone

import pytest
from pydantic import BaseModel
from rowdump import dump_rows, row_count, rows
from sqlalchemy import Engine, make_url, update

from animedex_store import CacheRepository, StoreError
from animedex_store.core.validation import MAX_TTL_SECONDS
from animedex_store.errors import UnstorableValueError
from animedex_store.sql.models import KEY_MAX_LENGTH
from animedex_store.testing import FROZEN_AT, FrozenClock

#: Each test that opens repositories runs on CacheRepository and AsyncCacheRepository (conftest).
BOTH_FLAVOURS = True

MakeRepository = Callable[..., CacheRepository]


# -- round trip, expiry, overwrite -----------------------------------------------------------


def test_round_trip(repo: CacheRepository) -> None:
    repo.set("anilist", "q1", b"\x00payload\xff", ttl_seconds=60)
    assert repo.get("anilist", "q1") == b"\x00payload\xff"
    assert repo.get("anilist", "q2") is None
    assert repo.get("jikan", "q1") is None


@pytest.mark.parametrize("payload", [b"", bytearray(b"array"), memoryview(b"view"), bytes(range(256)) * 4096])
def test_payload_kinds_round_trip_as_bytes(repo: CacheRepository, payload) -> None:
    repo.set("b", "s", payload, ttl_seconds=60)
    got = repo.get("b", "s")
    assert type(got) is bytes
    assert got == bytes(payload)


def test_expiry_at_exactly_expires_at(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    repo.set("b", "s", b"v", ttl_seconds=60)
    frozen_clock.advance(59)
    assert repo.get("b", "s") == b"v"
    assert repo.get_with_meta("b", "s") is not None
    frozen_clock.advance(1)  # now == expires_at: expired
    assert repo.get("b", "s") is None
    assert repo.get_with_meta("b", "s") is None


def test_longest_ttl_is_stored(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    repo.set("b", "s", b"v", ttl_seconds=MAX_TTL_SECONDS)
    frozen_clock.set(datetime.max)  # as far as a clock can go
    assert repo.get("b", "s") == b"v"


def test_zero_ttl_is_expired_at_once(repo: CacheRepository) -> None:
    repo.set("b", "s", b"v", ttl_seconds=0)
    assert repo.get("b", "s") is None


def test_get_is_a_pure_read(repo: CacheRepository, database: Engine, frozen_clock: FrozenClock) -> None:
    repo.set("b", "s", b"v", ttl_seconds=10)
    before = dump_rows(database)
    frozen_clock.advance(3600)
    assert repo.get("b", "s") is None
    assert repo.get_with_meta("b", "s") is None
    assert dump_rows(database) == before


def test_overwrite_replaces_payload_expiry_and_headers(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    repo.set_with_meta("b", "s", b"old", response_headers={"etag": "1"}, ttl_seconds=3600)
    frozen_clock.advance(10)
    repo.set("b", "s", b"new", ttl_seconds=5)
    assert repo.get_with_meta("b", "s") == (b"new", {}, frozen_clock())
    frozen_clock.advance(5)
    assert repo.get("b", "s") is None  # the new, shorter TTL applies


def test_expired_row_can_be_written_again(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    repo.set("b", "s", b"old", ttl_seconds=1)
    frozen_clock.advance(2)
    repo.set("b", "s", b"new", ttl_seconds=1)
    assert repo.get("b", "s") == b"new"


# -- metadata -------------------------------------------------------------------------------


def test_meta_round_trip_with_non_ascii_headers(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8", "X-Título": "ナルト 🍥", "empty": ""}
    repo.set_with_meta("anilist", "q", b"body", response_headers=headers, ttl_seconds=60)
    payload, got_headers, fetched_at = repo.get_with_meta("anilist", "q")
    assert (payload, got_headers) == (b"body", headers)
    assert fetched_at == frozen_clock() and fetched_at.tzinfo is not None


def test_headers_are_stored_as_the_seed_did(repo: CacheRepository, database: Engine) -> None:
    repo.set_with_meta("b", "s", b"v", response_headers={"k": "é"}, ttl_seconds=60)
    assert dump_rows(database)[0][4] == '{"k": "é"}'.encode()


def test_set_gives_empty_headers_and_now(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    frozen_clock.advance(12.7)  # stored in whole seconds
    repo.set("b", "s", b"v", ttl_seconds=60)
    assert repo.get_with_meta("b", "s") == (b"v", {}, FROZEN_AT.replace(second=12))


@pytest.mark.parametrize(
    "blob",
    [b"not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"[" * 100_000, None],
    ids=["not-json", "not-utf8", "list", "string", "nested-deep", "none"],
)
def test_unreadable_or_missing_headers_read_as_empty(
    repo: CacheRepository, database: Engine, blob, caplog: pytest.LogCaptureFixture
) -> None:
    """An unreadable blob (not UTF-8, not JSON, not an object, nested too deep) reads as ``{}`` and is
    logged once on ``animedex_store.core.validation``, naming the row; a missing one (pre-v2) is not logged."""
    repo.set_with_meta("b", "s", b"v", response_headers={"k": "v"}, ttl_seconds=60)
    with database.begin() as connection:
        connection.execute(update(rows).values(response_headers=blob))
    caplog.set_level("WARNING", logger="animedex_store")
    payload, headers, _ = repo.get_with_meta("b", "s")
    assert (payload, headers) == (b"v", {})
    logged = [record.getMessage() for record in caplog.records if record.name == "animedex_store.core.validation"]
    assert len(logged) == (blob is not None)
    assert all("'b', 's'" in message and repo.target in message for message in logged)


def test_row_without_fetched_at_reads_none(repo: CacheRepository, database: Engine) -> None:
    repo.set("b", "s", b"v", ttl_seconds=60)
    with database.begin() as connection:
        connection.execute(update(rows).values(response_headers=None, fetched_at=None))
    assert repo.get_with_meta("b", "s") == (b"v", {}, None)


def test_naive_clock_is_taken_as_utc(make_repository: MakeRepository) -> None:
    naive = datetime(2026, 3, 4, 5, 6, 7)
    repo = make_repository(clock=lambda: naive)
    repo.set("b", "s", b"v", ttl_seconds=60)
    assert repo.get_with_meta("b", "s")[2] == naive.replace(tzinfo=timezone.utc)


def test_clock_in_another_zone_is_the_same_instant(make_repository: MakeRepository) -> None:
    moment = datetime.fromisoformat("2026-03-04T14:06:07+09:00")
    repo = make_repository(clock=lambda: moment)
    repo.set("b", "s", b"v", ttl_seconds=60)
    assert repo.get_with_meta("b", "s")[2] == moment


# -- models and purge -----------------------------------------------------------------------


class Anime(BaseModel):
    id: int
    title: str
    tags: list[str] = []


def test_model_round_trip(repo: CacheRepository, database: Engine) -> None:
    model = Anime(id=20, title="ナルト", tags=["ninja"])
    repo.set_model("anilist", "media:20", model, ttl_seconds=60)
    assert repo.get_model("anilist", "media:20", Anime) == model
    assert dump_rows(database)[0][2] == model.model_dump_json().encode("utf-8")
    assert repo.get_model("anilist", "media:21", Anime) is None


def test_set_model_refuses_non_models(repo: CacheRepository) -> None:
    with pytest.raises(TypeError):
        repo.set_model("b", "s", {"id": 1}, ttl_seconds=60)
    with pytest.raises(TypeError):
        repo.get_model("b", "s", dict)


def test_purge_expired_removes_only_expired_rows(
    repo: CacheRepository, database: Engine, frozen_clock: FrozenClock
) -> None:
    repo.set("b", "short", b"1", ttl_seconds=10)
    repo.set("b", "exact", b"2", ttl_seconds=20)
    repo.set("b", "long", b"3", ttl_seconds=21)
    frozen_clock.advance(20)
    assert repo.purge_expired() == 2
    assert [row[1] for row in dump_rows(database)] == ["long"]
    assert repo.get("b", "long") == b"3"
    assert repo.purge_expired() == 0


# -- sharing --------------------------------------------------------------------------------


def test_threads_share_one_repository(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(worker: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(60):
                key = f"w{worker}-{i % 7}"
                payload = f"{worker}:{i}".encode()
                if i % 3:
                    repo.set("t", key, payload, ttl_seconds=60)
                else:
                    repo.set_with_meta("t", key, payload, response_headers={"i": str(i)}, ttl_seconds=60)
                assert repo.get("t", key) == payload
                meta = repo.get_with_meta("t", key)
                assert meta[0] == payload and meta[1] == ({} if i % 3 else {"i": str(i)})
                repo.set("shared", "hot", payload, ttl_seconds=60)
                assert repo.get("shared", "hot").split(b":")[0].isdigit()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    for worker in range(8):
        for j in range(7):
            last = max(i for i in range(60) if i % 7 == j)
            assert repo.get("t", f"w{worker}-{j}") == f"{worker}:{last}".encode()


def test_two_repositories_on_one_database_see_each_other(make_repository: MakeRepository) -> None:
    first, second = make_repository(), make_repository()
    first.set("b", "s", b"from first", ttl_seconds=60)
    assert second.get("b", "s") == b"from first"
    second.set_with_meta("b", "s", b"from second", response_headers={"h": "v"}, ttl_seconds=60)
    assert first.get_with_meta("b", "s")[:2] == (b"from second", {"h": "v"})
    assert second.purge_expired() == 0


# -- lifetime -------------------------------------------------------------------------------


def test_context_manager_closes(make_repository: MakeRepository) -> None:
    with make_repository() as repo:
        repo.set("b", "s", b"v", ttl_seconds=60)
        assert repo.get("b", "s") == b"v"
    with pytest.raises(StoreError, match="closed"):
        repo.get("b", "s")
    with make_repository() as reopened:
        assert reopened.get("b", "s") == b"v"


def test_close_is_idempotent_and_later_calls_raise(repo: CacheRepository) -> None:
    repo.close()
    repo.close()
    calls = [
        lambda: repo.get("b", "s"),
        lambda: repo.get_with_meta("b", "s"),
        lambda: repo.set("b", "s", b"v", ttl_seconds=1),
        lambda: repo.set_with_meta("b", "s", b"v", response_headers={}, ttl_seconds=1),
        lambda: repo.get_model("b", "s", Anime),
        lambda: repo.set_model("b", "s", Anime(id=1, title="t"), ttl_seconds=1),
        repo.purge_expired,
    ]
    for call in calls:
        with pytest.raises(StoreError, match="closed"):
            call()


# -- validation: the call raises and nothing changes ----------------------------------------

LONG_KEY = "k" * (KEY_MAX_LENGTH + 1)
BAD_CALLS = {
    "backend int": (TypeError, lambda r: r.set(1, "s", b"x", ttl_seconds=60)),
    "backend None": (TypeError, lambda r: r.get(None, "s")),
    "backend bytes": (TypeError, lambda r: r.set(b"b", "s", b"x", ttl_seconds=60)),
    "signature int": (TypeError, lambda r: r.set("b", 5, b"x", ttl_seconds=60)),
    "signature bytes get": (TypeError, lambda r: r.get("b", b"s")),
    "signature None meta": (TypeError, lambda r: r.get_with_meta("b", None)),
    "backend too long": (ValueError, lambda r: r.set(LONG_KEY, "s", b"x", ttl_seconds=60)),
    "signature too long": (ValueError, lambda r: r.set("b", LONG_KEY, b"x", ttl_seconds=60)),
    "signature too long get": (ValueError, lambda r: r.get("b", LONG_KEY)),
    "signature too long meta": (ValueError, lambda r: r.get_with_meta("b", LONG_KEY)),
    "payload str": (TypeError, lambda r: r.set("b", "s", "text", ttl_seconds=60)),
    "payload None": (TypeError, lambda r: r.set("b", "s", None, ttl_seconds=60)),
    "payload int": (TypeError, lambda r: r.set("b", "s", 3, ttl_seconds=60)),
    "payload list": (TypeError, lambda r: r.set("b", "s", [1, 2], ttl_seconds=60)),
    "ttl bool": (TypeError, lambda r: r.set("b", "s", b"x", ttl_seconds=True)),
    "ttl float": (TypeError, lambda r: r.set("b", "s", b"x", ttl_seconds=1.5)),
    "ttl str": (TypeError, lambda r: r.set("b", "s", b"x", ttl_seconds="60")),
    "ttl None": (TypeError, lambda r: r.set("b", "s", b"x", ttl_seconds=None)),
    "ttl negative": (ValueError, lambda r: r.set("b", "s", b"x", ttl_seconds=-1)),
    "ttl past int64": (ValueError, lambda r: r.set("b", "s", b"x", ttl_seconds=2**63)),
    "ttl over the limit": (ValueError, lambda r: r.set("b", "s", b"x", ttl_seconds=MAX_TTL_SECONDS + 1)),
    "headers None": (TypeError, lambda r: r.set_with_meta("b", "s", b"x", response_headers=None, ttl_seconds=60)),
    "headers list": (
        TypeError,
        lambda r: r.set_with_meta("b", "s", b"x", response_headers=[("a", "b")], ttl_seconds=60),
    ),
    "header key int": (TypeError, lambda r: r.set_with_meta("b", "s", b"x", response_headers={1: "v"}, ttl_seconds=60)),
    "header value int": (
        TypeError,
        lambda r: r.set_with_meta("b", "s", b"x", response_headers={"k": 1}, ttl_seconds=60),
    ),
    "header value bytes": (
        TypeError,
        lambda r: r.set_with_meta("b", "s", b"x", response_headers={"k": b"v"}, ttl_seconds=60),
    ),
    "header value None": (
        TypeError,
        lambda r: r.set_with_meta("b", "s", b"x", response_headers={"k": None}, ttl_seconds=60),
    ),
    "meta ttl negative": (ValueError, lambda r: r.set_with_meta("b", "s", b"x", response_headers={}, ttl_seconds=-5)),
    "meta payload str": (TypeError, lambda r: r.set_with_meta("b", "s", "x", response_headers={}, ttl_seconds=60)),
    "model ttl bool": (TypeError, lambda r: r.set_model("b", "s", Anime(id=1, title="t"), ttl_seconds=False)),
}


@pytest.mark.parametrize("name", BAD_CALLS)
def test_bad_input_raises_and_changes_nothing(repo: CacheRepository, database: Engine, name: str) -> None:
    repo.set_with_meta("b", "s", b"original", response_headers={"k": "v"}, ttl_seconds=60)
    before = dump_rows(database)
    error, call = BAD_CALLS[name]
    with pytest.raises(error):
        call(repo)
    assert dump_rows(database) == before
    assert repo.get_with_meta("b", "s")[:2] == (b"original", {"k": "v"})


@pytest.mark.parametrize("where", ["backend", "signature"])
def test_keys_over_the_limit_are_rejected_not_truncated(repo: CacheRepository, database: Engine, where: str) -> None:
    key = "x" * (KEY_MAX_LENGTH + 1)
    args = (key, "s") if where == "backend" else ("b", key)
    with pytest.raises(ValueError, match=str(KEY_MAX_LENGTH)):
        repo.set(*args, b"v", ttl_seconds=60)
    assert row_count(database) == 0


@pytest.mark.parametrize("char", ["k", "é", "ナ", "🍥"], ids=["ascii", "latin", "cjk", "emoji"])
def test_keys_at_the_limit_round_trip(repo: CacheRepository, char: str) -> None:
    key = char * KEY_MAX_LENGTH
    repo.set(key, key, b"max", ttl_seconds=60)
    repo.set(key, key[:-1], b"shorter", ttl_seconds=60)
    assert repo.get(key, key) == b"max"
    assert repo.get(key, key[:-1]) == b"shorter"


# -- keys compare exactly ---------------------------------------------------------------------

NFC = unicodedata.normalize("NFC", "café")
NFD = unicodedata.normalize("NFD", "café")
DISTINCT_KEYS = ["k", "K", "k ", " k", "k\t", "k\n", NFC, NFD, "straße", "strasse", "ǅ", "ǆ", "ı", "i"]


@pytest.mark.parametrize("column", ["backend", "signature"])
def test_keys_compare_exactly(repo: CacheRepository, database: Engine, column: str) -> None:
    assert NFC != NFD
    for index, key in enumerate(DISTINCT_KEYS):
        args = (key, "s") if column == "backend" else ("b", key)
        repo.set(*args, str(index).encode(), ttl_seconds=60)
    assert row_count(database) == len(DISTINCT_KEYS)
    for index, key in enumerate(DISTINCT_KEYS):
        args = (key, "s") if column == "backend" else ("b", key)
        assert repo.get(*args) == str(index).encode(), repr(key)
    assert repo.get("b", "k  ") is None and repo.get("b", "") is None


HOSTILE_KEYS = [
    "'; DROP TABLE cache_rows; --",
    "\"double\" 'single' `back`",
    "100% _under_ %s %(name)s ?",
    "back\\slash\\\\ \\x00 \\n",
    "emoji 🍥🎌 and ZWJ 👩‍👩‍👧",
    "",
    " ",
    "\u200b zero width",
    "\r\n\t",
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_round_trip(repo: CacheRepository, database: Engine, key: str) -> None:
    repo.set(key, key, key.encode("utf-8"), ttl_seconds=60)
    assert repo.get(key, key) == key.encode("utf-8")
    assert dump_rows(database)[0][:2] == (key, key)
    assert row_count(database) == 1


@pytest.mark.parametrize("key", ["\x00", "a\x00b", "a\x00"])
def test_nul_in_keys_round_trips_or_is_refused_clearly(
    repo: CacheRepository, database: Engine, engine_url: str, key: str
) -> None:
    repo.set("b", "a", b"plain", ttl_seconds=60)
    before = dump_rows(database)
    if make_url(engine_url).get_backend_name() == "postgresql":
        # PostgreSQL text cannot hold NUL: a ValueError (and a StoreError naming the database).
        for call in (
            lambda: repo.set("b", key, b"v", ttl_seconds=60),
            lambda: repo.set(key, "s", b"v", ttl_seconds=60),
            lambda: repo.get("b", key),
            lambda: repo.get_with_meta(key, "s"),
        ):
            with pytest.raises(UnstorableValueError, match="NUL") as raised:
                call()
            assert isinstance(raised.value, ValueError) and raised.value.target == repo.target
        assert dump_rows(database) == before
        assert repo.get("b", "a") == b"plain"  # the connection is still usable
        return
    repo.set("b", key, b"nul", ttl_seconds=60)
    repo.set(key, key, b"both", ttl_seconds=60)
    assert repo.get("b", key) == b"nul" and repo.get(key, key) == b"both"
    assert repo.get("b", "a") == b"plain" and repo.get("b", key + "\x00") is None
    assert row_count(database) == 3


def test_replace_overwrites_a_row_that_exists_and_never_creates_one(
    repo: CacheRepository, frozen_clock: FrozenClock
) -> None:
    """The conditional write the hishel storages build on: a row deleted meanwhile stays deleted."""
    assert repo.replace("b", "k", b"v", ttl_seconds=60) is False
    assert repo.get("b", "k") is None
    repo.set_with_meta("b", "k", b"old", response_headers={"ETag": "x"}, ttl_seconds=1)
    frozen_clock.advance(5)  # expired, still stored: replaced all the same
    assert repo.replace("b", "k", b"new", ttl_seconds=60) is True
    assert repo.get_with_meta("b", "k") == (b"new", {}, frozen_clock())
    assert repo.replace("b", "k", b"new", ttl_seconds=60) is True  # nothing changed: it existed all the same
    repo.delete("b", "k")
    assert repo.replace("b", "k", b"again", ttl_seconds=60) is False and repo.get("b", "k") is None


def test_payload_bytes_counts_one_backend_expired_rows_too(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    repo.set_many("b", {"one": b"x" * 10, "two": b"y" * 20}, ttl_seconds=1)
    repo.set("b", "three", b"z" * 5, ttl_seconds=60)
    repo.set("other", "one", b"w" * 100, ttl_seconds=60)
    frozen_clock.advance(5)
    assert (repo.payload_bytes("b"), repo.payload_bytes("other"), repo.payload_bytes("none")) == (35, 100, 0)
    with pytest.raises(TypeError):
        repo.payload_bytes(1)  # type: ignore[arg-type]
