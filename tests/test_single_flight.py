"""``get_or_fetch`` (README, "Single flight"): one fetch per key across threads, processes and engines.

Single-process tests run on the ``frozen_clock``: leases end when the test
moves the clock, never by sleeping. The multi-process tests (``slow``) use the
real clock with a 2 s lease and a 1 s fetch; every fetch appends what it did
(start/end, process, time) to a log file, and the assertions are about that
log: how many fetches, whether they overlapped, how long a waiter waited for a
dead holder's lease. Children are forked and one is killed with SIGKILL, so
those tests do not run on Windows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_runner import cli_runner
from fresh_interpreter import PRELUDE
from reliability import JOIN_TIMEOUT_SECONDS, context
from rowdump import dump_rows, plain_engine, row_count
from sqlalchemy import Engine, insert, select

from animedex_store import CacheRepository, cli
from animedex_store import sqlite as cache_module
from animedex_store.core.blocking import run_blocking
from animedex_store.core.clock import epoch_millis
from animedex_store.core.stats import CachedResponse
from animedex_store.errors import FetchTimeoutError, StoreError
from animedex_store.rules.flight import LAST_POLL_SECONDS
from animedex_store.sql.models import KEY_MAX_LENGTH, CacheLock
from animedex_store.testing import FROZEN_AT, FrozenClock

MakeRepository = Callable[..., CacheRepository]
locks = CacheLock.__table__
TTL = 3_600
POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="forks children and kills one with SIGKILL")


def claims(database: Engine) -> list[tuple[str, str, str, int]]:
    """Every row of ``cache_locks``: (backend, signature, holder, lease_until)."""
    with database.connect() as connection:
        return sorted(tuple(row) for row in connection.execute(select(locks)))


def hold_claim(database: Engine, backend: str, signature: str, *, lease_until_ms: int, holder: str = "dead") -> None:
    """A claim as a caller that died mid-fetch leaves it."""
    with database.begin() as connection:
        connection.execute(
            insert(locks).values(backend=backend, signature=signature, holder=holder, lease_until=lease_until_ms)
        )


def now_ms(clock: FrozenClock) -> int:
    return epoch_millis(clock())


class Fetcher:
    """A ``fetch`` that counts its calls and returns ``result`` (or raises it)."""

    def __init__(self, result: Any = b"fetched") -> None:
        self.result = result
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> Any:
        with self.lock:
            self.calls += 1
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def must_not_fetch() -> bytes:
    raise AssertionError("fetch() was called")


# -- the hit path ---------------------------------------------------------------------------------


class _NoWrites:
    """Wraps a repository's ``_db``: reads pass, any write fails the test."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def __getattr__(self, name: str) -> Any:  # reads, close
        return getattr(self._db, name)

    def execute(self, *_args: Any) -> Any:
        raise AssertionError("a live row must be returned without a write")

    executemany = execute


def test_a_live_row_is_returned_as_get_with_meta_returns_it(repo: CacheRepository) -> None:
    repo.set_with_meta("anilist", "media:1", b"body", response_headers={"ETag": "v1"}, ttl_seconds=60)
    expected = repo.get_with_meta("anilist", "media:1")
    repo._db = _NoWrites(repo._db)

    found = repo.get_or_fetch("anilist", "media:1", must_not_fetch, ttl_seconds=60)

    assert isinstance(found, CachedResponse)
    assert found == expected == (b"body", {"ETag": "v1"}, FROZEN_AT)
    assert (found.expires_at, found.is_stale) == (expected.expires_at, False)


def test_a_missing_row_is_fetched_stored_and_returned(
    repo: CacheRepository, frozen_clock: FrozenClock, database: Engine
) -> None:
    fetch = Fetcher(b"fresh")
    got = repo.get_or_fetch("anilist", "media:1", fetch, ttl_seconds=120)

    assert fetch.calls == 1
    assert got == (b"fresh", {}, FROZEN_AT) and got.is_stale is False
    assert got.expires_at == FROZEN_AT + timedelta(seconds=120)
    assert repo.get_with_meta("anilist", "media:1") == got
    assert claims(database) == []  # released
    # Now a hit: no second fetch.
    assert repo.get_or_fetch("anilist", "media:1", fetch, ttl_seconds=120) == got
    assert fetch.calls == 1


def test_an_expired_row_is_refetched(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    repo.set("anilist", "k", b"old", ttl_seconds=60)
    frozen_clock.advance(60)
    got = repo.get_or_fetch("anilist", "k", Fetcher(b"new"), ttl_seconds=60)
    assert (got.payload, got.is_stale) == (b"new", False)
    assert got.fetched_at == FROZEN_AT + timedelta(seconds=60)


def test_headers_from_fetch_are_stored_as_set_with_meta_stores_them(make_repository: MakeRepository) -> None:
    repo = make_repository(redact_headers={"Set-Cookie"})
    headers = {"ETag": "v1", "Set-Cookie": "secret", "X-\u540d": "\u5024"}
    got = repo.get_or_fetch("jikan", "anime/1", Fetcher((bytearray(b"body"), headers)), ttl_seconds=60)
    assert got == (b"body", {"ETag": "v1", "X-\u540d": "\u5024"}, FROZEN_AT)
    assert repo.get_with_meta("jikan", "anime/1") == got


def test_ttl_zero_stores_a_row_that_is_already_stale(repo: CacheRepository) -> None:
    got = repo.get_or_fetch("anilist", "k", Fetcher(b"now"), ttl_seconds=0)
    assert (got.payload, got.is_stale) == (b"now", True)
    assert repo.get("anilist", "k") is None


# -- failures -------------------------------------------------------------------------------------


def test_a_fetch_that_raises_releases_the_claim_and_the_next_caller_fetches_at_once(
    repo: CacheRepository, database: Engine
) -> None:
    with pytest.raises(RuntimeError, match="upstream down"):
        repo.get_or_fetch("anilist", "k", Fetcher(RuntimeError("upstream down")), ttl_seconds=60)
    assert claims(database) == [] and row_count(database) == 0

    # wait_seconds=0: had the claim stayed, this would be a FetchTimeoutError.
    got = repo.get_or_fetch("anilist", "k", Fetcher(b"second try"), ttl_seconds=60, wait_seconds=0)
    assert got.payload == b"second try"


def test_serve_stale_returns_the_expired_row_when_fetch_raises(
    repo: CacheRepository, frozen_clock: FrozenClock, database: Engine
) -> None:
    repo.set("anilist", "k", b"last good", ttl_seconds=60)
    frozen_clock.advance(61)
    fetch = Fetcher(OSError("unreachable"))

    got = repo.get_or_fetch("anilist", "k", fetch, ttl_seconds=60, serve_stale=True)

    assert fetch.calls == 1
    assert (got.payload, got.is_stale) == (b"last good", True)
    assert claims(database) == []
    with pytest.raises(OSError):  # without serve_stale the error propagates
        repo.get_or_fetch("anilist", "k", fetch, ttl_seconds=60)
    with pytest.raises(OSError):  # and with it, when there is no expired row to serve
        repo.get_or_fetch("anilist", "other", fetch, ttl_seconds=60, serve_stale=True)


def test_a_base_exception_in_fetch_releases_the_claim_too(repo: CacheRepository, database: Engine) -> None:
    with pytest.raises(KeyboardInterrupt):
        repo.get_or_fetch("anilist", "k", Fetcher(KeyboardInterrupt()), ttl_seconds=60, serve_stale=True)
    assert claims(database) == []


# -- waiting --------------------------------------------------------------------------------------


def test_a_waiter_gives_up_after_wait_seconds(
    repo: CacheRepository, frozen_clock: FrozenClock, database: Engine
) -> None:
    hold_claim(database, "anilist", "k", lease_until_ms=now_ms(frozen_clock) + 60_000)

    with pytest.raises(FetchTimeoutError) as caught:
        repo.get_or_fetch("anilist", "k", must_not_fetch, ttl_seconds=60, wait_seconds=0)
    error = caught.value
    assert isinstance(error, StoreError)
    assert (error.backend, error.signature, error.target) == ("anilist", "k", repo.target)
    assert repo.target in str(error) and "'anilist', 'k'" in str(error)
    assert claims(database) == [("anilist", "k", "dead", now_ms(frozen_clock) + 60_000)]
    assert row_count(database) == 0


class _CountingClaims:
    """Wraps a repository's ``_db`` and counts the claim attempts (one per look at the key)."""

    def __init__(self, db: Any, claim: Any) -> None:
        self._db, self._claim = db, claim
        self.attempts = 0

    def __getattr__(self, name: str) -> Any:  # reads, close
        return getattr(self._db, name)

    async def execute(self, statement: Any, values: Any) -> int:
        self.attempts += statement is self._claim
        return await self._db.execute(statement, values)


def test_a_waiter_polls_with_a_backoff_not_a_busy_loop(
    repo: CacheRepository, frozen_clock: FrozenClock, database: Engine
) -> None:
    hold_claim(database, "anilist", "k", lease_until_ms=now_ms(frozen_clock) + 60_000)
    counting = repo._ops.db = _CountingClaims(repo._ops.db, repo._sql.claim)
    with pytest.raises(FetchTimeoutError):
        repo.get_or_fetch("anilist", "k", must_not_fetch, ttl_seconds=60, wait_seconds=0.4)
    # Pauses of 10, 20, 40, 80 and 160 ms, then the ~90 ms left: 7 looks (a busy loop: thousands).
    assert 4 <= counting.attempts <= 8


def test_serve_stale_returns_the_expired_row_at_once_while_another_caller_holds_the_claim(
    repo: CacheRepository, frozen_clock: FrozenClock, database: Engine
) -> None:
    repo.set("anilist", "k", b"old", ttl_seconds=60)
    frozen_clock.advance(61)
    hold_claim(database, "anilist", "k", lease_until_ms=now_ms(frozen_clock) + 60_000, holder="refreshing")

    got = repo.get_or_fetch("anilist", "k", must_not_fetch, ttl_seconds=60, serve_stale=True, wait_seconds=30)

    assert (got.payload, got.is_stale) == (b"old", True)
    assert [holder for _b, _s, holder, _lease in claims(database)] == ["refreshing"]  # not ours to release


def test_the_frozen_clock_drives_takeover_of_a_dead_holders_claim(
    repo: CacheRepository, frozen_clock: FrozenClock, database: Engine
) -> None:
    lease_until = now_ms(frozen_clock) + 2_000
    hold_claim(database, "anilist", "k", lease_until_ms=lease_until)

    frozen_clock.advance(1.999)  # one millisecond before the lease ends: still held
    with pytest.raises(FetchTimeoutError):
        repo.get_or_fetch("anilist", "k", must_not_fetch, ttl_seconds=60, wait_seconds=0)
    frozen_clock.advance(0.001)  # lease_until <= now: ended
    fetch = Fetcher(b"taken over")
    got = repo.get_or_fetch("anilist", "k", fetch, ttl_seconds=60, wait_seconds=0)

    assert (fetch.calls, got.payload) == (1, b"taken over")
    assert claims(database) == []


def test_a_holder_whose_lease_ended_does_not_release_its_successors_claim(
    repo: CacheRepository, frozen_clock: FrozenClock, database: Engine
) -> None:
    def slow_fetch() -> bytes:
        # Our lease ends while we fetch, and another caller takes the key over.
        frozen_clock.advance(3)
        now = now_ms(frozen_clock)
        claim = ("anilist", "k", "successor", now + 5_000, now)
        assert run_blocking(repo._db.execute(repo._sql.claim, claim)) == 1 or (
            repo._sql.claim_takeover is not None
            and run_blocking(repo._db.execute(repo._sql.claim_takeover, claim)) == 1
        )
        return b"late"

    got = repo.get_or_fetch("anilist", "k", slow_fetch, ttl_seconds=60, lease_seconds=2)

    assert got.payload == b"late"  # what we fetched is still stored
    assert [holder for _b, _s, holder, _lease in claims(database)] == ["successor"]


def test_a_waiter_returns_the_row_its_holder_stores(make_repository: MakeRepository, database: Engine) -> None:
    """Two repositories (as two processes would have), the holder in a thread, the clock frozen."""
    holder_repo, waiter_repo = make_repository(), make_repository()
    fetching, release = threading.Event(), threading.Event()

    def fetch() -> bytes:
        fetching.set()
        assert release.wait(JOIN_TIMEOUT_SECONDS)
        return b"from the holder"

    holder = threading.Thread(target=holder_repo.get_or_fetch, args=("anilist", "k", fetch), kwargs={"ttl_seconds": 60})
    holder.start()
    assert fetching.wait(JOIN_TIMEOUT_SECONDS)
    timer = threading.Timer(0.05, release.set)
    timer.start()
    try:
        got = waiter_repo.get_or_fetch("anilist", "k", must_not_fetch, ttl_seconds=60)
    finally:
        release.set()
        holder.join(JOIN_TIMEOUT_SECONDS)
    assert got.payload == b"from the holder"
    assert claims(database) == []


def test_different_keys_never_wait_for_each_other(repo: CacheRepository) -> None:
    fetching, done = threading.Event(), threading.Event()

    def blocked_fetch() -> bytes:
        fetching.set()
        assert done.wait(JOIN_TIMEOUT_SECONDS), "the other key waited for this fetch"
        return b"one"

    first = threading.Thread(
        target=repo.get_or_fetch, args=("anilist", "one", blocked_fetch), kwargs={"ttl_seconds": 60}
    )
    first.start()
    try:
        assert fetching.wait(JOIN_TIMEOUT_SECONDS)
        # While "one" is being fetched (claim held, no transaction open), other keys, reads and writes go on.
        assert repo.get_or_fetch("anilist", "two", Fetcher(b"two"), ttl_seconds=60, wait_seconds=0).payload == b"two"
        repo.set("jikan", "x", b"x", ttl_seconds=60)
        assert repo.get("jikan", "x") == b"x"
    finally:
        done.set()
        first.join(JOIN_TIMEOUT_SECONDS)
    assert repo.get("anilist", "one") == b"one"


def race_get_or_fetch(repositories: list[CacheRepository], fetch: Callable[[], bytes]) -> list[Any]:
    """``get_or_fetch("anilist", "hot", fetch)`` from one thread per repository, all released at
    once; what each returned (a ``CachedResponse``) or raised."""
    barrier = threading.Barrier(len(repositories))
    results: list[Any] = [None] * len(repositories)

    def call(index: int) -> None:
        barrier.wait(JOIN_TIMEOUT_SECONDS)
        try:
            results[index] = repositories[index].get_or_fetch("anilist", "hot", fetch, ttl_seconds=60)
        except BaseException as exc:  # reported in the callers' assertions
            results[index] = exc

    threads = [threading.Thread(target=call, args=(index,)) for index in range(len(repositories))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_SECONDS)
    return results


@pytest.mark.parametrize("shared", [True, False], ids=["one-repository", "a-repository-each"])
def test_eight_threads_on_one_key_fetch_once(make_repository: MakeRepository, shared: bool) -> None:
    repositories = [make_repository()] * 8 if shared else [make_repository() for _ in range(8)]
    calls: list[int] = []

    def fetch() -> bytes:
        calls.append(threading.get_ident())
        time.sleep(0.3)  # long enough for every other thread to find the claim taken
        return b"once"

    results = race_get_or_fetch(repositories, fetch)
    assert len(calls) == 1
    assert [getattr(result, "payload", result) for result in results] == [b"once"] * 8


def test_eight_callers_racing_to_take_over_an_ended_lease_fetch_once(
    make_repository: MakeRepository, frozen_clock: FrozenClock, database: Engine
) -> None:
    """The takeover statement is atomic too (MariaDB's conditional UPDATE, the others' upsert)."""
    hold_claim(database, "anilist", "hot", lease_until_ms=now_ms(frozen_clock))  # ended: lease_until <= now
    calls: list[int] = []

    def fetch() -> bytes:
        calls.append(threading.get_ident())
        time.sleep(0.3)  # the others find the claim taken over, not ended
        return b"taken over once"

    results = race_get_or_fetch([make_repository() for _ in range(8)], fetch)
    assert len(calls) == 1
    assert [getattr(result, "payload", result) for result in results] == [b"taken over once"] * 8
    assert claims(database) == []


# -- arguments ------------------------------------------------------------------------------------

BAD_ARGUMENTS = [
    pytest.param({"fetch": b"not callable"}, TypeError, id="fetch-not-callable"),
    pytest.param({"fetch": None}, TypeError, id="fetch-none"),
    pytest.param({"ttl_seconds": -1}, ValueError, id="ttl-negative"),
    pytest.param({"ttl_seconds": True}, TypeError, id="ttl-bool"),
    pytest.param({"ttl_seconds": 1.5}, TypeError, id="ttl-float"),
    pytest.param({"wait_seconds": -0.1}, ValueError, id="wait-negative"),
    pytest.param({"wait_seconds": float("nan")}, ValueError, id="wait-nan"),
    pytest.param({"wait_seconds": float("inf")}, ValueError, id="wait-inf"),
    pytest.param({"wait_seconds": True}, TypeError, id="wait-bool"),
    pytest.param({"wait_seconds": "1"}, TypeError, id="wait-str"),
    pytest.param({"wait_seconds": None}, TypeError, id="wait-none"),
    pytest.param({"lease_seconds": 0}, ValueError, id="lease-zero"),
    pytest.param({"lease_seconds": -5}, ValueError, id="lease-negative"),
    pytest.param({"lease_seconds": False}, TypeError, id="lease-bool"),
    pytest.param({"lease_seconds": 10**10}, ValueError, id="lease-huge"),
    pytest.param({"backend": 1}, TypeError, id="backend-not-str"),
    pytest.param({"signature": "s" * (KEY_MAX_LENGTH + 1)}, ValueError, id="signature-too-long"),
]


@pytest.mark.parametrize(("change", "error"), BAD_ARGUMENTS)
def test_bad_arguments_raise_before_anything_is_fetched_or_stored(
    repo: CacheRepository, database: Engine, change: dict[str, Any], error: type[Exception]
) -> None:
    fetch = Fetcher()
    arguments: dict[str, Any] = {"backend": "anilist", "signature": "k", "fetch": fetch, "ttl_seconds": 60, **change}
    with pytest.raises(error):
        repo.get_or_fetch(arguments.pop("backend"), arguments.pop("signature"), arguments.pop("fetch"), **arguments)
    assert fetch.calls == 0
    assert row_count(database) == 0 and claims(database) == []


@pytest.mark.parametrize(
    "returned",
    [
        "text, not bytes",
        None,
        42,
        (b"payload",),
        (b"payload", {"h": "v"}, "extra"),
        ("text", {"h": "v"}),
        [b"payload", {"h": "v"}],
        (b"payload", "not a mapping"),
        (b"payload", {"h": 1}),
    ],
    ids=["str", "none", "int", "1-tuple", "3-tuple", "str-payload", "list", "headers-str", "header-value-int"],
)
def test_fetch_returning_something_else_raises_type_error_and_stores_nothing(
    repo: CacheRepository, frozen_clock: FrozenClock, database: Engine, returned: object
) -> None:
    repo.set("anilist", "k", b"old", ttl_seconds=60)
    frozen_clock.advance(61)
    before = dump_rows(database)
    with pytest.raises(TypeError):
        repo.get_or_fetch("anilist", "k", Fetcher(returned), ttl_seconds=60, serve_stale=True)
    assert dump_rows(database) == before  # the expired row is untouched
    assert claims(database) == []  # and the claim released


def test_valid_seconds_of_every_numeric_kind(repo: CacheRepository) -> None:
    for index, (wait, lease) in enumerate([(0, 1), (0.0, 0.0005), (30, 60.0), (10**9, 10**9)]):
        got = repo.get_or_fetch(
            "anilist", f"k{index}", Fetcher(), ttl_seconds=1, wait_seconds=wait, lease_seconds=lease
        )
        assert got.payload == b"fetched"


# -- purge, stats, CLI, drop-in ---------------------------------------------------------------------


def test_purge_removes_ended_claims_and_counts_only_rows(
    repo: CacheRepository, frozen_clock: FrozenClock, database: Engine
) -> None:
    now = now_ms(frozen_clock)
    hold_claim(database, "anilist", "ended", lease_until_ms=now)
    hold_claim(database, "anilist", "live", lease_until_ms=now + 1)
    repo.set("anilist", "expired", b"x", ttl_seconds=0)
    assert repo.stats().claims_held == 1

    assert repo.purge_expired() == 1  # the expired row; claims are not rows

    assert [signature for _b, signature, _h, _l in claims(database)] == ["live"]
    frozen_clock.advance(0.001)
    assert repo.stats().claims_held == 0
    assert repo.purge_expired() == 0
    assert claims(database) == []


def test_stats_count_claims_held(repo: CacheRepository, frozen_clock: FrozenClock, database: Engine) -> None:
    for index in range(3):
        hold_claim(database, "anilist", f"k{index}", lease_until_ms=now_ms(frozen_clock) + 1_000 * (index + 1))
    stats = repo.stats()
    assert (stats.claims_held, stats.rows) == (3, 0)
    assert stats.as_dict()["claims_held"] == 3
    frozen_clock.advance(2)
    assert repo.stats().claims_held == 1


def test_the_stats_command_reports_claims_held(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    CacheRepository(path).close()
    engine = plain_engine(f"sqlite:///{path}")
    hold_claim(engine, "anilist", "k", lease_until_ms=time.time_ns() // 1_000_000 + 600_000)
    engine.dispose()
    runner = cli_runner()

    text = runner.invoke(cli.cli, ["stats", "--url", str(path)])
    as_json = runner.invoke(cli.cli, ["stats", "--url", str(path), "--json"])

    assert text.exit_code == 0 and "claims:   1 held" in text.output
    assert as_json.exit_code == 0 and json.loads(as_json.output)["claims_held"] == 1


def test_the_cache_repository_fixture_has_get_or_fetch(cache_repository: CacheRepository) -> None:
    """The plugin's per-test copy of its migrated template holds ``cache_locks`` too."""
    fetch = Fetcher(b"v")
    assert cache_repository.get_or_fetch("anilist", "k", fetch, ttl_seconds=60).payload == b"v"
    assert cache_repository.get_or_fetch("anilist", "k", fetch, ttl_seconds=60).payload == b"v"
    assert fetch.calls == 1 and cache_repository.stats().claims_held == 0


def test_the_drop_in_sqlite_cache_has_get_or_fetch_on_its_patched_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FrozenClock()
    monkeypatch.setattr(cache_module, "_utcnow", clock)
    with cache_module.SqliteCache(tmp_path / "cache.sqlite") as cache:
        assert cache.get_or_fetch("anilist", "k", Fetcher(b"v"), ttl_seconds=60).payload == b"v"
        # A dead holder's claim, written through the seed's private connection as animedex's tests would.
        with cache._lock:
            cache._conn.execute(
                "INSERT INTO cache_locks (backend, signature, holder, lease_until) VALUES (?, ?, ?, ?)",
                ("anilist", "held", "dead", epoch_millis(clock()) + 5_000),
            )
        with pytest.raises(FetchTimeoutError):
            cache.get_or_fetch("anilist", "held", must_not_fetch, ttl_seconds=60, wait_seconds=0)
        clock.advance(5)
        assert cache.get_or_fetch("anilist", "held", Fetcher(b"w"), ttl_seconds=60, wait_seconds=0).payload == b"w"
        with cache._lock:
            assert cache._conn.execute("SELECT count(*) FROM cache_locks").fetchone() == (0,)


_FAST_PATH_PROBE = """
import sys
from animedex_store import CacheRepository

with CacheRepository(sys.argv[1]) as repository:
    assert repository.get_or_fetch("anilist", "k", lambda: (b"v", {"ETag": "1"}), ttl_seconds=60).payload == b"v"
    assert repository.get_or_fetch("anilist", "k", lambda: b"never", ttl_seconds=60).payload == b"v"
    assert repository.stats().claims_held == 0
    repository.purge_expired()
print(heavy_loaded())
"""


def test_get_or_fetch_on_an_up_to_date_sqlite_file_loads_no_sqlalchemy(tmp_path: Path) -> None:
    """As the README's "Start-up: what loads when" says, the SQLite fast path runs the frozen text of
    the claim statements too."""
    path = tmp_path / "cache.sqlite"
    CacheRepository(path).close()
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + _FAST_PATH_PROBE, str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- many processes (real clock: lease 2 s, fetch 1 s) ----------------------------------------------

LEASE_SECONDS = 2.0
FETCH_SECONDS = 1.0
#: Slack for a loaded 2-core machine: process scheduling, a poll interval, a server round trip.
MARGIN_SECONDS = 1.0
PROCESSES = 8


def _log(path: str, **event: Any) -> None:
    """Append one JSON line; a single ``write`` on an ``O_APPEND`` file is not interleaved."""
    line = (json.dumps({**event, "pid": os.getpid(), "t": time.time()}) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _fetcher(log: str, key: str, *, first_hangs: bool) -> Callable[[], tuple[bytes, dict[str, str]]]:
    def fetch() -> tuple[bytes, dict[str, str]]:
        hang = first_hangs and not any(event["event"] == "start" for event in read_log(Path(log)))
        _log(log, event="start", key=key)
        time.sleep(600 if hang else FETCH_SECONDS)  # the first holder is killed long before
        _log(log, event="end", key=key)
        return f"{key} fetched by {os.getpid()}".encode(), {"X-Fetched-By": str(os.getpid())}

    return fetch


def _caller(url: str, key: str, log: str, barrier: Any, results: Any, first_hangs: bool, serve_stale: bool) -> None:
    """One process: wait for the others, then get_or_fetch ``key``; reports what it got on ``results``."""
    try:
        with CacheRepository(url) as repository:
            barrier.wait(JOIN_TIMEOUT_SECONDS)
            started = time.time()
            got = repository.get_or_fetch(
                "anilist",
                key,
                _fetcher(log, key, first_hangs=first_hangs),
                ttl_seconds=TTL,
                serve_stale=serve_stale,
                wait_seconds=JOIN_TIMEOUT_SECONDS,
                lease_seconds=LEASE_SECONDS,
            )
            results.put((os.getpid(), got.payload, got.is_stale, started, time.time()))
    except BaseException as exc:  # reported to the parent, which fails the test
        results.put((os.getpid(), f"{type(exc).__name__}: {exc}", None, None, time.time()))


class Children:
    """Forked callers of one test; any left at the end are killed."""

    def __init__(self, url: str, log: Path, count: int) -> None:
        self.url, self.log = url, str(log)
        self.context = context()
        self.barrier = self.context.Barrier(count)
        self.results = self.context.Queue()
        self.processes: list[Any] = []

    def start(self, key: str, *, first_hangs: bool = False, serve_stale: bool = False) -> Any:
        process = self.context.Process(
            target=_caller,
            args=(self.url, key, self.log, self.barrier, self.results, first_hangs, serve_stale),
        )
        process.start()
        self.processes.append(process)
        return process

    def outcomes(self, count: int) -> dict[int, tuple[Any, ...]]:
        """``pid -> (payload or error, is_stale, started, finished)`` of ``count`` children."""
        found = {}
        for _ in range(count):
            pid, *outcome = self.results.get(timeout=JOIN_TIMEOUT_SECONDS)
            found[pid] = tuple(outcome)
        return found

    def close(self) -> None:
        for process in self.processes:
            process.join(timeout=JOIN_TIMEOUT_SECONDS)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)


@pytest.fixture
def children(engine_url: str, tmp_path: Path) -> Iterator[Callable[[int], Children]]:
    """``children(count)``: forked callers on ``engine_url``, migrated before any of them starts."""
    CacheRepository(engine_url).close()
    made: list[Children] = []

    def make(count: int) -> Children:
        made.append(Children(engine_url, tmp_path / "fetches.log", count))
        return made[-1]

    yield make
    for group in made:
        group.close()


def payloads(outcomes: dict[int, tuple[Any, ...]]) -> list[Any]:
    return [outcome[0] for outcome in outcomes.values()]


@POSIX_ONLY
@pytest.mark.slow
def test_eight_processes_on_one_missing_key_fetch_once(
    children: Callable[[int], Children], engine_url: str, tmp_path: Path
) -> None:
    group = children(PROCESSES)
    for _ in range(PROCESSES):
        group.start("hot")
    outcomes = group.outcomes(PROCESSES)

    fetches = [event for event in read_log(tmp_path / "fetches.log") if event["event"] == "start"]
    assert len(fetches) == 1, fetches
    expected = f"hot fetched by {fetches[0]['pid']}".encode()
    assert payloads(outcomes) == [expected] * PROCESSES, outcomes
    assert all(is_stale is False for _payload, is_stale, *_ in outcomes.values())
    with CacheRepository(engine_url) as repository:
        assert repository.get_with_meta("anilist", "hot").headers == {"X-Fetched-By": str(fetches[0]["pid"])}
        assert repository.stats().claims_held == 0


@POSIX_ONLY
@pytest.mark.slow
def test_eight_processes_on_eight_keys_fetch_in_parallel(children: Callable[[int], Children], tmp_path: Path) -> None:
    group = children(PROCESSES)
    for index in range(PROCESSES):
        group.start(f"key{index}")
    outcomes = group.outcomes(PROCESSES)

    events = read_log(tmp_path / "fetches.log")
    starts = {event["key"]: event["t"] for event in events if event["event"] == "start"}
    ends = {event["key"]: event["t"] for event in events if event["event"] == "end"}
    assert sorted(starts) == sorted(ends) == [f"key{index}" for index in range(PROCESSES)]  # one fetch per key
    # Each process fetched its own key.
    fetched_by = {event["pid"]: event["key"] for event in events if event["event"] == "start"}
    assert {pid: outcome[0] for pid, outcome in outcomes.items()} == {
        pid: f"{key} fetched by {pid}".encode() for pid, key in fetched_by.items()
    }
    # All eight fetches ran at the same time: the last one started before the first one ended
    # (one after another, each would have started after the previous one's end).
    assert max(starts.values()) < min(ends.values()), (starts, ends)


@POSIX_ONLY
@pytest.mark.slow
def test_a_killed_holder_is_taken_over_once_its_lease_ends(children: Callable[[int], Children], tmp_path: Path) -> None:
    log = tmp_path / "fetches.log"
    group = children(PROCESSES)
    for _ in range(PROCESSES):
        group.start("hot", first_hangs=True)
    deadline = time.monotonic() + JOIN_TIMEOUT_SECONDS
    while not read_log(log):
        assert time.monotonic() < deadline, "nobody started fetching"
        time.sleep(0.01)
    first = read_log(log)[0]
    os.kill(first["pid"], signal.SIGKILL)  # mid-fetch, claim held

    outcomes = group.outcomes(PROCESSES - 1)

    events = read_log(log)
    starts = [event for event in events if event["event"] == "start"]
    assert len(starts) == 2, events  # the killed holder's and its successor's: exactly two fetches
    second = starts[1]
    expected = f"hot fetched by {second['pid']}".encode()
    assert first["pid"] not in outcomes
    assert payloads(outcomes) == [expected] * (PROCESSES - 1), outcomes
    # The successor took over when the lease ended, not before and not much after.
    waited = second["t"] - first["t"]
    assert LEASE_SECONDS - 0.2 <= waited <= LEASE_SECONDS + MARGIN_SECONDS, waited
    # Everyone else had the row soon after the successor stored it.
    end = next(event["t"] for event in events if event["event"] == "end")
    assert all(finished <= end + LAST_POLL_SECONDS + MARGIN_SECONDS for *_, finished in outcomes.values())


@POSIX_ONLY
@pytest.mark.slow
def test_serve_stale_answers_at_once_while_another_process_refreshes(
    children: Callable[[int], Children], engine_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "fetches.log"
    with CacheRepository(engine_url) as repository:
        repository.set("anilist", "hot", b"old", ttl_seconds=0)  # expired at once (real clock)
    group = children(1)
    group.start("hot")
    deadline = time.monotonic() + JOIN_TIMEOUT_SECONDS
    while not read_log(log):
        assert time.monotonic() < deadline, "the refreshing process never started its fetch"
        time.sleep(0.01)

    with CacheRepository(engine_url) as repository:
        got = repository.get_or_fetch("anilist", "hot", must_not_fetch, ttl_seconds=TTL, serve_stale=True)
    refresh_still_running = not any(event["event"] == "end" for event in read_log(log))

    assert (got.payload, got.is_stale) == (b"old", True)
    assert refresh_still_running  # answered while the other process was still fetching
    (refreshed,) = group.outcomes(1).values()
    assert refreshed[:2] == (f"hot fetched by {read_log(log)[0]['pid']}".encode(), False)


# -- lease renewal --------------------------------------------------------------------------------


def _wait_for_renewal(database: Engine, clock: FrozenClock, lease_ms: int) -> None:
    """Poll the claim (deadline: 30 s) until its lease ends more than half a lease after the clock's now."""
    for _ in range(3_000):
        held = claims(database)
        if held and held[0][3] > now_ms(clock) + lease_ms // 2:
            return
        time.sleep(0.01)  # polling for the renewal thread's write, not waiting for time to pass
    raise AssertionError("the holder never renewed its lease")


def test_a_fetch_lasting_three_leases_is_fetched_once(
    make_repository: MakeRepository, frozen_clock: FrozenClock, database: Engine
) -> None:
    """While ``fetch()`` runs, its holder renews the lease (a thread, every third of it): another
    repository, as another process would be, never takes the key over."""
    holder, other = make_repository(), make_repository()
    lease = 0.3

    def slow_fetch() -> bytes:
        for _ in range(3):
            frozen_clock.advance(lease)  # a whole lease passes while we fetch...
            _wait_for_renewal(database, frozen_clock, int(lease * 1000))  # ...and the renewal keeps it ours
            with pytest.raises(FetchTimeoutError):
                other.get_or_fetch("anilist", "k", must_not_fetch, ttl_seconds=TTL, wait_seconds=0)
        return b"once"

    got = holder.get_or_fetch("anilist", "k", slow_fetch, ttl_seconds=TTL, lease_seconds=lease)
    assert got.payload == b"once"
    assert claims(database) == []


def test_without_renewals_a_slow_holder_is_taken_over(
    make_repository: MakeRepository, frozen_clock: FrozenClock, database: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: with the renewal turned off, the same slow fetch loses its key to the other."""
    holder, other = make_repository(), make_repository()

    async def no_renewal(self: object, *_args: object) -> bool:
        return True

    monkeypatch.setattr("animedex_store.rules.flight.Flight._renew", no_renewal)

    def slow_fetch() -> bytes:
        frozen_clock.advance(0.3)
        taken = other.get_or_fetch("anilist", "k", Fetcher(b"taken over"), ttl_seconds=TTL, wait_seconds=0)
        assert taken.payload == b"taken over"
        return b"late"

    holder.get_or_fetch("anilist", "k", slow_fetch, ttl_seconds=TTL, lease_seconds=0.3)


# -- the renewer: one background thread per repository, never waited for ----------------------------


def test_misses_share_one_background_thread(make_repository: MakeRepository) -> None:
    """Eight fetches under way at once are renewed by one thread, not a thread each."""
    repository = make_repository()
    before = set(threading.enumerate())
    all_fetching = threading.Barrier(9)
    done = threading.Event()

    def fetch() -> bytes:
        all_fetching.wait(JOIN_TIMEOUT_SECONDS)
        assert done.wait(JOIN_TIMEOUT_SECONDS)
        return b"v"

    callers = [
        threading.Thread(
            target=repository.get_or_fetch, args=("anilist", f"k{index}", fetch), kwargs={"ttl_seconds": 60}
        )
        for index in range(8)
    ]
    for caller in callers:
        caller.start()
    all_fetching.wait(JOIN_TIMEOUT_SECONDS)  # every fetch is under way, each lease scheduled for renewal
    started = set(threading.enumerate()) - before - set(callers)
    done.set()
    for caller in callers:
        caller.join(JOIN_TIMEOUT_SECONDS)
    assert [thread.name for thread in started] == ["animedex-store background"]
    assert all(repository.get("anilist", f"k{index}") == b"v" for index in range(8))


def test_a_finished_fetch_does_not_wait_for_a_renewal_in_progress(
    repo: CacheRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    renewing, returned = threading.Event(), threading.Event()
    outcome: list[bool] = []

    async def slow_renewal(self: object) -> bool:
        renewing.set()
        returned.wait(10)  # a renewal stuck on a slow database...
        outcome.append(returned.is_set())  # ...which get_or_fetch did not wait for
        return True

    monkeypatch.setattr("animedex_store.rules.flight.Flight._renew", slow_renewal)

    def fetch() -> bytes:
        assert renewing.wait(JOIN_TIMEOUT_SECONDS)  # a renewal is in progress as the fetch ends
        return b"done"

    got = repo.get_or_fetch("anilist", "k", fetch, ttl_seconds=60, lease_seconds=0.03)
    returned.set()
    deadline = time.monotonic() + JOIN_TIMEOUT_SECONDS
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for the renewal to end, not waiting for time to pass
    assert got.payload == b"done" and outcome == [True]


@pytest.mark.parametrize("side", ["sync", "async"])
def test_a_failing_renewal_is_logged_once(
    tmp_path: Path, side: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The renewals go on (the lease still runs) and the failure is told once, with the key."""
    attempts: list[int] = []

    async def unreachable(self: object, *_args: object) -> bool:
        attempts.append(1)
        raise StoreError("the database went away", target="db")

    monkeypatch.setattr("animedex_store.rules.operations._Flights.renew", unreachable)
    path = tmp_path / "cache.sqlite"

    def until_three_attempts() -> bytes:
        deadline = time.monotonic() + JOIN_TIMEOUT_SECONDS
        while len(attempts) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling for the background thread's attempts
        return b"fetched"

    caplog.set_level("WARNING", logger="animedex_store")
    if side == "sync":
        with CacheRepository(path) as repository:
            got = repository.get_or_fetch("anilist", "k", until_three_attempts, ttl_seconds=60, lease_seconds=0.03)
    else:
        import asyncio

        from animedex_store import AsyncCacheRepository

        async def use() -> CachedResponse:
            async with AsyncCacheRepository(path) as repository:
                return await repository.get_or_fetch(
                    "anilist", "k", until_three_attempts, ttl_seconds=60, lease_seconds=0.03
                )

        got = asyncio.run(use())
    assert got.payload == b"fetched" and len(attempts) >= 3
    records = [record for record in caplog.records if record.name == "animedex_store.rules.flight"]
    assert len(records) == 1, records
    assert "'anilist', 'k'" in records[0].getMessage() and "the database went away" in records[0].getMessage()


def test_a_claim_lost_during_the_fetch_is_logged(
    repo: CacheRepository, frozen_clock: FrozenClock, database: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="animedex_store")
    lease = 0.03

    def fetch() -> bytes:
        with database.begin() as connection:  # another caller took the key over (our lease had ended)
            connection.execute(locks.update().values(holder="successor"))
        deadline = time.monotonic() + JOIN_TIMEOUT_SECONDS
        while not any(record.name == "animedex_store.rules.flight" for record in caplog.records):
            assert time.monotonic() < deadline, "the lost claim was never told"
            time.sleep(0.01)  # polling for the background thread's renewal
        return b"late"

    assert repo.get_or_fetch("anilist", "k", fetch, ttl_seconds=60, lease_seconds=lease).payload == b"late"
    (record,) = [record for record in caplog.records if record.name == "animedex_store.rules.flight"]
    assert "taken over" in record.getMessage()
