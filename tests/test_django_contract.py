"""Django's own cache tests, unchanged, on ``StoreCache``: ``BaseCacheTests`` of the installed Django release's
``tests/cache/tests.py``, declared as Django declares them for its own backends, run by Django's own
``tests/runtests.py`` (:mod:`django_suite`) on a SQLite file, PostgreSQL and MariaDB.

The control is Django's ``DatabaseCache`` on the same harness, with Django's own ``DBCacheTests``
declaration, on the same engines: it shows the harness runs every test it should. It is Django's own
suite on Django's own backend, so it is marked ``peer`` (run on the default and the newest Python);
ours runs everywhere. Each run must report every test of its classes, each ``ok``: none failed,
skipped or left out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ENGINES, SERVER_URLS
from django_suite import CONTROL, OURS, database_setting, expected_tests, run_django_tests

#: Each run takes 15-30 s, most of it Django's tests sleeping (conftest's hook starts them first).
START_FIRST = True


def _location(engine: str, tmp_path: Path, open_sandbox: Callable[[str], str]) -> str:
    """Our cache's LOCATION: a SQLite file, or a sandbox on the server (which also checks it answers)."""
    return str(tmp_path / "cache.sqlite") if engine == "sqlite" else open_sandbox(engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_djangos_base_cache_tests_pass_on_store_cache(
    engine: str, tmp_path: Path, open_sandbox: Callable[[str], str]
) -> None:
    location = _location(engine, tmp_path, open_sandbox)
    run = run_django_tests(OURS, database=database_setting(engine, SERVER_URLS.get(engine)), location=location)
    print(f"StoreCache on {engine}: {run.summary()}")
    assert run.outcomes == dict.fromkeys(expected_tests("BaseCacheTests"), "ok"), run.output[-6000:]
    assert run.returncode == 0, run.output[-3000:]


@pytest.mark.peer
@pytest.mark.parametrize("engine", ENGINES)
def test_the_control_djangos_database_cache_passes_on_the_same_harness(
    engine: str, tmp_path: Path, open_sandbox: Callable[[str], str]
) -> None:
    location = _location(engine, tmp_path, open_sandbox)  # unused by DBCacheTests, the server checked
    run = run_django_tests(CONTROL, database=database_setting(engine, SERVER_URLS.get(engine)), location=location)
    print(f"DatabaseCache on {engine}: {run.summary()}")
    assert run.outcomes == dict.fromkeys(expected_tests("BaseCacheTests", "DBCacheTests"), "ok"), run.output[-6000:]
    assert run.returncode == 0, run.output[-3000:]
