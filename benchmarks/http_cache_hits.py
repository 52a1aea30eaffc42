"""Our aiohttp-client-cache and CacheControl caches against each library's own, in one run
(``pip install 'animedex-store[bench]'``): an aiohttp ``CachedSession`` hit through ``StoreBackend``
against one through aiohttp-client-cache's ``SQLiteBackend``, and a ``CacheControl`` session hit
through ``StoreCache`` against one through its ``SeparateBodyFileCache``.

A local server answers the first request of every URL with one of animedex's recorded responses as
the body (``Cache-Control: max-age=3600``); every timed request afterwards is a hit, which the suite
checks by counting the server's requests. Our caches are SQLite files beside the libraries' own, in
the same directory. ``StoreBackend``'s default serializer is not pickle, the ``SQLiteBackend``'s is:
a third, informational row gives ours with pickle chosen, the cost of the store alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .measure import Result, Settings, Skipped, interleaved
from .payloads import real_rows

__all__ = ["run", "HIT_TARGET"]

#: The target: a hit costs at most 1.1x a hit through the library's own backend.
HIT_TARGET = 1.1
URLS = 200
QUICK_URLS = 50


def run(settings: Settings, workdir: Path) -> list[Result | Skipped]:
    count = QUICK_URLS if settings.quick else URLS
    bodies = {f"/{row.backend}/{index}": row.payload for index, row in enumerate(real_rows(count))}
    with _serving(bodies) as server:
        return _aiohttp_hits(settings, workdir, server) + _cachecontrol_hits(settings, workdir, server)


def _aiohttp_hits(settings: Settings, workdir: Path, server: _Server) -> list[Result | Skipped]:
    try:
        from aiohttp_client_cache import CachedSession, SQLiteBackend
    except ImportError:
        return [Skipped("aiohttp CachedSession hit", "aiohttp-client-cache is not installed (Python 3.11+, [bench])")]
    from animedex_store.integrations.aiohttp_client_cache import StoreBackend

    backends = {
        "ours": lambda: StoreBackend("bench", workdir / "ours-aiohttp.sqlite", expire_after=3600),
        "ours, pickle": lambda: StoreBackend(
            "bench", workdir / "ours-aiohttp-pickle.sqlite", expire_after=3600, serializer="pickle"
        ),
        "theirs": lambda: SQLiteBackend(str(workdir / "aiohttp-client-cache.sqlite"), expire_after=3600),
    }
    loop = asyncio.new_event_loop()
    sessions: dict[str, Any] = {}
    try:

        async def open_and_fill() -> None:
            for name, make in backends.items():
                sessions[name] = CachedSession(cache=make())
                await _fetch_all(sessions[name], server)  # the misses that fill the cache

        loop.run_until_complete(open_and_fill())
        calls = server.calls
        hits = interleaved(
            {
                name: lambda session=session: loop.run_until_complete(_fetch_all(session, server))
                for name, session in sessions.items()
            },
            len(server.bodies),
            settings.repeats,
        )
        server.check_no_call_since(calls)
    finally:
        loop.run_until_complete(_close_all(sessions.values()))
        loop.close()
    label = f"aiohttp CachedSession hit, {len(server.bodies)} real responses"
    theirs = "aiohttp-client-cache SQLiteBackend (pickle)"
    return [
        Result(label, hits["ours"], theirs, hits["theirs"], HIT_TARGET),
        Result(f"{label}, ours with pickle chosen", hits["ours, pickle"], theirs, hits["theirs"]),
    ]


async def _close_all(sessions: Iterable[Any]) -> None:
    for session in sessions:
        await session.close()


async def _fetch_all(session: Any, server: _Server) -> None:
    for path in server.bodies:
        async with session.get(server.url + path) as response:
            await response.read()


def _cachecontrol_hits(settings: Settings, workdir: Path, server: _Server) -> list[Result | Skipped]:
    try:
        import requests
        from cachecontrol import CacheControl
        from cachecontrol.caches import SeparateBodyFileCache
    except ImportError:
        return [Skipped("CacheControl hit", "cachecontrol[filecache] is not installed (Python 3.10+, [bench])")]
    from animedex_store.integrations.cachecontrol import StoreCache

    caches = {"ours": StoreCache(workdir / "ours-cachecontrol.sqlite"), "theirs": SeparateBodyFileCache(workdir / "cc")}
    sessions = {name: CacheControl(requests.Session(), cache=cache) for name, cache in caches.items()}
    try:
        for session in sessions.values():
            _get_all(session, server)()  # the misses that fill the cache
        calls = server.calls
        hits = interleaved(
            {name: _get_all(session, server) for name, session in sessions.items()},
            len(server.bodies),
            settings.repeats,
        )
        server.check_no_call_since(calls)
    finally:
        for session in sessions.values():
            session.close()
    label = f"CacheControl hit, {len(server.bodies)} real responses"
    return [Result(label, hits["ours"], "CacheControl SeparateBodyFileCache", hits["theirs"], HIT_TARGET)]


def _get_all(session: Any, server: _Server) -> Callable[[], None]:
    def get_all() -> None:
        for path in server.bodies:
            _ = session.get(server.url + path).content  # read: a miss is cached once its body is

    return get_all


class _Server:
    """What the local server answers (``bodies`` by path), where, and how many requests it had."""

    def __init__(self, bodies: dict[str, bytes]) -> None:
        self.bodies = bodies
        self.url = ""
        self.calls = 0

    def check_no_call_since(self, calls: int) -> None:
        if self.calls != calls:
            raise RuntimeError(f"{self.calls - calls} timed requests were not cache hits")


@contextlib.contextmanager
def _serving(bodies: dict[str, bytes]) -> Iterator[_Server]:
    server = _Server(bodies)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real APIs

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            server.calls += 1
            body = bodies[self.path]
            self.send_response(200)  # with a Date header, which CacheControl needs
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=3600")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.url = f"http://127.0.0.1:{httpd.server_port}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
