"""Shared by the reliability tests: how big to run, the child processes they start, and figures.

The same tests run small in CI and large under ``python -m benchmarks.soak``,
which sets ``ANIMEDEX_STORE_SOAK=1`` (see :data:`SCALE`) and
``ANIMEDEX_STORE_SOAK_REPORT`` (a file :func:`record` appends figures to).

Children are started with ``fork`` (cheap, and nothing of the parent's is open
on the databases they use) and are the only functions here that run in them.
Every payload is derived from its key and version (:func:`payload_for`), so a
child reports only keys and the parent can check the exact bytes read back.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import queue
import random
import signal
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from animedex_store import CacheRepository

__all__ = [
    "SCALE",
    "Scale",
    "JOIN_TIMEOUT_SECONDS",
    "LONG_TTL",
    "context",
    "record",
    "payload_for",
    "headers_for",
    "integrity",
    "read_acknowledged",
    "ContentionResult",
    "contention_worker",
    "run_children",
    "run_contention",
    "lost_writes",
    "crash_writer",
    "lock_holder",
    "open_and_die_at",
]


@dataclass(frozen=True)
class Scale:
    """How hard each reliability test pushes."""

    processes: int
    operations: int  # per process, in the contention test
    kills: int  # kill -9 rounds of the crash test
    migration_rows: int  # rows in the seed v1 file killed mid-migration
    migration_random_kills: int  # kills at random moments of that migration
    state_machine_examples: int  # hypothesis examples on SQLite
    server_state_machine_examples: int  # ... and on each server


CI_SCALE = Scale(
    processes=8,
    operations=1_000,
    kills=15,
    migration_rows=20_000,
    migration_random_kills=3,
    state_machine_examples=100,
    server_state_machine_examples=20,
)
SOAK_SCALE = Scale(
    processes=8,
    operations=5_000,
    kills=50,
    migration_rows=100_000,
    migration_random_kills=20,
    state_machine_examples=2_000,
    server_state_machine_examples=300,
)
SOAK_ENV_VAR = "ANIMEDEX_STORE_SOAK"
REPORT_ENV_VAR = "ANIMEDEX_STORE_SOAK_REPORT"
#: The figures in force for this run.
SCALE = SOAK_SCALE if os.environ.get(SOAK_ENV_VAR) == "1" else CI_SCALE

#: Upper bound on waiting for any child: a hang fails the test instead of the run.
JOIN_TIMEOUT_SECONDS = 120
#: Long enough that no acknowledged write expires while a test runs.
LONG_TTL = 86_400


def context() -> multiprocessing.context.BaseContext:
    """The start method for children: ``fork`` where there is one."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def record(test: str, **figures: Any) -> None:
    """Append ``figures`` for ``test`` to the soak report, when one is being written."""
    report = os.environ.get(REPORT_ENV_VAR)
    if report:
        with open(report, "a", encoding="utf-8") as out:
            out.write(json.dumps({"test": test, **figures}) + "\n")


def payload_for(key: str, version: int = 0) -> bytes:
    """The payload written under ``key`` at ``version``: 0 to ~16 KiB, binary."""
    digest = hashlib.sha256(f"{key}#{version}".encode()).digest()
    return digest * (digest[0] * 2) + digest[: digest[1] % 32]


def headers_for(key: str) -> dict[str, str]:
    """The headers written with ``key`` by ``set_with_meta``."""
    return {"ETag": f'"{key}"', "X-Title": f"\u9032\u6483 {key}"}


def integrity(path: Path) -> list[str]:
    """``PRAGMA integrity_check`` of ``path`` (``["ok"]`` when sound), read with raw sqlite3."""
    conn = sqlite3.connect(os.fspath(path))
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def read_acknowledged(path: Path) -> dict[str, int]:
    """``key -> last acknowledged version`` from an ack file; a torn last line is ignored."""
    acknowledged: dict[str, int] = {}
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    for line in text.split("\n")[:-1]:
        key, version = line.rsplit(" ", 1)
        acknowledged[key] = int(version)
    return acknowledged


# -- contention ----------------------------------------------------------------


@dataclass
class ContentionResult:
    """What one contention worker did: errors must stay empty."""

    worker: int
    errors: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # acknowledged set() keys
    written_with_meta: list[str] = field(default_factory=list)  # acknowledged set_with_meta() keys
    hot_values: dict[str, list[bytes]] = field(default_factory=dict)  # shared key -> payloads written
    operations: dict[str, int] = field(default_factory=dict)


HOT_KEYS = 4
#: The contention mix: operation -> weight.
CONTENTION_MIX = {
    "set": 30,
    "set_with_meta": 10,
    "set_hot": 10,
    "set_expired": 5,
    "set_many": 5,
    "get": 20,
    "get_with_meta": 20,
    "get_many": 5,
    "purge_expired": 5,
}
#: Rows per set_many/get_many call.
BATCH = 5


def contention_worker(path: str, worker: int, operations: int, results: Any) -> None:
    """Run ``operations`` mixed calls on ``path`` and put a :class:`ContentionResult` on ``results``.

    Own keys (checked afterwards), a few keys every worker overwrites, rows
    that expire at once (so ``purge_expired`` has work), and reads of
    everyone's keys. Any exception is an error; none is expected.
    """
    rng = random.Random(worker)
    result = ContentionResult(worker)
    try:
        repository = CacheRepository(path)
    except Exception as exc:  # reported, not raised: the parent counts errors
        result.errors.append(f"open: {exc!r}")
        results.put(result)
        return
    names, weights = list(CONTENTION_MIX), list(CONTENTION_MIX.values())
    with repository:
        for index in range(operations):
            name = rng.choices(names, weights)[0]
            own_key = f"w{worker}/{index}"
            hot_key = f"hot/{rng.randrange(HOT_KEYS)}"
            try:
                _contend(repository, name, own_key, hot_key, f"w{rng.randrange(8)}/{rng.randrange(operations)}")
            except Exception as exc:
                result.errors.append(f"{name}: {exc!r}")
                continue
            result.operations[name] = result.operations.get(name, 0) + 1
            if name == "set":
                result.written.append(own_key)
            elif name == "set_many":
                result.written += _batch(own_key)
            elif name == "set_with_meta":
                result.written_with_meta.append(own_key)
            elif name == "set_hot":
                result.hot_values.setdefault(hot_key, []).append(own_key.encode())
    results.put(result)


def _contend(repository: CacheRepository, name: str, own_key: str, hot_key: str, peer_key: str) -> None:
    if name == "set":
        repository.set("own", own_key, payload_for(own_key), ttl_seconds=LONG_TTL)
    elif name == "set_with_meta":
        repository.set_with_meta(
            "own", own_key, payload_for(own_key), response_headers=headers_for(own_key), ttl_seconds=LONG_TTL
        )
    elif name == "set_hot":
        repository.set("hot", hot_key, own_key.encode(), ttl_seconds=LONG_TTL)
    elif name == "set_expired":
        repository.set("gone", own_key, b"x", ttl_seconds=0)
    elif name == "set_many":
        repository.set_many("own", {key: payload_for(key) for key in _batch(own_key)}, ttl_seconds=LONG_TTL)
    elif name == "get":
        repository.get("own", peer_key)
    elif name == "get_many":
        repository.get_many("own", [peer_key, *_batch(peer_key)])
    elif name == "get_with_meta":
        repository.get_with_meta("hot", hot_key)
    else:
        repository.purge_expired()


def _batch(key: str) -> list[str]:
    return [f"{key}/{index}" for index in range(BATCH)]


def run_children(function: Callable[..., None], arguments: list[tuple]) -> list[Any]:
    """Start one child per tuple at once, each running ``function(*arguments, results)``, and
    collect what they put on ``results``; a child silent past the join timeout fails the test."""
    ctx = context()
    results = ctx.Queue()
    children = [ctx.Process(target=function, args=(*child_arguments, results)) for child_arguments in arguments]
    for child in children:
        child.start()
    collected = []
    try:
        for _ in children:
            collected.append(results.get(timeout=JOIN_TIMEOUT_SECONDS))
    except queue.Empty:
        pytest.fail(f"only {len(collected)} of {len(children)} children reported within {JOIN_TIMEOUT_SECONDS}s")
    finally:
        for child in children:
            child.join(JOIN_TIMEOUT_SECONDS)
            if child.is_alive():
                child.kill()
    return collected


def run_contention(target: str, processes: int, operations: int) -> list[ContentionResult]:
    """Start ``processes`` contention workers at once on ``target`` (a path or URL) and collect their results."""
    return run_children(contention_worker, [(target, worker, operations) for worker in range(processes)])


def lost_writes(target: str, results: list[ContentionResult]) -> list[str]:
    """Acknowledged writes that do not read back exactly: own keys (with their headers after
    ``set_with_meta``), and shared keys not holding one of the values written to them."""
    with CacheRepository(target) as repository:
        lost = [key for result in results for key in result.written if repository.get("own", key) != payload_for(key)]
        lost += [key for result in results for key in result.written_with_meta if _meta_lost(repository, key)]
        for hot_key in {key for result in results for key in result.hot_values}:
            written = {value for result in results for value in result.hot_values.get(hot_key, [])}
            if repository.get("hot", hot_key) not in written:
                lost.append(hot_key)
    return lost


def _meta_lost(repository: CacheRepository, key: str) -> bool:
    found = repository.get_with_meta("own", key)
    return found is None or found.payload != payload_for(key) or found.headers != headers_for(key)


# -- crash safety --------------------------------------------------------------


def crash_writer(path: str, ack_path: str, round_number: int, ready: Any) -> None:
    """Write until killed, appending ``"key version\\n"`` to ``ack_path`` after each write returns.

    Every fourth write overwrites an earlier key of this round with a new
    version; every 50th also purges (rows written with ``ttl_seconds=0``).
    """
    rng = random.Random(round_number)
    versions: dict[str, int] = {}
    repository = CacheRepository(path)
    ack = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    ready.set()
    for index in itertools.count():
        if versions and index % 4 == 3:
            key = rng.choice(list(versions))
            versions[key] += 1
        else:
            key = f"r{round_number}/{index}"
            versions[key] = 0
        payload = payload_for(key, versions[key])
        if index % 3 == 0:
            repository.set_with_meta("crash", key, payload, response_headers=headers_for(key), ttl_seconds=LONG_TTL)
        else:
            repository.set("crash", key, payload, ttl_seconds=LONG_TTL)
        os.write(ack, f"{key} {versions[key]}\n".encode())
        if index % 50 == 49:
            repository.set("crash-expired", key, b"", ttl_seconds=0)
            repository.purge_expired()


def lock_holder(path: str, ready: Any, release: Any) -> None:
    """Hold ``BEGIN IMMEDIATE`` on ``path`` until ``release`` is set (at most the join timeout)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    ready.set()
    release.wait(JOIN_TIMEOUT_SECONDS)
    conn.execute("ROLLBACK")
    conn.close()


def open_and_die_at(path: str, kill_at: int) -> None:
    """Open a repository on ``path`` (migrating it), ``kill -9`` ing this process at event ``kill_at``.

    Events are the statements SQLAlchemy runs and its commits, counted from 1;
    a ``kill_at`` past the last event lets the open finish (exit code 0).
    """
    from sqlalchemy import Engine, event

    events = itertools.count(1)

    def maybe_die(*_args: Any) -> None:
        if next(events) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    event.listen(Engine, "after_cursor_execute", maybe_die)
    event.listen(Engine, "commit", maybe_die)
    CacheRepository(path).close()
