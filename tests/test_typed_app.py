"""The typed example application (``tests/typed_app``, which CI type-checks with ``mypy --strict``) also runs."""

from __future__ import annotations

from pathlib import Path

from typed_app.anime_cache import Anime, AnimeCache, open_cache, seed_style

from animedex_store import CacheRepository
from animedex_store.testing import FrozenClock


def test_the_typed_application_runs_on_the_fixtures(cache_repository: CacheRepository) -> None:
    cache = AnimeCache(cache_repository)
    cache.store(Anime(id=1, title="Cowboy Bebop"), etag='W/"1"')
    assert cache.anime(1) == Anime(id=1, title="Cowboy Bebop")
    assert cache.etag(1) == 'W/"1"'
    assert list(cache.payloads([1, 2])) == ["raw:1"]
    assert cache.raw(2, lambda: (b'{"id": 2}', {"ETag": "2"})) == b'{"id": 2}'
    assert cache.raw(2, lambda: (b"not fetched again", {})) == b'{"id": 2}'
    assert cache.size() > 0
    assert cache.forget(1) and cache.anime(1) is None


def test_the_typed_application_opens_files(tmp_path: Path, frozen_clock: FrozenClock) -> None:
    assert open_cache(tmp_path / "app.sqlite", frozen_clock).anime(7) is None
    assert seed_style(tmp_path / "seed-style.sqlite") == b"{}"
