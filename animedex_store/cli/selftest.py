"""The checks behind ``animedex-store selftest``.

On the default target (no ``--url``, no ``$ANIMEDEX_STORE_URL``) it runs the
drop-in module's ``selftest()``, then the repository checks on a scratch file
beside the default cache file, removed afterwards: the user's ``cache.sqlite``
is never opened. On an explicit target the repository checks run on that
database itself (opening it migrates it to head, as any open does). Either
way the scratch rows are written on a clock in January 1970, so purging at
that clock removes exactly them: a real row expires after the time it was
written, decades later.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy.engine import URL

from .. import sqlite as dropin
from ..core.clock import FrozenClock
from ..core.defaults import default_cache_path
from ..errors import StoreError
from ..fastpath.sqlite_file import remove_sqlite_file
from ..fastpath.targets import resolve_target
from ..migrations.revisions import HEAD_REVISION
from ..repository import CacheRepository
from ..sql.engine import target_name

__all__ = ["Check", "run_selftest", "SCRATCH_TIME"]

#: When the scratch rows are written: long before any real row could expire.
SCRATCH_TIME = datetime(1970, 1, 2, tzinfo=timezone.utc)
_SCRATCH_BACKEND = "_selftest"
_TTL_SECONDS = 60


@dataclass(frozen=True)
class Check:
    """One check: what was checked, whether it passed, and why not."""

    name: str
    ok: bool
    error: str | None = None


class CheckFailed(Exception):
    """A check saw a wrong result."""


class _Stop(Exception):
    """A check failed; the later ones depend on it."""


@contextlib.contextmanager
def _check(results: list[Check], name: str) -> Iterator[None]:
    try:
        yield
    except (CheckFailed, StoreError, OSError, AssertionError) as exc:
        # AssertionError: the drop-in selftest() reports a wrong result that way.
        results.append(Check(name, False, str(exc) or type(exc).__name__))
        raise _Stop from exc
    results.append(Check(name, True))


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def run_selftest(target: str | os.PathLike[str] | URL | None = None) -> list[Check]:
    """Run the checks on ``target`` (``None``: the default cache dir); stops at the first failure."""
    results: list[Check] = []
    with contextlib.suppress(_Stop):
        if target is not None:
            _repository_checks(results, target)
            return results
        directory = default_cache_path().parent
        with _check(results, f"drop-in animedex_store.sqlite.selftest() in {directory}"):
            dropin.selftest()
        scratch = directory / f"selftest-{os.getpid()}-{uuid.uuid4().hex[:8]}.sqlite"
        try:
            _repository_checks(results, scratch)
        finally:
            with _check(results, f"scratch file {scratch.name} removed"):
                remove_sqlite_file(scratch)
    return results


def _repository_checks(results: list[Check], target: str | os.PathLike[str] | URL) -> None:
    resolved = resolve_target(target)
    label = target_name(resolved)
    clock = FrozenClock(SCRATCH_TIME)
    # Unique per run, so two selftests on one server database don't read each other's rows.
    run = uuid.uuid4().hex
    plain, meta = f"{run}:plain", f"{run}:meta"
    with _check(results, f"open {label} at schema revision {HEAD_REVISION}"):
        repository = CacheRepository(resolved, clock=clock)
    with repository:
        with _check(results, "set then get returns the payload; a missing key returns None"):
            repository.set(_SCRATCH_BACKEND, plain, b"hello", ttl_seconds=_TTL_SECONDS)
            _expect(repository.get(_SCRATCH_BACKEND, plain) == b"hello", "the payload written was not read back")
            _expect(repository.get(_SCRATCH_BACKEND, f"{run}:missing") is None, "a missing key returned a row")
        with _check(results, "set_with_meta then get_with_meta keeps non-ASCII headers and fetched_at"):
            headers = {"Content-Type": "application/json", "X-Title": "カウボーイビバップ"}
            repository.set_with_meta(_SCRATCH_BACKEND, meta, b"{}", response_headers=headers, ttl_seconds=_TTL_SECONDS)
            found = repository.get_with_meta(_SCRATCH_BACKEND, meta)
            _expect(found == (b"{}", headers, SCRATCH_TIME), f"read back {found!r}")
        with _check(results, f"a row reads as missing once {_TTL_SECONDS}s have passed (expires_at <= now)"):
            clock.advance(_TTL_SECONDS - 1)
            _expect(repository.get(_SCRATCH_BACKEND, plain) == b"hello", "the row expired a second early")
            clock.advance(1)
            _expect(repository.get(_SCRATCH_BACKEND, plain) is None, "the row was still read at its expires_at")
        with _check(results, "purge_expired removes the 2 scratch rows"):
            removed = repository.purge_expired()
            _expect(removed == 2, f"removed {removed} rows")
