"""An application's cache layer on animedex-store, annotated as an application would annotate it.

CI runs ``mypy --strict tests/typed_app``: if the package's public API loses or
loosens an annotation, this stops type-checking. ``tests/test_typed_app.py``
runs it too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from animedex_store import CachedResponse, CacheRepository, CacheStats, StoreError, default_ttl_seconds
from animedex_store.errors import DatabaseLockedError, FetchTimeoutError, SchemaTooNewError
from animedex_store.sqlite import SqliteCache
from animedex_store.testing import FrozenClock


class Anime(BaseModel):
    id: int
    title: str


class AnimeCache:
    """Anime metadata cached by id, with the upstream's ETag kept beside each response."""

    BACKEND = "anilist"

    def __init__(self, repository: CacheRepository) -> None:
        self._repository = repository

    def store(self, anime: Anime, etag: str) -> None:
        ttl: int = default_ttl_seconds("metadata")
        self._repository.set_model(self.BACKEND, f"media:{anime.id}", anime, ttl_seconds=ttl)
        self._repository.set_with_meta(
            self.BACKEND,
            f"raw:{anime.id}",
            anime.model_dump_json().encode(),
            response_headers={"ETag": etag},
            ttl_seconds=ttl,
        )

    def anime(self, anime_id: int) -> Anime | None:
        return self._repository.get_model(self.BACKEND, f"media:{anime_id}", Anime)

    def etag(self, anime_id: int) -> str | None:
        cached: CachedResponse | None = self._repository.get_with_meta(
            self.BACKEND, f"raw:{anime_id}", include_expired=True
        )
        if cached is None:
            return None
        headers: Mapping[str, str] = cached.headers
        fetched_at: datetime | None = cached.fetched_at
        expires_at: datetime = cached.expires_at
        return headers.get("ETag") if fetched_at is None or fetched_at <= expires_at else None

    def payloads(self, anime_ids: list[int]) -> dict[str, bytes]:
        return self._repository.get_many(self.BACKEND, [f"raw:{anime_id}" for anime_id in anime_ids])

    def forget(self, anime_id: int) -> bool:
        return self._repository.delete(self.BACKEND, f"media:{anime_id}")

    def raw(self, anime_id: int, call_api: Callable[[], tuple[bytes, dict[str, str]]]) -> bytes | None:
        """The raw response, fetched by one caller at a time when missing or expired."""
        try:
            cached: CachedResponse = self._repository.get_or_fetch(
                self.BACKEND,
                f"raw:{anime_id}",
                call_api,
                ttl_seconds=default_ttl_seconds("metadata"),
                serve_stale=True,
                wait_seconds=5.0,
                lease_seconds=10,
            )
        except FetchTimeoutError as error:
            assert error.backend == self.BACKEND
            return None
        return cached.payload

    def size(self) -> int:
        stats: CacheStats = self._repository.stats()
        return stats.payload_bytes


def open_cache(path: Path, clock: FrozenClock) -> AnimeCache:
    """Open the cache file, explaining the two storage errors a user can act on."""
    try:
        return AnimeCache(CacheRepository(path, clock=clock, timeout=5.0, max_bytes=10_000_000))
    except SchemaTooNewError as error:
        raise SystemExit(f"upgrade animedex-store: {error.target}") from error
    except DatabaseLockedError as error:
        raise SystemExit(str(error)) from error


def seed_style(path: Path) -> bytes | None:
    """The drop-in, used as the seed's module was."""
    with SqliteCache(path) as cache:
        cache.set("jikan", "anime/1", b"{}", ttl_seconds=60)
        purged: int = cache.purge_expired()
        assert purged >= 0
        try:
            return cache.get("jikan", "anime/1")
        except StoreError:
            return None
