"""The conditional writes (``set_if_missing``, ``touch``, ``modify``) and ``purge_expired(backend)``, on
every engine, both repository classes, and in processes racing on one database."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from datetime import timedelta

import pytest
from reliability import run_children
from rowdump import dump_rows
from sqlalchemy import Engine

from animedex_store import CacheRepository
from animedex_store.rules import operations
from animedex_store.sql.models import KEY_MAX_LENGTH
from animedex_store.testing import FROZEN_AT, FrozenClock

#: Each test that opens repositories runs on CacheRepository and AsyncCacheRepository (conftest).
BOTH_FLAVOURS = True

LONG_KEY = "k" * (KEY_MAX_LENGTH + 1)


def _plus_one(payload: bytes) -> bytes:
    return str(int(payload) + 1).encode()


# -- set_if_missing -----------------------------------------------------------------------------


def test_set_if_missing_stores_a_missing_key_like_set(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    assert repo.set_if_missing("b", "k", b"first", ttl_seconds=60) is True
    assert tuple(repo.get_with_meta("b", "k")) == (b"first", {}, FROZEN_AT)
    assert repo.get_with_meta("b", "k").expires_at == FROZEN_AT + timedelta(seconds=60)


def test_set_if_missing_leaves_a_live_row_as_it_is(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    repo.set_with_meta("b", "k", b"live", response_headers={"etag": "1"}, ttl_seconds=60)
    frozen_clock.advance(59)
    assert repo.set_if_missing("b", "k", b"other", ttl_seconds=600) is False
    stored = repo.get_with_meta("b", "k")
    assert tuple(stored) == (b"live", {"etag": "1"}, FROZEN_AT)
    assert stored.expires_at == FROZEN_AT + timedelta(seconds=60)


def test_set_if_missing_replaces_an_expired_row(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    repo.set_with_meta("b", "k", b"old", response_headers={"etag": "1"}, ttl_seconds=60)
    frozen_clock.advance(60)  # expires_at == now: expired
    assert repo.set_if_missing("b", "k", b"new", ttl_seconds=10) is True
    stored = repo.get_with_meta("b", "k")
    assert tuple(stored) == (b"new", {}, FROZEN_AT + timedelta(seconds=60))
    assert stored.expires_at == FROZEN_AT + timedelta(seconds=70)
    assert repo.set_if_missing("b", "k", b"newer", ttl_seconds=10) is False


def test_set_if_missing_with_ttl_zero_stores_a_row_already_expired(repo: CacheRepository) -> None:
    assert repo.set_if_missing("b", "k", b"gone", ttl_seconds=0) is True
    assert repo.get("b", "k") is None
    assert repo.set_if_missing("b", "k", b"again", ttl_seconds=5) is True
    assert repo.get("b", "k") == b"again"


def test_set_if_missing_keeps_keys_of_other_backends_apart(repo: CacheRepository) -> None:
    repo.set("a", "k", b"a", ttl_seconds=60)
    assert repo.set_if_missing("b", "k", b"b", ttl_seconds=60) is True
    assert (repo.get("a", "k"), repo.get("b", "k")) == (b"a", b"b")


def test_set_if_missing_under_a_size_cap_counts_what_it_stored(make_repository: Callable[..., CacheRepository]) -> None:
    repo = make_repository(max_bytes=100)
    assert repo.set_if_missing("b", "big", b"x" * 60, ttl_seconds=60) is True
    assert repo.set_if_missing("b", "big", b"y" * 60, ttl_seconds=60) is False  # nothing stored: nothing counted
    repo.set("b", "more", b"z" * 60, ttl_seconds=120)  # over the cap: the row closest to expiry goes
    assert repo.get("b", "big") is None
    assert repo.get("b", "more") == b"z" * 60
    with pytest.raises(ValueError, match="larger than max_bytes"):
        repo.set_if_missing("b", "huge", b"x" * 101, ttl_seconds=60)


# -- touch --------------------------------------------------------------------------------------


def test_touch_gives_a_live_row_a_new_ttl(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    repo.set_with_meta("b", "k", b"v", response_headers={"etag": "1"}, ttl_seconds=10)
    frozen_clock.advance(5)
    assert repo.touch("b", "k", ttl_seconds=100) is True
    stored = repo.get_with_meta("b", "k")
    assert tuple(stored) == (b"v", {"etag": "1"}, FROZEN_AT)
    assert stored.expires_at == FROZEN_AT + timedelta(seconds=105)
    assert repo.touch("b", "k", ttl_seconds=0) is True  # shortened too: expired now
    assert repo.get("b", "k") is None


def test_touch_leaves_missing_and_expired_rows_so(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    assert repo.touch("b", "missing", ttl_seconds=60) is False
    repo.set("b", "k", b"v", ttl_seconds=10)
    frozen_clock.advance(10)
    assert repo.touch("b", "k", ttl_seconds=60) is False
    assert repo.get("b", "k") is None


# -- modify -------------------------------------------------------------------------------------


def test_modify_replaces_the_payload_and_keeps_the_rest(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    repo.set_with_meta("b", "n", b"41", response_headers={"etag": "1"}, ttl_seconds=10)
    frozen_clock.advance(3)
    assert repo.modify("b", "n", _plus_one) == b"42"
    stored = repo.get_with_meta("b", "n")
    assert tuple(stored) == (b"42", {"etag": "1"}, FROZEN_AT)
    assert stored.expires_at == FROZEN_AT + timedelta(seconds=10)


def test_modify_of_a_missing_or_expired_row_changes_nothing(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    called: list[bytes] = []
    assert repo.modify("b", "missing", lambda payload: called.append(payload) or payload) is None
    repo.set("b", "n", b"1", ttl_seconds=10)
    frozen_clock.advance(10)
    assert repo.modify("b", "n", lambda payload: called.append(payload) or payload) is None
    assert called == []
    assert repo.get_with_meta("b", "n", include_expired=True).payload == b"1"


def test_modify_lets_an_error_of_change_through_and_writes_nothing(repo: CacheRepository) -> None:
    repo.set("b", "n", b"not a number", ttl_seconds=60)
    with pytest.raises(ValueError, match="invalid literal"):
        repo.modify("b", "n", _plus_one)
    with pytest.raises(TypeError, match="payload must be bytes"):
        repo.modify("b", "n", lambda payload: 1)  # type: ignore[arg-type,return-value]
    assert repo.get("b", "n") == b"not a number"


def test_modify_reads_again_when_another_writer_got_in_between(repo: CacheRepository, engine_url: str) -> None:
    """The swap compares what it read: a write between the read and the swap makes it read again,
    and ``change`` sees the other writer's payload."""
    repo.set("b", "n", b"1", ttl_seconds=60)
    seen: list[bytes] = []

    def change(payload: bytes) -> bytes:
        seen.append(payload)
        if len(seen) == 1:  # another writer, after our read (a blocking one: change runs on the loop)
            with CacheRepository(engine_url) as other:
                other.set("b", "n", b"10", ttl_seconds=60)
        return _plus_one(payload)

    assert repo.modify("b", "n", change) == b"11"
    assert seen == [b"1", b"10"]
    assert repo.get("b", "n") == b"11"


def test_modify_on_compressed_rows(make_repository: Callable[..., CacheRepository]) -> None:
    """The swap compares the payload as stored (compressed) and reads it back as written."""
    writer = make_repository(compression="zlib")
    writer.set("b", "doc", b"a" * 10_000, ttl_seconds=60)
    plain = make_repository()  # another setting: it reads the zlib row, writes its own
    assert plain.modify("b", "doc", lambda payload: payload + b"b" * 10_000) == b"a" * 10_000 + b"b" * 10_000
    assert writer.modify("b", "doc", lambda payload: payload[:5]) == b"aaaaa"
    assert plain.get("b", "doc") == b"aaaaa"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda repo: repo.modify("b", "n", b"not callable"), TypeError),
        (lambda repo: repo.modify("b", LONG_KEY, _plus_one), ValueError),
        (lambda repo: repo.touch("b", "n", ttl_seconds=-1), ValueError),
        (lambda repo: repo.touch(1, "n", ttl_seconds=1), TypeError),
        (lambda repo: repo.set_if_missing("b", "n", "text", ttl_seconds=1), TypeError),
        (lambda repo: repo.set_if_missing("b", LONG_KEY, b"v", ttl_seconds=1), ValueError),
        (lambda repo: repo.purge_expired(LONG_KEY), ValueError),
    ],
)
def test_bad_arguments_are_refused_before_anything_changes(
    repo: CacheRepository, call: Callable[[CacheRepository], object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        call(repo)


# -- purge_expired(backend) ---------------------------------------------------------------------


def test_purge_expired_of_one_backend_leaves_the_others(
    repo: CacheRepository, frozen_clock: FrozenClock, database: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operations, "PURGE_BATCH", 3)  # several batches
    repo.set_many("django", {f"old{i}": b"x" for i in range(7)}, ttl_seconds=10)
    repo.set_many("anilist", {f"old{i}": b"x" for i in range(2)}, ttl_seconds=10)
    repo.set("django", "live", b"x", ttl_seconds=60)
    frozen_clock.advance(10)
    assert repo.purge_expired("django") == 7
    assert [row[:2] for row in dump_rows(database)] == [
        ("anilist", "old0"),
        ("anilist", "old1"),
        ("django", "live"),
    ]
    assert repo.purge_expired() == 2


# -- racing processes ---------------------------------------------------------------------------

RACERS = 4
ROUNDS = 25


def _race(url: str, kind: str, results: multiprocessing.Queue) -> None:
    with CacheRepository(url) as repo:
        if kind == "add":
            results.put([repo.set_if_missing("race", f"k{i}", b"mine", ttl_seconds=60) for i in range(ROUNDS)])
        else:
            results.put([repo.modify("race", "counter", _plus_one) for _ in range(ROUNDS)])


@pytest.mark.parametrize("kind", ["add", "modify"])
def test_processes_racing(engine_url: str, kind: str) -> None:
    """Processes adding the same keys: each key is stored by exactly one. Processes adding one to a
    counter at once: no increment is lost."""
    with CacheRepository(engine_url) as repo:  # closed before the children fork
        repo.set("race", "counter", b"0", ttl_seconds=60)
    outcomes = run_children(_race, [(engine_url, kind)] * RACERS)
    if kind == "add":
        assert [sum(outcome[i] for outcome in outcomes) for i in range(ROUNDS)] == [1] * ROUNDS
    else:
        assert sorted(int(value) for outcome in outcomes for value in outcome) == list(range(1, RACERS * ROUNDS + 1))
        with CacheRepository(engine_url) as repo:
            assert repo.get("race", "counter") == str(RACERS * ROUNDS).encode()
