"""Single-row operations on a SQLite file: ours against the seed and diskcache.

Also ``get_or_fetch`` on a live row against our own ``get_with_meta``, in the same run.

Both caches hold the same 1,000 rows of 2 KiB payloads before any read is timed;
reads and writes cycle through those keys (writes overwrite them), misses use
keys that were never written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from animedex_store import CacheRepository

from .measure import Result, Settings, interleaved
from .seed_baseline import SeedCache

__all__ = ["run", "PAYLOAD", "BACKEND", "HEADERS", "KEYS", "HIT_TARGET"]

PAYLOAD = os.urandom(2048)
BACKEND = "anilist"
HEADERS = {"content-type": "application/json", "etag": 'W/"5e1f-abc"', "x-ratelimit-remaining": "89"}
KEYS = [f"query:Media:id={number}" for number in range(1_000)]
TTL = 3_600

# Each operation: (name, call on ours/seed, call on diskcache or None, target ratio against the seed).
Operation = tuple[str, Callable[[object, str], object], Callable[[object, str], object] | None, float]
OPERATIONS: list[Operation] = [
    ("get hit", lambda cache, key: cache.get(BACKEND, key), lambda dc, key: dc.get(key), 1.1),
    (
        "get miss",
        lambda cache, key: cache.get(BACKEND, "missing:" + key),
        lambda dc, key: dc.get("missing:" + key),
        1.1,
    ),
    ("get_with_meta hit", lambda cache, key: cache.get_with_meta(BACKEND, key), None, 1.2),
    (
        "set",
        lambda cache, key: cache.set(BACKEND, key, PAYLOAD, ttl_seconds=TTL),
        lambda dc, key: dc.set(key, PAYLOAD, expire=TTL),
        1.2,
    ),
    (
        "set_with_meta",
        lambda cache, key: cache.set_with_meta(BACKEND, key, PAYLOAD, response_headers=HEADERS, ttl_seconds=TTL),
        None,
        1.2,
    ),
]


#: get_or_fetch on a live row against get_with_meta (README, "Single flight": "the same cost").
HIT_TARGET = 1.1


def _never_fetch() -> bytes:
    raise AssertionError("a benchmark hit called fetch()")


def _get_or_fetch_hit(cache: CacheRepository, key: str) -> object:
    return cache.get_or_fetch(BACKEND, key, _never_fetch, ttl_seconds=TTL)


def _get_with_meta(cache: CacheRepository, key: str) -> object:
    return cache.get_with_meta(BACKEND, key)


def _loop(call: Callable[[object, str], object], cache: object, keys: list[str]) -> Callable[[], None]:
    def run() -> None:
        for key in keys:
            call(cache, key)

    return run


def _diskcache(directory: Path):
    """diskcache's ``Cache`` (optional extra ``bench``), or ``None`` when it is not installed."""
    try:
        import diskcache
    except ImportError:
        return None
    return diskcache.Cache(str(directory))


def run(settings: Settings, workdir: Path) -> list[Result]:
    ours = CacheRepository(workdir / "ours.sqlite")
    seed = SeedCache(workdir / "seed.sqlite")
    disk = _diskcache(workdir / "diskcache")
    try:
        for key in KEYS:
            for cache in (ours, seed):
                cache.set_with_meta(BACKEND, key, PAYLOAD, response_headers=HEADERS, ttl_seconds=TTL)
            if disk is not None:
                disk.set(key, PAYLOAD, expire=TTL)
        keys = [KEYS[i % len(KEYS)] for i in range(settings.ops)]
        results = []
        for name, call, disk_call, target in OPERATIONS:
            runs = {"ours": _loop(call, ours, keys), "seed": _loop(call, seed, keys)}
            if disk is not None and disk_call is not None:
                runs["diskcache"] = _loop(disk_call, disk, keys)
            medians = interleaved(runs, settings.ops, settings.repeats)
            results.append(Result(name, medians["ours"], "seed (raw sqlite3)", medians["seed"], target))
            if "diskcache" in medians:
                results.append(Result(name, medians["ours"], "diskcache", medians["diskcache"]))
        # get_or_fetch on a live row must cost what get_with_meta costs: same repository, same keys, same run.
        runs = {
            "get_or_fetch": _loop(_get_or_fetch_hit, ours, keys),
            "get_with_meta": _loop(_get_with_meta, ours, keys),
        }
        medians = interleaved(runs, settings.ops, settings.repeats)
        results.append(
            Result(
                "get_or_fetch hit", medians["get_or_fetch"], "our get_with_meta", medians["get_with_meta"], HIT_TARGET
            )
        )
        return results
    finally:
        ours.close()
        seed.close()
        if disk is not None:
            disk.close()
