"""Our Django cache backend against Django's own ``DatabaseCache``, on the same engine in the same run
(``pip install 'animedex-store[bench]'``): ``get`` hits and ``set`` at 1,000 entries and at 100,000
entries (``--quick``: 1,000 and 5,000), ``MAX_ENTRIES`` above that count for both.

Both caches hold the same values (a dict of about 300 bytes pickled) under the same keys, on the
same engine: a SQLite file each in one directory, a PostgreSQL schema each in one database, a MariaDB
database each on one server (:func:`animedex_store.sql.sandbox.sandbox`; a server that does not answer
is reported as skipped; a repository refuses a database holding tables it did not create, hence one
each). Ours is ``StoreCache`` with the SQLite path or server URL as its LOCATION; Django's is made by
``createcachetable`` in a Django configured here, its ``DATABASES`` on the same server through the same
driver (psycopg; PyMySQL standing in for mysqlclient). The 100,000-entry tables are filled in bulk, ours
through ``set_many``, Django's with one ``INSERT`` of rows as its ``set`` writes them (through its API
every write would count the whole table). ``set`` overwrites stored keys, so the tables keep their
size; ``DatabaseCache`` counts its table on each (``SELECT COUNT(*)``), we do not.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import pickle
import random
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from animedex_store.errors import ConnectionFailedError
from animedex_store.sql.sandbox import sandbox

from .measure import Result, Settings, Skipped, alternating_ops
from .servers import SERVER_URLS

__all__ = ["run", "GET_TARGET", "SET_TARGETS"]

#: A get hit costs at most what DatabaseCache's costs, on each engine.
GET_TARGET = 1.0
#: A set costs at most this much of DatabaseCache's: as much at 1,000 entries, half at 100,000.
SET_TARGETS = {1_000: 1.0, 100_000: 0.5}
SIZES = (1_000, 100_000)
QUICK_SIZES = (1_000, 5_000)
#: Keys timed per measurement (each ``repeats`` times), fewer where DatabaseCache counts 100,000 rows.
TIMED_KEYS = 200
TIMED_KEYS_AT_SCALE = 60
TIMEOUT = 3_600
_ENGINES = {"SQLite": None, **SERVER_URLS}


def _value(index: int) -> dict[str, Any]:
    """What a Django site caches: a small record (about 300 bytes pickled)."""
    return {"id": index, "title": f"Entry {index}", "score": 8.25, "tags": ["a", "b", "c"], "text": "x" * 200}


def run(settings: Settings, workdir: Path) -> list[Result | Skipped]:
    try:
        import django  # noqa: F401 - only to tell whether it is installed
    except ImportError:
        return [Skipped("Django cache get/set", "Django is not installed ([bench])")]
    sizes = QUICK_SIZES if settings.quick else SIZES
    ours, skipped = _databases()
    results: list[Result | Skipped] = list(skipped)
    try:
        for name, location in ours.items():
            results += _one_engine(name, location, sizes, settings)
    finally:
        from django.db import connections

        from animedex_store.integrations.django import close_repositories

        connections.close_all()
        close_repositories()
    return results


#: What the first run of this process set up (Django can be configured once): our LOCATION per engine,
#: the engines skipped, and what to close at exit (Django's connections, then the databases).
_SET_UP: list[tuple[dict[str, str], list[Skipped]]] = []
_AT_EXIT = contextlib.ExitStack()


def _databases() -> tuple[dict[str, str], list[Skipped]]:
    """Per engine, our LOCATION (Django configured with its own database beside it), made on the first
    run of the process and kept for the others (``--runs``), removed at exit."""
    if _SET_UP:
        return _SET_UP[0]
    atexit.register(_AT_EXIT.close)
    folder = Path(_AT_EXIT.enter_context(tempfile.TemporaryDirectory(prefix="animedex-bench-django-")))
    ours: dict[str, str] = {}
    theirs: dict[str, str] = {}  # where Django's table goes
    skipped = []
    for name, url in _ENGINES.items():
        if url is None:
            ours[name], theirs[name] = str(folder / "store-cache.sqlite"), str(folder / "database-cache.sqlite")
            continue
        try:
            ours[name], theirs[name] = _AT_EXIT.enter_context(sandbox(url)), _AT_EXIT.enter_context(sandbox(url))
        except ConnectionFailedError as exc:
            skipped.append(Skipped(f"Django cache on {name}", " ".join(str(exc).split())))
    _configure_django(theirs)
    from django.db import connections

    _AT_EXIT.callback(connections.close_all)  # before the databases are dropped (callbacks run last first)
    _SET_UP.append((ours, skipped))
    return ours, skipped


def _alias(engine: str) -> str:
    return engine.lower()


def _table(engine: str) -> str:
    return f"django_cache_{_alias(engine)}"


class _EngineRouter:
    """Each engine's DatabaseCache reads and writes the database of its engine (by its table's name)."""

    def _alias_of(self, model: Any) -> str | None:
        table = getattr(model._meta, "db_table", "")
        return table[len("django_cache_") :] if table.startswith("django_cache_") else None

    def db_for_read(self, model: Any, **_hints: Any) -> str | None:
        return self._alias_of(model)

    db_for_write = db_for_read

    def allow_migrate(self, db: str, _app_label: str, **hints: Any) -> bool | None:
        model = hints.get("model")
        return None if model is None else self._alias_of(model) == db


def _database(engine: str, location: str) -> dict[str, Any]:
    """Django's setting for the database at ``location`` (a SQLite path, or a sandbox's URL)."""
    if engine == "SQLite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": location}
    url = make_url(location)
    setting = {"NAME": url.database, "USER": url.username or "", "PASSWORD": url.password or ""}
    setting.update(HOST=url.host or "", PORT=str(url.port or ""))
    if engine == "PostgreSQL":  # the sandbox's schema, and its synchronous_commit, as our URL has them
        return {"ENGINE": "django.db.backends.postgresql", **setting, "OPTIONS": {"options": url.query["options"]}}
    import pymysql

    pymysql.install_as_MySQLdb()  # Django's MySQL backend is written for mysqlclient; the same driver as ours
    return {"ENGINE": "django.db.backends.mysql", **setting, "OPTIONS": {"charset": "utf8mb4"}}


def _configure_django(locations: dict[str, str]) -> None:
    import django
    from django.conf import settings
    from django.core.management import call_command

    settings.configure(
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
            **{_alias(name): _database(name, location) for name, location in locations.items()},
        },
        DATABASE_ROUTERS=[_EngineRouter()],
        CACHES={
            _alias(name): {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": _table(name)}
            for name in locations
        },
        USE_TZ=False,
    )
    django.setup()
    for name in locations:
        call_command("createcachetable", database=_alias(name), verbosity=0)


def _one_engine(engine: str, location: str, sizes: tuple[int, ...], settings: Settings) -> list[Result]:
    from django.core.cache.backends.db import DatabaseCache

    from animedex_store.integrations.django import StoreCache

    results = []
    for size in sizes:
        options = {"MAX_ENTRIES": 2 * size}
        ours = StoreCache(location, {"TIMEOUT": TIMEOUT, "OPTIONS": options})
        theirs = DatabaseCache(_table(engine), {"TIMEOUT": TIMEOUT, "OPTIONS": options})
        ours.clear()
        theirs.clear()
        keys = [f"entry:{index}" for index in range(size)]
        for start in range(0, size, 1_000):
            ours.set_many({key: _value(start + n) for n, key in enumerate(keys[start : start + 1_000])})
        _fill_database_cache(theirs, keys)
        timed = random.Random(size).sample(keys, min(size, TIMED_KEYS if size <= 1_000 else TIMED_KEYS_AT_SCALE))
        for cache in (ours, theirs):
            if cache.get(timed[0]) != _value(keys.index(timed[0])):
                raise RuntimeError(f"{engine}: {type(cache).__name__} does not read back what was stored")
        gets = alternating_ops({"ours": ours.get, "theirs": theirs.get}, timed, settings.repeats)
        sets = alternating_ops({"ours": _setter(ours), "theirs": _setter(theirs)}, timed, settings.repeats)
        label = f"Django cache on {engine}, {size:,} entries"
        baseline = "Django DatabaseCache"
        results += [
            Result(f"{label}: get hit", gets["ours"], baseline, gets["theirs"], GET_TARGET),
            Result(f"{label}: set", sets["ours"], baseline, sets["theirs"], SET_TARGETS.get(size)),
        ]
        ours.clear()
        theirs.clear()
    return results


def _setter(cache: Any) -> Callable[[str], None]:
    value = _value(-1)

    def set_one(key: str) -> None:
        cache.set(key, value)

    return set_one


def _fill_database_cache(cache: Any, keys: list[str]) -> None:
    """``keys`` in ``cache``'s table as its ``set`` writes them (base64 of the pickle, the expiry in
    whole seconds), in one transaction: through its API every write would count the table first."""
    from django.db import connections, router, transaction

    alias = router.db_for_write(cache.cache_model_class)
    connection = connections[alias]
    quote = connection.ops.quote_name
    expires_at = (datetime.now() + timedelta(seconds=TIMEOUT)).replace(microsecond=0)
    expires = connection.ops.adapt_datetimefield_value(expires_at)

    def stored(value: Any) -> str:
        return base64.b64encode(pickle.dumps(value, cache.pickle_protocol)).decode("latin1")

    rows = [(cache.make_key(key), stored(_value(index)), expires) for index, key in enumerate(keys)]
    columns = ", ".join(quote(column) for column in ("cache_key", "value", "expires"))
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        for start in range(0, len(rows), 1_000):
            cursor.executemany(
                f"INSERT INTO {quote(cache._table)} ({columns}) VALUES (%s, %s, %s)",  # noqa: S608 - our table's name
                rows[start : start + 1_000],
            )
