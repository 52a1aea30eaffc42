"""Revision 0005 and compression, on animedex's real responses (README, "Storage format and compression").

Every payload of the real sample round-trips byte for byte through every codec
on every engine; readers decode every codec whatever their own setting; a seed
file full of real payloads is adopted byte-exact; ``0004`` -> ``0005`` ->
``0004`` keeps every row byte-exact with compressed rows in the file (the seed's
own module reads them after the downgrade); an unknown codec is a clear error.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic_runner import migrate_engine
from fresh_interpreter import run_fresh
from rowdump import plain_engine
from sqlalchemy import Engine, inspect, select, text, update

from animedex_store import CacheRepository, StoreError
from animedex_store.core import codecs
from animedex_store.core.clock import FrozenClock
from animedex_store.migrations.revisions import HEAD_REVISION
from animedex_store.sql.models import CacheRow
from benchmarks.payloads import RealPayload, real_payloads
from benchmarks.seed_baseline import SEED_SCHEMA_V1, SeedCache

COMPRESSIONS = [None, "zlib", "zstd"]
TTL = 3600
rows_table = CacheRow.__table__


def _all_payloads() -> list[RealPayload]:
    """The sample, plus an empty payload and one just under the compression threshold."""
    extra = [
        RealPayload("edge", "empty", b"", {}),
        RealPayload("edge", "threshold-1", b"{" * (codecs.COMPRESS_FROM_BYTES - 1), {"X": "y"}),
        RealPayload("edge", "threshold", b"{" * codecs.COMPRESS_FROM_BYTES, {}),
    ]
    return [*real_payloads(), *extra]


def _stored_codecs(engine_url: str) -> dict[tuple[str, str], int]:
    engine = plain_engine(engine_url)
    try:
        with engine.connect() as connection:
            found = connection.execute(select(rows_table.c.backend, rows_table.c.signature, rows_table.c.codec))
            return {(backend, signature): codec for backend, signature, codec in found}
    finally:
        engine.dispose()


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_every_real_payload_round_trips_through_every_codec(
    make_repository: Callable[..., CacheRepository], engine_url: str, compression: str | None
) -> None:
    writer = make_repository(compression=compression)
    sample = _all_payloads()
    by_backend: dict[str, dict[str, bytes]] = {}
    for item in sample[::2]:
        writer.set_with_meta(item.backend, item.signature, item.payload, response_headers=item.headers, ttl_seconds=TTL)
    for item in sample[1::2]:
        by_backend.setdefault(item.backend, {})[item.signature] = item.payload
    for backend, items in by_backend.items():
        writer.set_many(backend, items, ttl_seconds=TTL)

    # Readers with every setting decode every row.
    for reader in (writer, *(make_repository(compression=other) for other in COMPRESSIONS if other != compression)):
        for index, item in enumerate(sample):
            assert reader.get(item.backend, item.signature) == item.payload, item.signature
            if index % 2 == 0:
                assert reader.get_with_meta(item.backend, item.signature)[:2] == (item.payload, item.headers)
        for backend, items in by_backend.items():
            assert reader.get_many(backend, list(items)) == items

    stored = _stored_codecs(engine_url)
    expected = codecs.IDENTITY if compression is None else codecs.CODECS[compression]
    small = [(item.backend, item.signature) for item in sample if len(item.payload) < codecs.COMPRESS_FROM_BYTES]
    assert {stored[key] for key in small} == {codecs.IDENTITY}  # under the threshold: as they are
    big = [(item.backend, item.signature) for item in sample if len(item.payload) >= 64 * 1024]
    assert {stored[key] for key in big} == {expected}  # JSON of 64 KB and more always shrinks


@pytest.mark.parametrize("compression", ["zlib", "zstd"])
def test_empty_and_50_mb_payloads_round_trip_through_every_codec(
    make_repository: Callable[..., CacheRepository], compression: str
) -> None:
    repository = make_repository(compression=compression)
    compressible = b'{"id": 1, "title": "Cowboy Bebop"}, ' * (50 * 1024 * 1024 // 36)
    repository.set("big", "json", compressible, ttl_seconds=TTL)
    repository.set("big", "empty", b"", ttl_seconds=TTL)
    assert repository.get("big", "json") == compressible
    assert repository.get("big", "empty") == b""
    assert repository.stats().payload_bytes < len(compressible) // 20  # sizes count bytes as stored


def test_a_compressed_result_that_is_not_smaller_is_stored_as_it_is(
    make_repository: Callable[..., CacheRepository], engine_url: str
) -> None:
    random_bytes = random.Random(16).randbytes(64 * 1024)  # zlib makes these longer
    repository = make_repository(compression="zlib")
    repository.set("b", "random", random_bytes, ttl_seconds=TTL)
    repository.set("b", "json", b"[1, 2, 3]" * 1024, ttl_seconds=TTL)
    stored = _stored_codecs(engine_url)
    assert (stored[("b", "random")], stored[("b", "json")]) == (codecs.IDENTITY, codecs.ZLIB)
    assert repository.get("b", "random") == random_bytes


def _plant(engine_url: str, key: tuple[str, str], payload: bytes, codec: int) -> None:
    engine = plain_engine(engine_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                update(rows_table)
                .where(rows_table.c.backend == key[0], rows_table.c.signature == key[1])
                .values(payload=payload, codec=codec)
            )
    finally:
        engine.dispose()


def test_an_unknown_codec_or_undecodable_bytes_raise_a_store_error(
    make_repository: Callable[..., CacheRepository], engine_url: str
) -> None:
    repository = make_repository()
    for signature in ("unknown", "bad-zlib", "bad-zstd", "fine"):
        repository.set("b", signature, b"stored", ttl_seconds=TTL)
    _plant(engine_url, ("b", "unknown"), b"from the future", 99)
    _plant(engine_url, ("b", "bad-zlib"), b"not zlib", codecs.ZLIB)
    _plant(engine_url, ("b", "bad-zstd"), b"not zstd", codecs.ZSTD)
    for signature, message in (
        ("unknown", "codec 99, which this animedex-store does not know"),
        ("bad-zlib", "is not valid zlib data"),
        ("bad-zstd", "is not valid zstd data"),
    ):
        with pytest.raises(StoreError, match=message) as caught:
            repository.get("b", signature)
        assert repr(signature) in str(caught.value) and repository.target in str(caught.value)
        with pytest.raises(StoreError, match=message):
            repository.get_with_meta("b", signature)
        with pytest.raises(StoreError, match=message):
            repository.get_many("b", [signature, "fine"])
    assert repository.get("b", "fine") == b"stored"  # other rows read as ever


def test_compression_arguments_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cache.sqlite"
    with pytest.raises(TypeError, match="compression must be None, 'zlib' or 'zstd'"):
        CacheRepository(path, compression=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'lz4'"):
        CacheRepository(path, compression="lz4")
    assert not path.exists()  # refused before anything opened
    monkeypatch.setattr(codecs, "_ZSTD_MODULES", ("no_such_zstd_module", "no_such_package.zstd"))
    with pytest.raises(ValueError, match=r"animedex-store\[zstd\]"):
        CacheRepository(path, compression="zstd")


def test_a_zstd_row_without_a_zstd_module_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cache.sqlite"
    with CacheRepository(path, compression="zstd") as repository:
        repository.set("b", "k", b"[1]" * 4096, ttl_seconds=TTL)
    monkeypatch.setattr(codecs, "_ZSTD_MODULES", ("no_such_zstd_module",))
    monkeypatch.setattr(codecs, "_zstd_module", None)
    with CacheRepository(path) as repository, pytest.raises(StoreError, match=r"zstd-compressed; .*\[zstd\]"):
        repository.get("b", "k")


def test_zstd_is_imported_only_when_a_zstd_row_is_read_or_written(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with CacheRepository(path, compression="zstd") as repository:
        repository.set("b", "big", b"[1]" * 4096, ttl_seconds=TTL)
        repository.set("b", "small", b"[1]", ttl_seconds=TTL)
    code = """
from animedex_store import CacheRepository
zstd_loaded = lambda: any(name.endswith("zstd") for name in sys.modules)
steps = {}
repository = CacheRepository(sys.argv[1], compression="zstd")
steps["open"] = zstd_loaded()
repository.set("b", "small-2", b"[2]", ttl_seconds=60)
steps["small payloads"] = [repository.get("b", "small").decode(), zstd_loaded()]
steps["read a zstd row"] = [len(repository.get("b", "big")), zstd_loaded()]
print(json.dumps({"steps": steps, "heavy": heavy_loaded()}))
"""
    report = run_fresh(code, str(path), cwd=tmp_path)
    assert report == {
        "steps": {"open": False, "small payloads": ["[1]", False], "read a zstd row": [3 * 4096, True]},
        "heavy": [],
    }


def test_a_row_the_seeds_module_writes_reads_as_it_is(tmp_path: Path) -> None:
    """The seed's ``INSERT OR REPLACE`` names its six columns: the codec's default says 'as it is'."""
    path = tmp_path / "cache.sqlite"
    item = max(real_payloads(), key=lambda payload: len(payload.payload))
    with CacheRepository(path, compression="zstd", clock=FrozenClock()) as repository:
        repository.set(item.backend, item.signature, item.payload, ttl_seconds=TTL)
    seed = SeedCache(path)
    try:
        seed.set_with_meta(item.backend, item.signature, b"seed's bytes", response_headers={}, ttl_seconds=TTL)
    finally:
        seed.close()
    with CacheRepository(path) as repository:
        assert repository.get(item.backend, item.signature) == b"seed's bytes"


# -- adoption of seed files full of real payloads ----------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_seed_file_full_of_real_payloads_is_adopted_byte_exact(tmp_path: Path, version: str) -> None:
    path = tmp_path / "cache.sqlite"
    sample = real_payloads()
    if version == "v2":
        seed = SeedCache(path)
        try:
            for item in sample:
                seed.set_with_meta(
                    item.backend, item.signature, item.payload, response_headers=item.headers, ttl_seconds=TTL
                )
        finally:
            seed.close()
    else:
        with sqlite3.connect(path) as connection:
            connection.execute(SEED_SCHEMA_V1)
            connection.executemany(
                "INSERT INTO cache_rows (backend, signature, payload, expires_at) VALUES (?, ?, ?, ?)",
                [(item.backend, item.signature, item.payload, 4102444800) for item in sample],
            )
        connection.close()
    with CacheRepository(path, compression="zstd") as repository:
        for item in sample:
            found = repository.get_with_meta(item.backend, item.signature)
            assert found is not None and found.payload == item.payload
            assert found.headers == (item.headers if version == "v2" else {})
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]
        stored = dict(connection.execute("SELECT signature, payload FROM cache_rows WHERE codec = 0"))
    connection.close()
    assert stored == {item.signature: item.payload for item in sample}  # adoption rewrites no payload


# -- 0004 -> 0005 -> 0004 with compressed rows ---------------------------------------------------


def _rows_as_stored(engine: Engine) -> dict[tuple[str, str], tuple[bytes, int | None, bytes | None]]:
    with engine.connect() as connection:
        table = inspect(connection)
        columns = {column["name"] for column in table.get_columns("cache_rows")}
        codec = "codec" if "codec" in columns else "NULL"
        found = connection.execute(
            text(f"SELECT backend, signature, payload, {codec}, response_headers FROM cache_rows")  # constant names
        )
        return {(row[0], row[1]): (bytes(row[2]), row[3], row[4] and bytes(row[4])) for row in found}


def test_0004_to_0005_to_0004_keeps_every_row_byte_exact_with_compressed_rows(
    engine: Engine, engine_url: str, tmp_path: Path
) -> None:
    sample = real_payloads()[::3]
    migrate_engine(engine, "0004")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO cache_rows (backend, signature, payload, expires_at, response_headers, fetched_at) "
                "VALUES (:backend, :signature, :payload, :expires_at, :headers, :fetched_at)"
            ),
            [
                {**item._asdict(), "expires_at": 4102444800, "headers": b"{}", "fetched_at": 1_800_000_000}
                for item in sample
            ],
        )
    before = _rows_as_stored(engine)
    assert {codec for _payload, codec, _headers in before.values()} == {None}

    migrate_engine(engine, "0005")
    assert {key: (payload, headers) for key, (payload, _c, headers) in _rows_as_stored(engine).items()} == {
        key: (payload, headers) for key, (payload, _c, headers) in before.items()
    }
    # Compressed rows in the file: half the sample rewritten by a zlib and a zstd repository.
    for compression, part in (("zlib", sample[0::2]), ("zstd", sample[1::2])):
        with CacheRepository(engine_url, compression=compression) as repository:
            for item in part:
                repository.set(item.backend, item.signature, item.payload, ttl_seconds=10**9)
    stored = _rows_as_stored(engine)
    assert {codec for _payload, codec, _headers in stored.values()} == {0, codecs.ZLIB, codecs.ZSTD}

    migrate_engine(engine, "0004", downgrade=True)
    after = _rows_as_stored(engine)
    assert {key: payload for key, (payload, _c, _h) in after.items()} == {
        (item.backend, item.signature): item.payload for item in sample
    }
    if engine.dialect.name == "sqlite":
        with sqlite3.connect(engine.url.database) as connection:
            table_sql = connection.execute("SELECT sql FROM sqlite_master WHERE name = 'cache_rows'").fetchone()[0]
        connection.close()
        assert table_sql.rstrip().upper().endswith("WITHOUT ROWID")
        seed = SeedCache(Path(engine.url.database))  # the seed's own module reads every row byte-exact
        try:
            for item in sample:
                found = seed.get_with_meta(item.backend, item.signature)
                assert found is not None and found[0] == item.payload
        finally:
            seed.close()

    migrate_engine(engine, "head")
    with CacheRepository(engine_url) as repository:
        for item in sample:
            assert repository.get(item.backend, item.signature) == item.payload
    assert {codec for _payload, codec, _headers in _rows_as_stored(engine).values()} == {0}


def test_the_sqlite_layout_at_head_is_a_rowid_table_with_the_payload_last(tmp_path: Path) -> None:
    """alembic check does not compare table options or column order: 0005's layout, checked here."""
    path = tmp_path / "cache.sqlite"
    CacheRepository(path).close()
    with sqlite3.connect(path) as connection:
        table_sql = connection.execute("SELECT sql FROM sqlite_master WHERE name = 'cache_rows'").fetchone()[0]
        columns = [info[1] for info in connection.execute("PRAGMA table_info(cache_rows)")]
    connection.close()
    assert "WITHOUT ROWID" not in table_sql.upper()
    assert columns == ["backend", "signature", "expires_at", "fetched_at", "codec", "response_headers", "payload"]
