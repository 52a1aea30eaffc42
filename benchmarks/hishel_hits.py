"""Our hishel storages against hishel's own SQLite storages, in one run (``pip install
'animedex-store[hishel]'``): ``CacheClient`` and ``AsyncCacheClient`` hits, and the misses that store.

Every client answers the first request of a URL from an ``httpx.MockTransport`` (no network) with
one of animedex's recorded responses, its recorded headers and ``Content-Type``; every timed hit is
served from the cache, which the suite checks. ``StoreStorage`` and hishel's ``SqliteStorage`` are
SQLite files in the same directory; the async sides run on one event loop. The misses are timed
once per round on empty storages, and the files' bytes per stored response are in their labels:
the measurements behind keeping hishel's entries in ``cache_rows`` (README, "hishel storages").
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .measure import Result, Settings, Skipped, interleaved
from .payloads import real_rows

__all__ = ["run", "HIT_TARGET"]

#: The target: a hit costs at most 1.1x a hit through hishel's own SqliteStorage.
HIT_TARGET = 1.1
URLS = 200
QUICK_URLS = 50


def run(settings: Settings, workdir: Path) -> list[Result | Skipped]:
    try:
        import hishel  # noqa: F401
        import httpx  # noqa: F401
    except ImportError:
        return [Skipped("hishel CacheClient hit", "hishel is not installed (the [hishel] extra, Python 3.10+)")]
    from hishel import AsyncSqliteStorage, SqliteStorage

    from animedex_store.integrations.hishel import AsyncStoreStorage, StoreStorage

    responses = {  # the body as animedex kept it (decoded): headers about its encoding left out
        f"https://anime.example/{row.backend}/{index}": (row.payload, _plain(row.headers))
        for index, row in enumerate(real_rows(QUICK_URLS if settings.quick else URLS))
    }
    label = f"{len(responses)} real responses"
    sync_sides: dict[str, Callable[[Path], Any]] = {
        "ours": lambda path: StoreStorage(path),
        "theirs": lambda path: SqliteStorage(database_path=path),
    }
    async_sides: dict[str, Callable[[Path], Any]] = {
        "ours": lambda path: AsyncStoreStorage(path),
        "theirs": lambda path: AsyncSqliteStorage(database_path=path),
    }
    results: list[Result | Skipped] = []
    loop = asyncio.new_event_loop()
    try:
        for flavour, sides in (("sync", sync_sides), ("async", async_sides)):
            clients = {name: _Client(flavour, make, workdir, responses, loop) for name, make in sides.items()}
            misses = _misses(clients, settings.repeats)
            hits = interleaved(
                {name: client.hits for name, client in clients.items()}, len(responses), settings.repeats
            )
            for client in clients.values():
                client.close()
            sizes = {name: client.bytes_per_response() for name, client in clients.items()}
            theirs = f"hishel {'Async' if flavour == 'async' else ''}SqliteStorage"
            client_name = "AsyncCacheClient" if flavour == "async" else "CacheClient"
            results.append(Result(f"{client_name} hit, {label}", hits["ours"], theirs, hits["theirs"], HIT_TARGET))
            stored = f"{sizes['ours']:,.0f} vs {sizes['theirs']:,.0f} file bytes per response"
            results.append(
                Result(f"{client_name} miss, stored, {label} ({stored})", misses["ours"], theirs, misses["theirs"])
            )
    finally:
        loop.close()
    return results


def _plain(headers: dict[str, str]) -> dict[str, str]:
    encoding = {"content-encoding", "content-length", "transfer-encoding"}
    return {
        **{name: value for name, value in headers.items() if name.lower() not in encoding},
        "Content-Type": "application/json",
    }


class _Client:
    """A hishel client on one storage (a new file per round of misses), answering from ``responses``."""

    def __init__(
        self,
        flavour: str,
        make: Callable[[Path], Any],
        workdir: Path,
        responses: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.flavour, self.make, self.workdir, self.responses, self.loop = flavour, make, workdir, responses, loop
        self.rounds = 0
        self.client: Any = None
        self.path = workdir

    def fresh(self) -> None:
        """A new client on a new, empty storage file."""
        import httpx  # noqa: F401
        from hishel.httpx import AsyncCacheClient, AsyncCacheTransport, CacheClient, CacheTransport

        self.close()
        self.rounds += 1
        self.path = self.workdir / f"{self.flavour}-{id(self)}-{self.rounds}.sqlite"
        upstream = httpx.MockTransport(self.answer)
        storage = self.make(self.path)
        if self.flavour == "sync":
            self.client = CacheClient(transport=CacheTransport(upstream, storage=storage))
        else:
            self.client = AsyncCacheClient(transport=AsyncCacheTransport(upstream, storage=storage))
        self.calls = 0

    def answer(self, request: Any) -> Any:
        import httpx  # noqa: F401

        self.calls += 1
        body, headers = self.responses[str(request.url)]
        return httpx.Response(200, content=body, headers=headers)

    def get_all(self) -> None:
        if self.flavour == "sync":
            for url in self.responses:
                self.client.get(url).read()
            return

        async def get_all() -> None:
            for url in self.responses:
                await (await self.client.get(url)).aread()

        self.loop.run_until_complete(get_all())

    def hits(self) -> None:
        self.get_all()
        if self.calls != len(self.responses):
            raise RuntimeError("a timed request was not a cache hit")

    def bytes_per_response(self) -> float:
        """The last storage's files (closed: its WAL written back), per response stored."""
        size = sum(path.stat().st_size for path in self.path.parent.glob(self.path.name + "*"))
        return size / len(self.responses)

    def close(self) -> None:
        if self.client is None:
            return
        if self.flavour == "sync":
            self.client.close()
        else:
            self.loop.run_until_complete(self.client.aclose())
        self.client = None


def _misses(clients: dict[str, _Client], repeats: int) -> dict[str, float]:
    """Median µs per miss (fetched and stored) of each client, on a new storage each round, taking turns;
    each ends with a filled storage for the hits."""
    rounds: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(repeats):
        for name, client in clients.items():
            client.fresh()
            start = time.perf_counter_ns()
            client.get_all()
            rounds[name].append((time.perf_counter_ns() - start) / 1000)
            if client.calls != len(client.responses):
                raise RuntimeError("a request to fill the cache was not a miss")
    return {name: statistics.median(times) / len(clients[name].responses) for name, times in rounds.items()}
