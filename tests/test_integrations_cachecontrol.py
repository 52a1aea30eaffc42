"""``CacheControl(requests.Session(), cache=StoreCache(...))`` against a real HTTP server, on every engine.

CacheControl's sdist carries no tests, so these are ours: what its own
test_etag, test_max_age, test_vary, test_redirects, test_chunked_response and
test_expires_heuristics check (ETag revalidation, max-age hits and expiry,
``Vary``, permanent redirects, chunked bodies, heuristic freshness), through a
session on :class:`StoreCache`, asserting on what the session answers, what the
server was asked and which rows the store holds. Then what is ours: rows' TTLs,
a body never outlived by its metadata, long URLs, closing, a planted row, ``copy``
between engines and the CLI listing. Time moves by the repository's clock or, for
CacheControl's own freshness (``time.time()`` against ``Date``), by time-machine.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

if sys.version_info < (3, 10):
    pytest.skip("CacheControl 0.14 needs Python 3.10 or later", allow_module_level=True)

import msgpack  # noqa: E402
import requests  # noqa: E402
import time_machine  # noqa: E402
from cachecontrol import CacheControl  # noqa: E402
from cachecontrol.heuristics import ExpiresAfter, LastModified, OneDayCache  # noqa: E402
from cachecontrol.serialize import Serializer  # noqa: E402
from cli_runner import cli_runner  # noqa: E402
from conftest import ENGINES  # noqa: E402
from local_server import serving  # noqa: E402
from planted import DEEP_MSGPACK, NOT_TEXT, planted_pickle, truncated, unreadable_logged  # noqa: E402
from werkzeug.wrappers import Request, Response  # noqa: E402

from animedex_store import CacheRepository  # noqa: E402
from animedex_store.cli import cli  # noqa: E402
from animedex_store.core.clock import FrozenClock  # noqa: E402
from animedex_store.core.validation import KEY_MAX_LENGTH, MAX_TTL_SECONDS  # noqa: E402
from animedex_store.integrations.cachecontrol import StoreCache, backends, signature  # noqa: E402
from animedex_store.ops.copy import copy_store  # noqa: E402

DAY = 86_400
#: CacheControl keeps a response with an ETag at least this long (its controller), to revalidate it.
ETAG_SECONDS = 14 * DAY


class Site:
    """The server: ``/<kind>/<name>`` answers as :meth:`kind` says; it counts requests per path and
    keeps the headers of the last one."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.last_headers: dict[str, dict[str, str]] = {}
        self.versions: Counter[str] = Counter()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        kind, _, name = request.path.strip("/").partition("/")
        self.hits[request.path] += 1
        self.last_headers[request.path] = dict(request.headers)
        answer: Response = getattr(self, kind.replace("-", "_"))(request, name)
        return answer(environ, start_response)

    def body(self, request: Request) -> bytes:
        return f"{request.path}: response {self.hits[request.path]}".encode()

    def etag(self, request: Request, name: str) -> Response:
        """An ``ETag`` that changes when ``/new-etag/<name>`` is asked; ``304`` when it matches."""
        tag = f'"{name}-{self.versions[name]}"'
        if request.headers.get("If-None-Match") == tag:
            return Response(status=304, headers={"ETag": tag})
        return Response(self.body(request), headers={"ETag": tag})

    def new_etag(self, request: Request, name: str) -> Response:
        self.versions[name] += 1
        return Response(b"changed")

    def max_age(self, request: Request, name: str) -> Response:
        """``Cache-Control: max-age=600``."""
        return Response(self.body(request), headers={"Cache-Control": "max-age=600"})

    def once(self, request: Request, name: str) -> Response:
        """``max-age=600`` the first time, ``no-store`` afterwards."""
        policy = "max-age=600" if self.hits[request.path] == 1 else "no-store"
        return Response(self.body(request), headers={"Cache-Control": policy})

    def vary(self, request: Request, name: str) -> Response:
        accept = request.headers.get("Accept", "")
        headers = {"Cache-Control": "max-age=600", "Vary": "Accept-Encoding, Accept"}
        return Response(self.body(request) + f" for {accept}".encode(), headers=headers)

    def moved(self, request: Request, name: str) -> Response:
        """A permanent redirect, with no freshness of its own."""
        return Response(status=301, headers={"Location": f"/max-age/{name}"})

    def chunked(self, request: Request, name: str) -> Response:
        """A body of unknown length, which the server sends chunked."""
        parts = [self.body(request), b"-" * 5000, b"the end"]
        return Response(iter(parts), headers={"Cache-Control": "max-age=600"})

    def last_modified(self, request: Request, name: str) -> Response:
        """Only ``Last-Modified``, ten days ago: cacheable by a heuristic alone."""
        modified = datetime.now(timezone.utc) - timedelta(days=10)
        return Response(self.body(request), headers={"Last-Modified": format_datetime(modified, usegmt=True)})

    def no_cache(self, request: Request, name: str) -> Response:
        return Response(self.body(request), headers={"Cache-Control": "no-cache"})


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[Site, str]]:
    served = Site()
    with serving(served) as base_url:
        yield served, base_url


class Visit:
    """One test's view of the site: its URLs (a name of its own, so tests never share a server
    state or a cache key), a session on ``cache`` and the rows of the store."""

    def __init__(self, site: Site, base_url: str, cache: StoreCache, **session_options: Any) -> None:
        self.site = site
        self.base_url = base_url
        self.name = uuid.uuid4().hex[:12]
        self.cache = cache
        self.session = CacheControl(requests.Session(), cache=cache, **session_options)

    def url(self, kind: str) -> str:
        return f"{self.base_url}{kind}/{self.name}"

    def get(self, kind: str, **options: Any) -> requests.Response:
        return self.session.get(self.url(kind), **options)

    def hits(self, kind: str) -> int:
        return self.site.hits[f"/{kind}/{self.name}"]

    def ttls(self, kind: str) -> tuple[int | None, int | None]:
        """Seconds the metadata row and the body row of ``kind`` live from now (:data:`FOREVER`), or ``None``."""
        repository, row = self.cache.repository, signature(self.url(kind))
        found = (repository.get_with_meta(backend, row) for backend in self.cache.backends)
        return tuple(None if stored is None else seconds_left(repository, stored.expires_at) for stored in found)  # type: ignore[return-value]


#: What :func:`seconds_left` says of a row that never expires (reads report the year 9999 for it).
FOREVER = MAX_TTL_SECONDS


def seconds_left(repository: CacheRepository, expires_at: datetime) -> int:
    """Seconds from the repository's now to ``expires_at``; :data:`FOREVER` for a row that never expires."""
    if expires_at.year == 9999:
        return FOREVER
    return round((expires_at - repository.now()).total_seconds())


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(timezone.utc).replace(microsecond=0))  # rows keep whole seconds


@pytest.fixture
def repository(engine_url: str, clock: FrozenClock) -> Iterator[CacheRepository]:
    with CacheRepository(engine_url, clock=clock) as repository:
        yield repository


@pytest.fixture
def visit(site: tuple[Site, str], repository: CacheRepository) -> Iterator[Visit]:
    """A session on a ``StoreCache`` on ``repository`` (its clock: ``clock``)."""
    made = Visit(*site, StoreCache(repository=repository))
    yield made
    made.session.close()


def test_etag_revalidation(visit: Visit) -> None:
    first = visit.get("etag")
    assert (first.status_code, first.from_cache) == (200, False)
    assert visit.ttls("etag") == (ETAG_SECONDS, ETAG_SECONDS)  # the body lives as long as its metadata

    # Not fresh (no max-age), but kept for its ETag: revalidated with If-None-Match, answered 304.
    second = visit.get("etag")
    assert (second.status_code, second.from_cache, second.content) == (200, True, first.content)
    assert visit.site.last_headers[f"/etag/{visit.name}"]["If-None-Match"] == first.headers["ETag"]
    # CacheControl re-stores only the metadata after a 304, for ever: the body is kept as long.
    assert visit.ttls("etag") == (FOREVER, FOREVER)

    visit.get("new-etag")
    third = visit.get("etag")
    assert (third.status_code, third.from_cache) == (200, False)
    assert third.headers["ETag"] != first.headers["ETag"] and third.content != first.content
    fourth = visit.get("etag")
    assert (fourth.from_cache, fourth.content, visit.hits("etag")) == (True, third.content, 4)


def test_a_no_cache_request_still_revalidates_and_a_range_request_bypasses(visit: Visit) -> None:
    first = visit.get("etag")
    revalidated = visit.get("etag", headers={"Cache-Control": "no-cache"})
    assert (revalidated.status_code, revalidated.from_cache, revalidated.content) == (200, True, first.content)
    ranged = visit.get("etag", headers={"Range": "bytes=0-3"})
    assert (ranged.status_code, ranged.from_cache) == (200, False)
    assert "If-None-Match" not in visit.site.last_headers[f"/etag/{visit.name}"]


def test_max_age_hits_until_the_row_expires(visit: Visit, clock: FrozenClock) -> None:
    first = visit.get("max-age")
    second = visit.get("max-age")
    assert (first.from_cache, second.from_cache, second.content, visit.hits("max-age")) == (
        False,
        True,
        first.content,
        1,
    )
    assert visit.ttls("max-age") == (600, 600)

    bypassed = visit.get("max-age", headers={"Cache-Control": "max-age=0"})
    assert (bypassed.from_cache, visit.hits("max-age")) == (False, 2)
    assert visit.get("max-age", headers={"Cache-Control": "max-age=3600"}).from_cache  # the entry stayed

    clock.advance(601)  # the rows expire with the response: a miss, fetched again
    assert visit.ttls("max-age") == (None, None)
    assert (visit.get("max-age").from_cache, visit.hits("max-age")) == (False, 3)
    assert visit.get("max-age").from_cache


def test_a_response_stale_by_its_date_is_fetched_again(visit: Visit) -> None:
    visit.get("max-age")
    with time_machine.travel(datetime.now(timezone.utc) + timedelta(seconds=700), tick=False):
        # CacheControl's clock against the Date header: stale, and without an ETag, fetched again.
        assert visit.cache.get(visit.url("max-age")) is not None
        refetched = visit.get("max-age")
    assert (refetched.from_cache, visit.hits("max-age")) == (False, 2)
    assert visit.get("max-age").from_cache


def test_no_store_deletes_the_metadata_and_the_body(visit: Visit) -> None:
    visit.get("once")
    assert visit.ttls("once") == (600, 600)
    visit.get("once", headers={"Cache-Control": "no-cache"})  # answered no-store: CacheControl deletes the entry
    assert visit.ttls("once") == (None, None)
    assert sum(visit.cache.repository.count(backend, include_expired=True) for backend in visit.cache.backends) == 0


def test_vary(visit: Visit) -> None:
    json_first = visit.get("vary", headers={"Accept": "application/json"})
    json_again = visit.get("vary", headers={"Accept": "application/json"})
    text = visit.get("vary", headers={"Accept": "text/plain"})
    assert (json_first.from_cache, json_again.from_cache, text.from_cache) == (False, True, False)
    assert json_again.content == json_first.content and text.content.endswith(b"for text/plain")

    # The row is CacheControl's own serialization (msgpack, never pickle), varying on two headers.
    stored = visit.cache.get(visit.url("vary"))
    assert stored is not None and stored.startswith(b"cc=4,")
    request = visit.session.prepare_request(
        requests.Request("GET", visit.url("vary"), headers={"Accept": "text/plain"})
    )
    body = visit.cache.get_body(visit.url("vary"))
    response = Serializer().loads(request, stored, body)
    assert response is not None and response.read() == text.content
    assert visit.get("vary", headers={"Accept": "text/plain"}).from_cache


def test_a_permanent_redirect_is_cached_for_ever(visit: Visit) -> None:
    first = visit.get("moved", allow_redirects=False)
    second = visit.get("moved", allow_redirects=False)
    assert (first.status_code, first.from_cache, second.status_code, second.from_cache) == (301, False, 301, True)
    assert visit.ttls("moved") == (FOREVER, FOREVER)
    assert not visit.get("moved", allow_redirects=False, headers={"Cache-Control": "no-cache"}).from_cache
    assert visit.hits("moved") == 2


def test_a_chunked_body_is_cached_once_read_whole(visit: Visit) -> None:
    unread = visit.get("chunked", stream=True)
    assert unread.headers["Transfer-Encoding"] == "chunked"  # never read: nothing stored
    assert visit.ttls("chunked") == (None, None)

    first = visit.get("chunked")
    assert first.headers["Transfer-Encoding"] == "chunked" and first.content.endswith(b"the end")
    second = visit.get("chunked", headers={"Cache-Control": "max-age=3600"})
    assert (first.from_cache, second.from_cache, second.content) == (False, True, first.content)
    assert visit.cache.get_body(visit.url("chunked")).read() == first.content  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("heuristic", "kind", "warned"),
    [
        pytest.param(OneDayCache(), "last-modified", True, id="OneDayCache"),
        pytest.param(ExpiresAfter(days=1), "no-cache", True, id="ExpiresAfter"),
        pytest.param(LastModified(), "last-modified", False, id="LastModified"),
    ],
)
def test_heuristic_freshness(
    site: tuple[Site, str], repository: CacheRepository, heuristic: Any, kind: str, warned: bool
) -> None:
    visit = Visit(*site, StoreCache(repository=repository), heuristic=heuristic)
    with visit.session:
        first = visit.get(kind)
        second = visit.get(kind)
        assert "expires" in first.headers and ("warning" in first.headers) is warned
        assert (first.from_cache, second.from_cache, second.content, visit.hits(kind)) == (
            False,
            True,
            first.content,
            1,
        )
        # Fresh for a day from the response's Date (whole seconds: the row may outlive it by one).
        assert visit.ttls(kind)[0] in (DAY - 1, DAY, DAY + 1)
        if kind == "no-cache":
            assert first.headers["cache-control"] == "public"  # ExpiresAfter overrides the response's no-cache


def test_rows_live_as_long_as_cachecontrol_asks(repository: CacheRepository) -> None:
    cache = StoreCache(repository=repository)
    now = repository.now()
    cases: list[tuple[Any, int]] = [
        (60, 60),
        (None, FOREVER),
        (0, 0),
        (-5, 0),  # an Expires before the Date: stale at once
        (now + timedelta(seconds=90, milliseconds=500), 91),  # aware, rounded up
        ((now + timedelta(seconds=30)).replace(tzinfo=None), 30),  # naive: UTC
    ]
    for number, (expires, ttl) in enumerate(cases):
        key = f"https://anime.example/{number}"
        cache.set(key, b"metadata", expires=expires)
        cache.set_body(key, b"body")
        if ttl == 0:
            assert (cache.get(key), cache.get_body(key)) == (None, None)
        else:
            (stored,) = [k for k in repository.keys(cache.backends.responses) if k.signature == key]
            assert seconds_left(repository, stored.expires_at) == ttl
    for wrong in (True, 1.5, "60"):
        with pytest.raises(TypeError, match="expires must be"):
            cache.set("https://anime.example/x", b"metadata", expires=wrong)


def test_a_body_never_expires_before_its_metadata(repository: CacheRepository, clock: FrozenClock) -> None:
    cache = StoreCache(repository=repository)
    key = "https://anime.example/etag"
    cache.set(key, b"metadata", expires=ETAG_SECONDS)
    cache.set_body(key, b"body")
    clock.advance(ETAG_SECONDS - 60)
    cache.set(key, b"metadata after a 304")  # no expires: for ever, and the body with it
    clock.advance(365 * DAY)
    assert (cache.get(key), cache.get_body(key).read()) == (b"metadata after a 304", b"body")  # type: ignore[union-attr]

    cache.set_body("https://anime.example/no-metadata", b"orphan")  # lives as long as metadata it has not
    assert cache.get_body("https://anime.example/no-metadata") is None
    cache.delete(key)
    assert (cache.get(key), cache.get_body(key)) == (None, None)
    assert sum(repository.count(backend, include_expired=True) for backend in cache.backends) == 1  # the orphan


def test_urls_of_any_length(visit: Visit) -> None:
    long_url = visit.url("max-age") + "?q=" + "x" * (2 * KEY_MAX_LENGTH)
    first = visit.session.get(long_url)
    second = visit.session.get(long_url)
    assert (first.from_cache, second.from_cache, second.content) == (False, True, first.content)
    (stored,) = visit.cache.repository.keys(visit.cache.backends.responses)
    assert stored.signature == signature(long_url) and stored.signature.startswith("sha256:")
    assert len(stored.signature) == len("sha256:") + 64 and signature(stored.signature) != stored.signature
    assert signature(visit.url("max-age")) == visit.url("max-age")  # a URL that fits is its own key


def test_namespaces_and_their_checks(repository: CacheRepository) -> None:
    one, two = StoreCache(repository=repository), StoreCache(repository=repository, namespace="other")
    one.set("https://anime.example/", b"one")
    two.set("https://anime.example/", b"two")
    assert (one.get("https://anime.example/"), two.get("https://anime.example/")) == (b"one", b"two")
    assert tuple(backends()) == ("cachecontrol:responses", "cachecontrol:bodies")
    with pytest.raises(TypeError, match="namespace must be str"):
        StoreCache(repository=repository, namespace=b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="namespace must be 1 to"):
        backends("n" * KEY_MAX_LENGTH)
    with pytest.raises(TypeError, match="key must be str"):
        one.get(b"https://anime.example/")  # type: ignore[arg-type]


def test_closing_is_idempotent_and_leaves_a_shared_repository_open(engine_url: str) -> None:
    owned = StoreCache(engine_url)
    with CacheControl(requests.Session(), cache=owned):  # closing the session closes the cache twice
        pass
    owned.close()
    with CacheRepository(engine_url) as shared:
        session = CacheControl(requests.Session(), cache=StoreCache(repository=shared))
        session.close()
        shared.set("anilist", "media:1", b"{}", ttl_seconds=60)  # still open
        assert shared.get("anilist", "media:1") == b"{}"


def test_a_planted_pickle_is_a_miss_and_runs_nothing(visit: Visit, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    url = visit.url("max-age")
    # CacheControl's old pickle formats (cc=1, cc=2) are gone from 0.14: such a row is ignored.
    visit.cache.set(url, b"cc=2," + planted_pickle(marker))
    visit.cache.set_body(url, planted_pickle(marker))
    response = visit.get("max-age")
    assert (response.from_cache, response.status_code, marker.exists()) == (False, 200, False)
    assert visit.get("max-age").from_cache  # replaced by the real response


def _metadata(**response: Any) -> bytes:
    """CacheControl's metadata (its ``cc=4`` format) of a response of ``max-age=600``, with ``response``'s
    fields changed."""
    fields: dict[str, Any] = {
        "body": b"",
        "headers": {"Cache-Control": "max-age=600", "Date": format_datetime(datetime.now(timezone.utc), usegmt=True)},
        "status": 200,
        "version": 11,
        "reason": "OK",
        "decode_content": False,
    }
    vary = response.pop("vary", {})
    fields.update(response)
    packed: bytes = msgpack.packb({"response": fields, "vary": vary}, use_bin_type=True)
    return b"cc=4," + packed


#: Metadata rows CacheControl never writes: each is a miss (the URL fetched again), logged once (but
#: those CacheControl ignores on its own: the pickle, the nesting, the cut), never raising.
PLANTED: dict[str, tuple[bytes, bool]] = {
    "a pickle": (b"cc=2," + planted_pickle(Path("never-created")), False),
    "100,000 nested arrays": (b"cc=4," + DEEP_MSGPACK, False),
    "metadata cut short": (truncated(_metadata()), False),
    "a list": (b"cc=4," + msgpack.packb([1, 2]), True),
    "no response": (b"cc=4," + msgpack.packb({"vary": {}}), True),
    "headers of the wrong type": (_metadata(headers=5), True),
    "a field HTTPResponse does not take": (_metadata(bogus=1), True),
    "a status out of range": (_metadata(status=2**64 - 1), True),
    "a status of the wrong type": (_metadata(status="OK"), True),
    "vary headers of the wrong type": (
        b"cc=4," + msgpack.packb({"response": {"body": b"", "headers": {}, "status": 200}, "vary": [1]}),
        True,
    ),
    "bytes that are not text": (b"cc=4," + NOT_TEXT, False),
}


@pytest.fixture(scope="module", params=ENGINES)
def planted_on(request: pytest.FixtureRequest, module_databases: Callable[[str], str]) -> Iterator[CacheRepository]:
    """A repository on one database of this module per engine, for the planted rows."""
    with CacheRepository(module_databases(request.param)) as repository:
        yield repository


@pytest.mark.parametrize("planted", PLANTED)
def test_a_planted_row_is_a_miss_never_an_exception(
    site: tuple[Site, str], planted_on: CacheRepository, planted: str, caplog: pytest.LogCaptureFixture
) -> None:
    payload, logged = PLANTED[planted]
    visit = Visit(*site, StoreCache(repository=planted_on))
    with visit.session:
        visit.cache.set(visit.url("max-age"), payload, expires=3600)
        with caplog.at_level("WARNING"):
            response = visit.get("max-age")
        assert (response.status_code, response.from_cache, visit.hits("max-age")) == (200, False, 1)
        assert visit.get("max-age").from_cache  # replaced by the real response
    if logged:  # CacheControl reads the metadata twice per request: the response, then its validators
        unreadable_logged(caplog, "animedex_store.integrations.cachecontrol", visit.url("max-age"), reads=2)
    else:
        assert [record for record in caplog.records if record.name.startswith("animedex_store")] == []


def test_copy_moves_cachecontrol_rows_between_engines(
    site: tuple[Site, str], tmp_path: Path, open_sandbox: Callable[[str], str]
) -> None:
    source = f"sqlite:///{tmp_path / 'http.sqlite'}"
    visit = Visit(*site, StoreCache(source))
    with visit.session:
        first = visit.get("max-age")
    for server in ("postgresql", "mariadb"):
        destination = open_sandbox(server)
        assert copy_store(source, destination).rows_copied == 2  # the metadata and the body
        copied = Visit(*site, StoreCache(destination))
        with copied.session:
            response = copied.session.get(visit.url("max-age"))
        assert (response.from_cache, response.content) == (True, first.content)
    assert visit.hits("max-age") == 1


def test_the_cli_lists_the_namespace(site: tuple[Site, str], tmp_path: Path) -> None:
    path = tmp_path / "http.sqlite"
    visit = Visit(*site, StoreCache(path))
    with visit.session:
        body = visit.get("max-age").content
    listed = {}
    for backend in backends():
        result = cli_runner().invoke(cli, ["keys", backend, "--url", str(path), "--json"])
        assert result.exit_code == 0, result.output
        (row,) = json.loads(result.stdout)["keys"]
        listed[backend] = (row["signature"], row["expired"], row["bytes"])
    assert listed["cachecontrol:responses"][:2] == (visit.url("max-age"), False)
    assert listed["cachecontrol:bodies"] == (visit.url("max-age"), False, len(body))
