"""A server statement retried after a lost reply has the effect it would have had if the reply had come.

A reply is lost the way a dropped connection loses it: the statement runs and commits, then the
connection's socket is shut down before the reply is read (:class:`LoseOneReply`: the real statement,
then the socket shut down and the connection read from, which raises the driver's own error for a
connection the network dropped). The repository
runs the statement again on a new connection: a claim finds its holder's own claim and holds it (it
used to find "someone else's" and wait for itself until ``FetchTimeoutError``), and ``delete``
answers ``True`` (it used to answer ``False`` after deleting).
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest
from at_head import build_at_head
from conftest import SERVER_URLS
from rowdump import claim_rows

from animedex_store import AsyncCacheRepository, CacheRepository


class LoseOneReply:
    """Wraps ``driver.run``: the first run of ``statement`` commits, then its connection is closed
    before the reply is read."""

    def __init__(self, driver: Any, statement: Any) -> None:
        self.driver = driver
        self.statement = statement
        self.real_run = driver.run
        self.lost = 0
        driver.run = self.run

    async def run(self, connection: Any, kind: str, statement: Any, values: Any) -> Any:
        result = await self.real_run(connection, kind, statement, values)
        if statement is self.statement and not self.lost:
            self.lost += 1
            _shut_down(connection)  # the connection drops with the reply in flight
            await self.real_run(connection, kind, statement, values)  # raises what reading a reply would
            raise AssertionError("a dropped connection answered")
        return result


def _shut_down(connection: Any) -> None:
    """Shut the socket under any of the drivers' connections down, as a dropped network would."""
    inner = getattr(connection, "connection", connection)  # our sync _Held, asyncmy's _Cursored
    raw = getattr(inner, "dbapi_connection", inner)  # a pooled DB-API connection's own
    transport = getattr(raw, "_transport", None)  # asyncpg, asyncmy
    if transport is not None:
        transport.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
    elif getattr(raw, "_sock", None) is not None:  # PyMySQL
        raw._sock.shutdown(socket.SHUT_RDWR)
    else:  # psycopg: libpq's descriptor
        with socket.socket(fileno=os.dup(raw.pgconn.socket)) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def url(server_url: str) -> str:
    build_at_head(server_url, SERVER_URLS)
    return server_url


def test_a_claim_whose_reply_was_lost_is_held(url: str) -> None:
    fetched: list[int] = []

    def fetch() -> bytes:
        fetched.append(1)
        return b"fetched once"

    with CacheRepository(url) as repository:
        lost = LoseOneReply(repository._db.driver, repository._sql.claim)  # type: ignore[attr-defined]
        got = repository.get_or_fetch("b", "k", fetch, ttl_seconds=60, wait_seconds=1.0)
    assert (got.payload, lost.lost, len(fetched)) == (b"fetched once", 1, 1)
    assert claim_rows(url) == []


def test_a_delete_whose_reply_was_lost_answers_true(url: str) -> None:
    with CacheRepository(url) as repository:
        repository.set("b", "k", b"v", ttl_seconds=60)
        lost = LoseOneReply(repository._db.driver, repository._sql.delete)  # type: ignore[attr-defined]
        assert repository.delete("b", "k") is True
        assert lost.lost == 1 and repository.get("b", "k") is None
        assert repository.delete("b", "k") is False  # nothing left to delete, no reply lost


def test_an_async_claim_whose_reply_was_lost_is_held(url: str) -> None:
    async def use() -> tuple[bytes, int]:
        async with AsyncCacheRepository(url) as repository:
            operations: Any = repository._ops
            lost = LoseOneReply(operations.db.driver, operations.sql.claim)
            got = await repository.get_or_fetch("b", "k", lambda: b"fetched once", ttl_seconds=60, wait_seconds=1.0)
            return got.payload, lost.lost

    assert asyncio.run(use()) == (b"fetched once", 1)
    assert claim_rows(url) == []


def test_an_async_delete_whose_reply_was_lost_answers_true(url: str) -> None:
    async def use() -> list[Any]:
        async with AsyncCacheRepository(url) as repository:
            await repository.set("b", "k", b"v", ttl_seconds=60)
            operations: Any = repository._ops
            lost = LoseOneReply(operations.db.driver, operations.sql.delete)
            deleted = await repository.delete("b", "k")
            return [deleted, lost.lost, await repository.get("b", "k"), await repository.delete("b", "k")]

    assert asyncio.run(use()) == [True, 1, None, False]


@pytest.mark.parametrize("side", ["sync", "async"])
def test_a_compare_and_swap_whose_reply_was_lost_is_never_run_twice(url: str, side: str) -> None:
    """``modify`` (Django's ``incr``): a second run would find its own payload and add again. It is not
    run again: the call fails with ``ConnectionFailedError``, and the counter moved once."""
    from animedex_store.errors import ConnectionFailedError

    def add_one(payload: bytes) -> bytes:
        return str(int(payload) + 1).encode()

    async def use() -> tuple[int, bytes | None]:
        async with AsyncCacheRepository(url) as repository:
            await repository.set("b", "counter", b"41", ttl_seconds=60)
            operations: Any = repository._ops
            lost = LoseOneReply(operations.db.driver, operations.sql.swap)
            with pytest.raises(ConnectionFailedError):
                await repository.modify("b", "counter", add_one)
            return lost.lost, await repository.get("b", "counter")

    if side == "async":
        assert asyncio.run(use()) == (1, b"42")
        return
    with CacheRepository(url) as repository:
        repository.set("b", "counter", b"41", ttl_seconds=60)
        lost = LoseOneReply(repository._db.driver, repository._sql.swap)  # type: ignore[attr-defined]
        with pytest.raises(ConnectionFailedError):
            repository.modify("b", "counter", add_one)
        assert (lost.lost, repository.get("b", "counter")) == (1, b"42")


def test_an_insert_where_no_row_is_whose_reply_was_lost_is_never_run_twice(url: str) -> None:
    """``set_if_missing`` (Django's ``add``): a second run would find its own row and answer False."""
    from animedex_store.errors import ConnectionFailedError

    with CacheRepository(url) as repository:
        lost = LoseOneReply(repository._db.driver, repository._sql.insert_missing)  # type: ignore[attr-defined]
        with pytest.raises(ConnectionFailedError):
            repository.set_if_missing("b", "k", b"added", ttl_seconds=60)
        assert (lost.lost, repository.get("b", "k")) == (1, b"added")
        assert repository.set_if_missing("b", "k", b"again", ttl_seconds=60) is False


def test_a_connection_dropped_while_idle_is_found_out_before_a_statement_that_must_not_run_twice(url: str) -> None:
    """The held connection the server dropped while it sat idle: one round trip finds it out, and the
    compare-and-swap runs once, on a fresh connection, without an error."""
    with CacheRepository(url) as repository:
        repository.set("b", "counter", b"1", ttl_seconds=60)
        for connection, _since in repository._db.idle:  # type: ignore[attr-defined]
            _shut_down(connection)
        assert repository.modify("b", "counter", lambda payload: payload + b"0") == b"10"
        assert repository.get("b", "counter") == b"10"
