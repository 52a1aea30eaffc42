"""Our requests-cache backend against requests-cache's own SQLite backend, in one run
(``pip install 'animedex-store[requests-cache]'``): ``CachedSession`` hits with the same serializer,
and the queries over a whole namespace (``sorted(limit=10)`` by each of its keys, with and without
the expired responses, and ``count(expired=False)``).

Both sessions answer the first request of every URL from a canned adapter (no network) with one
of animedex's recorded responses as the body; every timed ``session.get`` afterwards is a hit,
which the suite checks. For the queries both caches hold the same 100,000 stored responses
(10,000 with ``--quick``), a tenth of them expired, written straight into their tables. Both
caches are SQLite files in the same directory.
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

from .measure import Result, Settings, Skipped, interleaved
from .payloads import real_rows

__all__ = ["run", "SERIALIZERS", "HIT_TARGET", "SORTED_TARGET"]

SERIALIZERS = ("json", "pickle")
#: The target: a hit costs at most 1.1x a hit on requests-cache's own SQLite backend.
HIT_TARGET = 1.1
#: The target: sorted(limit=10) over 100,000 responses at most 2x requests-cache's SQLite backend,
#: by every key, with and without the expired responses.
SORTED_TARGET = 2.0
#: What ``sorted()`` sorts by, as requests-cache names it.
SORT_KEYS = ("key", "expires", "size")
URLS = 200
QUICK_URLS = 50
STORED = 100_000
QUICK_STORED = 10_000


def run(settings: Settings, workdir: Path) -> list[Result | Skipped]:
    try:
        from requests_cache import CachedSession, SQLiteCache
    except ImportError:
        return [Skipped("CachedSession hit", "requests-cache is not installed (the [requests-cache] extra)")]
    from animedex_store.integrations.requests_cache import StoreCache

    bodies = {
        f"http://anime.example/{row.backend}/{index}": row.payload
        for index, row in enumerate(real_rows(QUICK_URLS if settings.quick else URLS))
    }
    results: list[Result | Skipped] = []
    for serializer in SERIALIZERS:
        backends = {
            "ours": StoreCache("bench", workdir / f"ours-{serializer}.sqlite", serializer=serializer),
            "theirs": SQLiteCache(str(workdir / f"requests-cache-{serializer}.sqlite"), serializer=serializer),
        }
        sessions = {name: CachedSession(backend=backend, expire_after=3600) for name, backend in backends.items()}
        adapters = {name: _CannedAdapter(bodies) for name in sessions}
        try:
            for name, session in sessions.items():
                session.mount("http://", adapters[name])
                for url in bodies:  # the misses that fill the cache
                    session.get(url)
            hits = interleaved(
                {name: _hits(session, bodies) for name, session in sessions.items()}, len(bodies), settings.repeats
            )
            reads = interleaved(
                {name: _reads(session) for name, session in sessions.items()}, len(bodies), settings.repeats
            )
            if any(adapter.calls != len(bodies) for adapter in adapters.values()):
                raise RuntimeError("a timed request was not a cache hit")
        finally:
            for session in sessions.values():
                session.close()
        label = f"{len(bodies)} real responses, {serializer}"
        theirs = f"requests-cache SQLiteCache, {serializer}"
        results.append(Result(f"CachedSession hit, {label}", hits["ours"], theirs, hits["theirs"], HIT_TARGET))
        results.append(Result(f"cache.get_response alone, {label}", reads["ours"], theirs, reads["theirs"]))
    return results + _namespace_queries(settings, workdir)


def _namespace_queries(settings: Settings, workdir: Path) -> list[Result | Skipped]:
    """``sorted(limit=10)`` by each key, with and without expired responses, and ``count(expired=False)``
    over one namespace of many responses."""
    import time

    from requests_cache import CachedResponse, SQLiteCache

    from animedex_store import CacheRepository
    from animedex_store.integrations.requests_cache import DEFAULT_TTL_OFFSET, StoreCache

    stored = QUICK_STORED if settings.quick else STORED
    ours = StoreCache("bench", workdir / "ours-many.sqlite")
    theirs = SQLiteCache(str(workdir / "requests-cache-many.sqlite"), serializer="json")
    try:
        body = real_rows(1)[0].payload
        value = ours.responses.serialize(CachedResponse(content=body, status_code=200))
        now = int(time.time())
        # Expiries spread over the next day, a tenth of them already passed; one TTL per batch.
        batches: dict[int, list[str]] = {}
        for number in range(stored):
            expires = now + (-60 if number % 10 == 0 else 60 + (number * 7919) % 86_400)
            batches.setdefault(expires, []).append(f"{number:032x}")
        repository: CacheRepository = ours.repository
        with theirs.responses.connection(commit=True) as connection:
            for expires, keys in batches.items():
                repository.set_many(
                    ours.responses.backend,
                    {key: value.encode() for key in keys},
                    ttl_seconds=max(expires + DEFAULT_TTL_OFFSET - now, 0),
                )
                connection.executemany(
                    "INSERT INTO responses (key, value, expires) VALUES (?, ?, ?)",
                    [(key, value, expires) for key in keys],
                )
        sides = {"ours": ours, "theirs": theirs}
        tops = {
            (key, expired): interleaved(
                {name: _sorted_top(cache, key, expired) for name, cache in sides.items()}, 1, settings.repeats
            )
            for key in SORT_KEYS
            for expired in (True, False)
        }
        counts = {name: cache.count(expired=False) for name, cache in sides.items()}
        if counts["ours"] != counts["theirs"]:
            raise RuntimeError(f"the caches count different unexpired responses: {counts}")
        counted = interleaved(
            {name: lambda cache=cache: cache.count(expired=False) for name, cache in sides.items()}, 1, settings.repeats
        )
    finally:
        ours.close()
        theirs.close()
    label = f"{stored:,} stored responses"
    baseline = "requests-cache SQLiteCache"
    return [
        *(
            Result(
                f"cache.sorted(key={key!r}, limit=10, expired={expired}), {label}",
                top["ours"],
                baseline,
                top["theirs"],
                SORTED_TARGET,
            )
            for (key, expired), top in tops.items()
        ),
        Result(f"cache.count(expired=False), {label}", counted["ours"], baseline, counted["theirs"]),
    ]


def _sorted_top(cache: Any, key: str, expired: bool) -> Callable[[], None]:
    def read_top() -> None:
        if len(list(cache.sorted(key=key, limit=10, expired=expired))) != 10:
            raise RuntimeError(f"sorted(key={key!r}, limit=10, expired={expired}) did not return 10 responses")

    return read_top


def _hits(session: Any, bodies: dict[str, bytes]) -> Callable[[], None]:
    def run_all() -> None:
        for url in bodies:
            session.get(url)

    return run_all


def _reads(session: Any) -> Callable[[], None]:
    keys = list(session.cache.responses.keys())

    def run_all() -> None:
        for key in keys:
            session.cache.get_response(key)

    return run_all


class _CannedAdapter:
    """A transport answering each URL with its body (``Content-Type: application/json``); counts calls."""

    def __init__(self, bodies: dict[str, bytes]) -> None:
        self.bodies = bodies
        self.calls = 0

    def send(self, request: Any, **_options: Any) -> Any:
        import requests
        from requests.structures import CaseInsensitiveDict
        from urllib3 import HTTPResponse

        self.calls += 1
        body = self.bodies[request.url]
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        response = requests.Response()
        response.status_code, response.reason, response.encoding = 200, "OK", "utf-8"
        response.headers = CaseInsensitiveDict(headers)
        response.raw = HTTPResponse(body=BytesIO(body), headers=headers, status=200, preload_content=False)
        response.url, response.request, response.connection = request.url, request, self
        return response

    def close(self) -> None:
        pass
