"""Faults a cache file meets in the wild: each gives a clear error naming the file, and loses nothing.

Read-only file or directory (reads still work), a full disk (a page limit, and
a real tiny filesystem), truncated and corrupted databases (left untouched).
A lock held past the timeout is in test_contention.py; a file that is not a
database at all is in test_adoption.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbfiles import fingerprint
from platforms import posix_file_modes
from reliability import LONG_TTL, payload_for, record

from animedex_store import CacheRepository
from animedex_store.errors import CorruptDatabaseError, DiskFullError, ReadOnlyError

ROWS = 200


def _fill(path: Path, rows: int = ROWS) -> list[str]:
    """Write ``rows`` live rows to ``path`` and close it (the WAL is checkpointed away)."""
    keys = [f"k{index}" for index in range(rows)]
    with CacheRepository(path) as repository:
        for key in keys:
            repository.set("b", key, payload_for(key), ttl_seconds=LONG_TTL)
    return keys


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` (a file or directory) read-only for this process, then writable again.

    Root ignores permission bits, so as root the immutable flag (``chattr +i``)
    is used; the test is skipped, saying why, where it is not available.
    """
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root (permissions are ignored) and chattr is not installed: cannot make it read-only")
    made = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"running as root (permissions are ignored) and chattr +i fails here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


@posix_file_modes
@pytest.mark.parametrize("what", ["file", "directory"])
def test_read_only_file_or_directory_reads_work_and_writes_fail_clearly(tmp_path: Path, what: str) -> None:
    path = tmp_path / "cache" / "cache.sqlite"
    keys = _fill(path)
    before = fingerprint(path)
    with read_only(path if what == "file" else path.parent):
        with CacheRepository(path) as repository:
            assert [repository.get("b", key) for key in keys] == [payload_for(key) for key in keys]
            assert repository.get_with_meta("b", keys[0]).payload == payload_for(keys[0])
            for write in (
                lambda: repository.set("b", "new", b"v", ttl_seconds=LONG_TTL),
                lambda: repository.set_with_meta("b", keys[0], b"v", response_headers={}, ttl_seconds=LONG_TTL),
                repository.purge_expired,
            ):
                with pytest.raises(ReadOnlyError, match=str(path)) as caught:
                    write()
                assert caught.value.target == str(path)
            assert repository.get("b", keys[0]) == payload_for(keys[0])  # a failed write changed nothing
    assert fingerprint(path).sha256 == before.sha256
    with CacheRepository(path) as repository:  # writable again: writes work
        repository.set("b", "new", b"v", ttl_seconds=LONG_TTL)
        assert repository.get("b", "new") == b"v"
    record("fault", kind=f"read-only {what}")


@posix_file_modes
def test_creating_a_cache_in_a_read_only_directory_fails_clearly(tmp_path: Path) -> None:
    directory = tmp_path / "locked-down"
    directory.mkdir()
    for path in (directory / "cache.sqlite", directory / "deeper" / "cache.sqlite"):
        with read_only(directory), pytest.raises(ReadOnlyError, match=f"cannot create {path}"):
            CacheRepository(path)
        assert list(directory.iterdir()) == []
    record("fault", kind="read-only directory, new file")


def test_a_full_page_limit_fails_clearly_keeps_earlier_rows_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "full.sqlite"
    keys = _fill(path, rows=20)
    with CacheRepository(path) as repository:
        conn = repository._db.conn  # the repository's own sqlite3 connection: the limit is per connection
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {int(pages)}")
        with pytest.raises(DiskFullError, match=str(path)) as caught:
            repository.set("b", "big", os.urandom(256 * 1024), ttl_seconds=LONG_TTL)
        assert caught.value.target == str(path)
        assert repository.get("b", "big") is None
        assert [repository.get("b", key) for key in keys] == [payload_for(key) for key in keys]
        conn.execute("PRAGMA max_page_count = 1073741823")  # space is back
        repository.set("b", "big", b"x" * 256 * 1024, ttl_seconds=LONG_TTL)
        assert repository.get("b", "big") == b"x" * 256 * 1024
    record("fault", kind="page limit reached")


@contextlib.contextmanager
def tiny_filesystem(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only), unmounted afterwards."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here to fill a real disk: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.mark.skipif(
    sys.platform == "win32" or shutil.which("mount") is None or os.geteuid() != 0, reason="mounting a tmpfs needs root"
)
def test_a_really_full_disk_fails_clearly_keeps_earlier_rows_and_recovers(tmp_path: Path) -> None:
    with tiny_filesystem(tmp_path / "tiny", "256k") as disk:
        path = disk / "cache.sqlite"
        written = []
        with CacheRepository(path) as repository:
            with pytest.raises(DiskFullError, match=str(path)):
                for index in range(1000):  # 8 MB: far more than fits
                    key = f"k{index}"
                    repository.set("b", key, payload_for(key) + os.urandom(8000), ttl_seconds=LONG_TTL)
                    written.append((key, repository.get("b", key)))
            assert len(written) > 2
            assert [repository.get("b", key) for key, _ in written] == [value for _, value in written]
            subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
            repository.set("b", "after", b"space is back", ttl_seconds=LONG_TTL)
            assert repository.get("b", "after") == b"space is back"
        with CacheRepository(path) as reopened:
            assert [reopened.get("b", key) for key, _ in written] == [value for _, value in written]
    record("fault", kind="filesystem full")


def _page_size(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:18], "big")


def _root_page(path: Path, table: str) -> int:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    finally:
        conn.close()


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    page = _page_size(path)
    if how == "truncated to half":
        del data[len(data) // 2 :]
    elif how == "truncated inside the header":
        del data[60:]
    elif how == "truncated to the first page":
        del data[page:]
    elif how == "schema page overwritten":
        data[100:page] = b"\xa5" * (page - 100)
    elif how == "table root page overwritten":
        start = (_root_page(path, "cache_rows") - 1) * page
        data[start : start + page] = b"\xa5" * page
    path.write_bytes(bytes(data))


DAMAGE = [
    "truncated to half",
    "truncated inside the header",
    "truncated to the first page",
    "schema page overwritten",
    "table root page overwritten",
]


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_database_fails_clearly_and_is_left_untouched(tmp_path: Path, how: str) -> None:
    path = tmp_path / "damaged.sqlite"
    keys = _fill(path)
    _damage(path, how)
    before = fingerprint(path)
    # Opening may already find the damage; if it does not, reading the rows must.
    with pytest.raises(CorruptDatabaseError, match=str(path)) as caught:
        with CacheRepository(path) as repository:
            for key in keys:
                repository.get("b", key)
    assert caught.value.target == str(path)
    assert "is corrupt" in str(caught.value)
    after = fingerprint(path)
    assert (after.sha256, after.mtime_ns) == (before.sha256, before.mtime_ns)
    record("fault", kind=f"damaged database: {how}")
