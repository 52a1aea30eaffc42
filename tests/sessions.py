"""The server sessions of one sandbox, counted from the server's side: what leak tests look at.

PostgreSQL: the sandbox's connections carry its name as ``application_name``
(:func:`tagged` adds it to the URL's ``options``), counted in ``pg_stat_activity``.
MariaDB: connections into the sandbox's database, counted in
``information_schema.processlist``. Counting runs on the server's own URL, so
it is never one of the sessions counted.
"""

from __future__ import annotations

import time

from conftest import SERVER_URLS
from rowdump import plain_engine
from sqlalchemy import make_url, text

__all__ = ["tagged", "sessions", "sessions_settle"]

#: How long a count may take to reach what is expected: the server ends a session a moment after
#: its client hangs up.
SETTLE_SECONDS = 20.0


def _name(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return parsed.query["options"].split("search_path=")[1].split()[0]
    assert parsed.database is not None
    return parsed.database


def tagged(url: str) -> str:
    """``url`` (a sandbox's) whose sessions :func:`sessions` can count."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    options = f"{parsed.query['options']} -capplication_name={_name(url)}"
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


def sessions(url: str) -> int:
    """How many sessions the server has open for the sandbox ``url`` (made with :func:`tagged`)."""
    backend = make_url(url).get_backend_name()
    base = SERVER_URLS["postgresql" if backend == "postgresql" else "mariadb"]
    engine = plain_engine(base)
    try:
        with engine.connect() as connection:
            if backend == "postgresql":
                query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
            else:
                query = "SELECT count(*) FROM information_schema.processlist WHERE db = :name"
            return int(connection.execute(text(query), {"name": _name(url)}).scalar_one())
    finally:
        engine.dispose()


def sessions_settle(url: str, expected: int) -> int:
    """The count once it is ``expected`` (polled, up to :data:`SETTLE_SECONDS`), else the last one."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        count = sessions(url)
        if count == expected or time.monotonic() > deadline:
            return count
        time.sleep(0.05)  # polling the server's count, not waiting for time to pass
