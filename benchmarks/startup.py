"""Costs paid once per process or per test: interpreter cold start and the pytest fixture.

Cold start launches a fresh interpreter that imports the package, opens an
up-to-date SQLite file and reads one key, against one that only runs
``import sqlalchemy.orm`` (the floor of any ORM-based layer); launches alternate.
The fixture suite runs a generated module of parametrised tests that request
``cache_repository`` in a pytest subprocess, with a conftest that times each
test's setup phase.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from animedex_store import CacheRepository

from .measure import Result, Settings, median_of

__all__ = ["run"]

OURS_COLD_START = "from animedex_store import CacheRepository; CacheRepository({path!r}).get('a', 'b')"
SEED_COLD_START = "from benchmarks.seed_baseline import SeedCache; SeedCache({path!r}).get('a', 'b')"
ORM_FLOOR = "import sqlalchemy.orm"
#: The issue's budget for the fixture's setup, per test.
FIXTURE_BUDGET_US = 2_000.0

_TIMING_CONFTEST = """
import json, time
import pytest

_setups = []

@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    start = time.perf_counter_ns()
    try:
        return (yield)
    finally:
        _setups.append((time.perf_counter_ns() - start) / 1000)

def pytest_sessionfinish(session):
    with open({out!r}, "w") as out:
        json.dump(_setups, out)
"""
_FIXTURE_TESTS = """
import pytest

@pytest.mark.parametrize("number", range({count}))
def test_uses_cache_repository(cache_repository, number):
    cache_repository.set("bench", str(number), b"x", ttl_seconds=60)
"""


def _launch_seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env=_child_env())
    return time.perf_counter() - start


def _child_env() -> dict[str, str]:
    """The environment with this checkout importable (the seed baseline lives beside the package)."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _cold_start(settings: Settings, workdir: Path) -> list[Result]:
    ours_path, seed_path = workdir / "cold-ours.sqlite", workdir / "cold-seed.sqlite"
    CacheRepository(ours_path).close()  # up to date: the timed launches open it on the fast path
    codes = {
        "ours": OURS_COLD_START.format(path=str(ours_path)),
        "orm": ORM_FLOOR,
        "seed": SEED_COLD_START.format(path=str(seed_path)),
    }
    for code in codes.values():
        _launch_seconds(code)  # warm the OS file cache and write .pyc files
    samples: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(settings.cold_starts):
        for name, code in codes.items():
            samples[name].append(_launch_seconds(code) * 1e6)
    ours = median_of(samples["ours"])
    return [
        Result("cold start (process)", ours, "import sqlalchemy.orm", median_of(samples["orm"]), 1.15),
        Result("cold start (process)", ours, "seed (raw sqlite3)", median_of(samples["seed"])),
    ]


def _fixture_setup(settings: Settings, workdir: Path) -> list[Result]:
    project = workdir / "fixture-run"
    project.mkdir()
    timings = project / "setup-times.json"
    (project / "conftest.py").write_text(textwrap.dedent(_TIMING_CONFTEST.format(out=str(timings))))
    (project / "test_fixture_cost.py").write_text(textwrap.dedent(_FIXTURE_TESTS.format(count=settings.fixture_tests)))
    subprocess.run(
        # Our plugin loads from its entry point; pytest-alembic is not needed here.
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:pytest_alembic", str(project)],
        check=True,
        cwd=project,
        timeout=600,
        stdout=subprocess.DEVNULL,
        env=_child_env(),
    )
    setups = json.loads(timings.read_text())
    if len(setups) != settings.fixture_tests:
        raise RuntimeError(f"expected {settings.fixture_tests} timed setups, got {len(setups)}")
    # The mean, first test included: it also migrates the session's template, a cost the run really pays.
    mean = sum(setups) / len(setups)
    return [Result("cache_repository fixture setup (mean per test)", mean, "issue budget", FIXTURE_BUDGET_US, 1.0)]


def run(settings: Settings, workdir: Path) -> list[Result]:
    return _cold_start(settings, workdir) + _fixture_setup(settings, workdir)
