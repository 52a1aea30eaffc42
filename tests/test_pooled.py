"""``PooledConnections`` (servers): deadlock victims are run again, a bounded number of times.

The driver is replaced by a stand-in that fails as the server would: a deadlock
cannot be produced on demand with a chosen victim.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import psycopg
import pymysql
import pytest

from animedex_store.core.blocking import run_blocking
from animedex_store.errors import ConnectionFailedError, DatabaseLockedError
from animedex_store.sql.engine import open_engine
from animedex_store.sql.servers import DEADLOCK_ATTEMPTS, PooledConnections
from animedex_store.sql.statements import Compiled

STATEMENT = Compiled("UPDATE cache_rows SET payload = payload", tuple)
DEADLOCKS = {
    "postgresql": ("postgresql+psycopg://u:pw@127.0.0.1:9/db", psycopg.errors.DeadlockDetected("deadlock detected")),
    "mariadb": (
        "mysql+pymysql://u:pw@127.0.0.1:9/db",
        pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock; try restarting transaction"),
    ),
}


class Failing(NamedTuple):
    pooled: PooledConnections
    failures: list[BaseException]  # raised by the next tries, in order; then a try returns 1
    tries: list[int]
    deadlock: BaseException  # what this driver raises for a deadlock victim


@pytest.fixture(params=DEADLOCKS)
def failing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Failing]:
    url, deadlock = DEADLOCKS[request.param]
    store = open_engine(url)
    pooled = PooledConnections(store)
    failures: list[BaseException] = []
    tries: list[int] = []

    async def once(*_args, **_kwargs) -> int:
        tries.append(1)
        if failures:
            raise failures.pop(0)
        return 1

    monkeypatch.setattr(pooled, "_once", once)
    yield Failing(pooled, failures, tries, deadlock)
    store.engine.dispose()


def test_a_deadlock_victim_runs_again(failing: Failing) -> None:
    pooled, failures, tries, deadlock = failing
    failures.extend([deadlock] * (DEADLOCK_ATTEMPTS - 1))
    assert run_blocking(pooled.execute(STATEMENT, ())) == 1
    assert len(tries) == DEADLOCK_ATTEMPTS


def test_deadlocking_every_time_ends_in_a_clear_error(failing: Failing) -> None:
    pooled, failures, tries, deadlock = failing
    failures.extend([deadlock] * DEADLOCK_ATTEMPTS)
    with pytest.raises(DatabaseLockedError, match=r"u:\*\*\*@127.0.0.1:9/db.*deadlocking.*nothing was written"):
        run_blocking(pooled.execute(STATEMENT, ()))
    assert len(tries) == DEADLOCK_ATTEMPTS


def test_other_errors_are_not_retried(failing: Failing) -> None:
    pooled, failures, tries, deadlock = failing
    other = (
        psycopg.OperationalError("server closed the connection")
        if isinstance(deadlock, psycopg.Error)
        else pymysql.err.OperationalError(2013, "Lost connection to server during query")
    )
    failures.append(other)
    with pytest.raises(ConnectionFailedError):
        run_blocking(pooled.fetchone(STATEMENT, ()))
    assert len(tries) == 1
