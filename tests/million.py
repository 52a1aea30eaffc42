"""A SQLite cache file of 1,000,000 rows, built once per test session and shared by the xdist workers.

One ``INSERT ... SELECT`` from a recursive CTE builds it (about 3 s, 130 MB;
:func:`benchmarks.loop_held.build_rows`, which the loop-held benchmark uses too) in
a temporary name beside its final one, renamed into place when complete; a file
lock (POSIX ``fcntl``) makes the workers of one session wait for the first one's
build instead of building it again. Tests that change rows work on a copy
(:func:`copy_of`): the shared file is only read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from benchmarks.loop_held import EXPIRED_EVERY, build_rows

__all__ = ["ROWS", "EXPIRED_EVERY", "million_rows_file", "copy_of", "signatures"]

ROWS = 1_000_000


def million_rows_file(shared_directory: Path) -> Path:
    """The file in ``shared_directory``, built by whichever worker asks first."""
    path = shared_directory / "million-rows.sqlite"
    with _exclusive(shared_directory / "million-rows.lock"):
        if not path.exists():
            building = path.with_name(f"building-{os.getpid()}.sqlite")
            build_rows(building, ROWS)
            os.replace(building, path)
    return path


def copy_of(path: Path, directory: Path) -> Path:
    """A private copy of ``path`` in ``directory``, for a test that changes rows."""
    copy = directory / path.name
    shutil.copyfile(path, copy)
    return copy


def signatures(count: int) -> list[str]:
    """``count`` stored signatures spread over the whole file."""
    step = ROWS // count
    return [f"k{index:07d}" for index in range(0, step * count, step)]


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (POSIX); elsewhere each worker builds its own file."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock, and a race only builds the file twice (os.replace is atomic)
        yield
        return
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
