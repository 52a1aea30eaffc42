"""Costs paid once per process or per test: interpreter cold start and the pytest fixture.

Cold start: animedex is a command-line program, so every command is a fresh
process that opens the cache. Each launch here is a fresh interpreter that
opens an up-to-date cache file, does one ``get``, one ``set`` and one
``get_with_meta`` and exits, through three modules:

- the seed's module (:mod:`benchmarks.seed_baseline`, which imports at module
  level what the seed's module imports), on a file the seed module created;
- ours through the drop-in, ``animedex_store.sqlite.SqliteCache(path)``;
- ours through ``animedex_store.CacheRepository(path)``;

ours on files already at head (created with ``CacheRepository(path).close()``
before anything is timed), so the launches take the open's fast path. After
one warm-up launch of each (``.pyc`` files written, the files in the OS cache),
the three take turns round by round, the one that starts a round rotating.
Wall time per process is the median of the launches; peak memory is the
operating system's accounting (``/usr/bin/time -v``, "Maximum resident set
size"), median of as many separate launches, skipped where that tool is missing.

The fixture suite runs a generated module of parametrised tests that request
``cache_repository`` in a pytest subprocess, with a conftest that times each
test's setup phase.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

from animedex_store import CacheRepository

from .measure import Result, Settings, Skipped, median_of
from .seed_baseline import SeedCache

__all__ = ["run", "COLD_PROCESS", "COLD_VARIANTS"]

#: What each cold launch runs: open the file named by ``sys.argv[1]``, then one
#: ``get``, one ``set`` and one ``get_with_meta`` of the same key, and exit.
COLD_PROCESS = """
import sys
{import_line}
cache = {opener}(sys.argv[1])
cache.get("anilist", "query:Media:id=1")
cache.set("anilist", "query:Media:id=1", b"x" * 2048, ttl_seconds=3600)
cache.get_with_meta("anilist", "query:Media:id=1")
"""
#: name -> (import line, opener, label in the table); "seed" is the baseline of the other two.
COLD_VARIANTS = {
    "seed": ("from benchmarks.seed_baseline import SeedCache", "SeedCache", "seed module (raw sqlite3)"),
    "sqlite": ("from animedex_store.sqlite import SqliteCache", "SqliteCache", "animedex_store.sqlite"),
    "repository": ("from animedex_store import CacheRepository", "CacheRepository", "CacheRepository"),
}
OURS = ("sqlite", "repository")
#: How long one launched process may take before it is killed.
LAUNCH_TIMEOUT_SECONDS = 120
#: The issue's targets for a cold process, ours / the seed module's: wall time and peak memory.
COLD_TIME_TARGET = 1.25
COLD_MEMORY_TARGET = 1.25
#: GNU time's verbose report; ``-v`` prints the peak resident set size in KiB.
GNU_TIME = Path("/usr/bin/time")
_MAX_RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")
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


def _child_env() -> dict[str, str]:
    """The environment with this checkout importable (the seed baseline lives beside the package)."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _cold_command(name: str, path: Path) -> list[str]:
    import_line, opener, _label = COLD_VARIANTS[name]
    return [sys.executable, "-c", COLD_PROCESS.format(import_line=import_line, opener=opener), str(path)]


def _wall_us(command: list[str]) -> float:
    """µs from launching ``command`` to its exit.

    Waited for with a blocking ``wait()``, a watchdog thread killing it after
    :data:`LAUNCH_TIMEOUT_SECONDS`: ``subprocess.run(timeout=...)`` polls the child with sleeps
    doubling up to 50 ms (0.5, 1.5, 3.5, ... 31.5, 63.5 ms after the start), so a 33 ms process
    measured 63.5 ms, and the cold-start ratios came out 1.0 or 1.8 by luck."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=_child_env())
    watchdog = threading.Timer(LAUNCH_TIMEOUT_SECONDS, process.kill)
    watchdog.start()
    try:
        returncode = process.wait()
    finally:
        watchdog.cancel()
    elapsed = time.perf_counter() - start
    if returncode != 0:
        raise subprocess.CalledProcessError(returncode, command)
    return elapsed * 1e6


def _max_rss_kib(command: list[str]) -> float:
    """The peak resident set size of ``command`` in KiB, as ``/usr/bin/time -v`` reports it."""
    result = subprocess.run(
        [str(GNU_TIME), "-v", *command],
        check=True,
        timeout=LAUNCH_TIMEOUT_SECONDS,
        env=_child_env(),
        capture_output=True,
        text=True,
    )
    found = _MAX_RSS.search(result.stderr)
    if found is None:
        raise RuntimeError(f"no peak memory in the output of {GNU_TIME} -v:\n{result.stderr}")
    return float(found.group(1))


def _gnu_time_missing() -> str | None:
    """Why peak memory cannot be measured here, or ``None`` when ``/usr/bin/time -v`` works."""
    if not GNU_TIME.is_file():
        return f"{GNU_TIME} not found"
    probe = subprocess.run([str(GNU_TIME), "-v", sys.executable, "-c", "pass"], capture_output=True, text=True)
    if probe.returncode != 0 or _MAX_RSS.search(probe.stderr) is None:
        return f"{GNU_TIME} -v does not report the maximum resident set size (not GNU time)"
    return None


def _interleaved_launches(
    commands: dict[str, list[str]], rounds: int, measure: Callable[[list[str]], float]
) -> dict[str, float]:
    """Median of ``measure`` over ``rounds`` launches of each command, taking turns; the command
    that starts a round rotates, so none always runs right after the same neighbour."""
    names = list(commands)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(measure(commands[name]))
    return {name: median_of(values) for name, values in samples.items()}


def _cold_start(settings: Settings, workdir: Path) -> list[Result | Skipped]:
    paths = {name: workdir / f"cold-{name}.sqlite" for name in COLD_VARIANTS}
    SeedCache(paths["seed"]).close()  # the seed's file, made by the seed module
    for name in OURS:
        CacheRepository(paths[name]).close()  # at head: the launches open it on the fast path
    commands = {name: _cold_command(name, path) for name, path in paths.items()}
    for command in commands.values():
        _wall_us(command)  # warm up: .pyc files written, files in the OS cache, the row stored
    wall = _interleaved_launches(commands, settings.cold_starts, _wall_us)
    seed_label = COLD_VARIANTS["seed"][2]
    rows: list[Result | Skipped] = [
        Result(
            f"cold process: open + get + set + get_with_meta, via {COLD_VARIANTS[name][2]} (µs per process)",
            wall[name],
            seed_label,
            wall["seed"],
            COLD_TIME_TARGET,
        )
        for name in OURS
    ]
    memory_label = "cold process peak memory (max RSS, KiB), via {}"
    missing = _gnu_time_missing()
    if missing is not None:
        return rows + [Skipped(memory_label.format(COLD_VARIANTS[name][2]), missing) for name in OURS]
    peak = _interleaved_launches(commands, settings.cold_starts, _max_rss_kib)
    return rows + [
        Result(memory_label.format(COLD_VARIANTS[name][2]), peak[name], seed_label, peak["seed"], COLD_MEMORY_TARGET)
        for name in OURS
    ]


def _fixture_setup(settings: Settings, workdir: Path) -> list[Result]:
    project = workdir / "fixture-run"
    project.mkdir()
    timings = project / "setup-times.json"
    (project / "conftest.py").write_text(textwrap.dedent(_TIMING_CONFTEST.format(out=str(timings))))
    (project / "test_fixture_cost.py").write_text(textwrap.dedent(_FIXTURE_TESTS.format(count=settings.fixture_tests)))
    subprocess.run(
        # Our plugin loads from its entry point; pytest-alembic and an async plugin are not needed here.
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:pytest_alembic", "-p", "no:asyncio"]
        + [str(project)],
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


def run(settings: Settings, workdir: Path) -> list[Result | Skipped]:
    return _cold_start(settings, workdir) + _fixture_setup(settings, workdir)
