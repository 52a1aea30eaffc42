"""PostgreSQL and MariaDB: ours against the raw driver running the same SQL.

Each server gets a throwaway schema/database (:func:`animedex_store.sql.sandbox.sandbox`).
The baseline is what a hand-written client would do: one psycopg / PyMySQL
connection held open in autocommit mode, executing the very SQL strings our
repository compiled, with the same parameters. A server that does not answer
is reported as skipped, never as a failure.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from animedex_store import CacheRepository
from animedex_store.errors import ConnectionFailedError
from animedex_store.sql.sandbox import sandbox

from .hot_path import BACKEND, HIT_TARGET, KEYS, PAYLOAD
from .measure import Result, Settings, Skipped, alternating_ops, interleaved

__all__ = ["run", "SERVER_URLS"]

#: Where the servers are; override with the same variables as the test suite.
SERVER_URLS = {
    "PostgreSQL": os.environ.get("ANIMEDEX_STORE_TEST_POSTGRESQL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "MariaDB": os.environ.get("ANIMEDEX_STORE_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
SERVER_TARGET = 1.3
TTL = 3_600


def _raw_connection(url: str):
    """A DB-API connection made the way SQLAlchemy's dialect would make it, in autocommit mode."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        args, kwargs = engine.dialect.create_connect_args(make_url(url))
        connection = engine.dialect.loaded_dbapi.connect(*args, **kwargs)
    finally:
        engine.dispose()
    if callable(connection.autocommit):  # PyMySQL: a method
        connection.autocommit(True)
    else:  # psycopg: a property
        connection.autocommit = True
    return connection


def _never_fetch() -> bytes:
    raise AssertionError("a benchmark hit called fetch()")


def _one_server(name: str, url: str, settings: Settings) -> list[Result]:
    repository = CacheRepository(url)
    raw = _raw_connection(url)
    try:
        sql = repository._sql  # the compiled statements: the baseline runs exactly these
        cursor = raw.cursor()

        def raw_get(key: str) -> bytes | None:
            cursor.execute(sql.get.sql, sql.get.bind((BACKEND, key)))
            row = cursor.fetchone()
            return None if row is None or row[1] <= time.time() else row[0]

        def raw_set(key: str) -> None:
            at = int(time.time())
            cursor.execute(sql.upsert.sql, sql.upsert.bind((BACKEND, key, at + TTL, at, 0, b"{}", PAYLOAD)))

        # A round trip per call (and a commit per set) makes server calls slow: fewer of them per round.
        keys = [KEYS[i % len(KEYS)] for i in range(max(1, settings.ops // 20))]
        items = dict.fromkeys(KEYS, PAYLOAD)
        repository.set_many(BACKEND, items, ttl_seconds=TTL)
        if repository.get(BACKEND, KEYS[0]) is None or raw_get(KEYS[0]) is None:
            raise RuntimeError(f"{name}: the rows just written are not readable")
        gets = alternating_ops(
            {"ours": lambda key: repository.get(BACKEND, key), "raw": raw_get}, keys, settings.repeats
        )
        sets = alternating_ops(
            {"ours": lambda key: repository.set(BACKEND, key, PAYLOAD, ttl_seconds=TTL), "raw": raw_set},
            keys,
            settings.repeats,
        )
        hits = alternating_ops(
            {
                "get_or_fetch": lambda key: repository.get_or_fetch(BACKEND, key, _never_fetch, ttl_seconds=TTL),
                "get_with_meta": lambda key: repository.get_with_meta(BACKEND, key),
            },
            keys,
            settings.repeats,
        )
        batches = interleaved(
            {
                "set_many": lambda: repository.set_many(BACKEND, items, ttl_seconds=TTL),
                "get_many": lambda: repository.get_many(BACKEND, KEYS),
            },
            len(KEYS),
            settings.repeats,
        )
        driver = type(raw).__module__.split(".")[0]
        rows = len(KEYS)
        return [
            Result(f"{name} get hit", gets["ours"], f"raw {driver}, same SQL", gets["raw"], SERVER_TARGET),
            Result(f"{name} set", sets["ours"], f"raw {driver}, same SQL", sets["raw"], SERVER_TARGET),
            Result(
                f"{name} get_or_fetch hit", hits["get_or_fetch"], "our get_with_meta", hits["get_with_meta"], HIT_TARGET
            ),
            Result(f"{name} set_many ({rows} rows), per row", batches["set_many"], "our set", sets["ours"], 0.1),
            Result(f"{name} get_many ({rows} rows), per row", batches["get_many"], "our get", gets["ours"], 0.1),
        ]
    finally:
        raw.close()
        repository.close()


def run(settings: Settings, workdir: Path) -> list[Result | Skipped]:
    """Results for every reachable server; a :class:`Skipped` row for each one that is not."""
    results: list[Result | Skipped] = []
    for name, url in SERVER_URLS.items():
        try:
            with sandbox(url) as scoped:
                results += _one_server(name, scoped, settings)
        except ConnectionFailedError as exc:
            results.append(Skipped(f"{name} get/set", " ".join(str(exc).split())))  # one line: a table cell
    return results
