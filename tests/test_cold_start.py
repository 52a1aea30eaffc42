"""Opening an up-to-date SQLite file stays cheap: one query, and nothing imported that the fast path does not use.

Each check runs in a fresh interpreter, the only place an import can be seen not
to happen. (Alembic not being imported has its own test in ``test_migrations``.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fresh_interpreter import HEAVY

from animedex_store import CacheRepository

PROBE = """
import json, sqlite3, sys

statements = []
_connect = sqlite3.connect

def _traced_connect(*args, **kwargs):
    connection = _connect(*args, **kwargs)
    connection.set_trace_callback(statements.append)
    return connection

sqlite3.connect = _traced_connect  # every connection, whether SQLAlchemy opens it or not

from animedex_store import CacheRepository

repository = CacheRepository(sys.argv[1])
opening = list(statements)
repository.get("anilist", "query")
heavy = sys.argv[2].split(",")
imported = sorted(name for name in sys.modules if any(name == h or name.startswith(h + ".") for h in heavy))
print(json.dumps({"opening": opening, "imported": imported}))
"""
#: Modules the SQLite fast path has no use for: SQLAlchemy and Alembic (README, "Start-up: what loads when"), validation
#: of models, the CLI, the default-path lookup (a path was given) and the server drivers.
NOT_ON_THE_FAST_PATH = [*HEAVY, "animedex_store.cli", "platformdirs", "psycopg", "pymysql"]


def _probe(path: Path, modules: list[str]) -> dict[str, list[str]]:
    """Open ``path`` and read a key in a new interpreter: the statements the open ran,
    and which of ``modules`` were imported by then."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), ",".join(modules)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_opening_an_up_to_date_file_costs_one_query_and_no_heavy_imports(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    CacheRepository(path).close()
    probe = _probe(path, NOT_ON_THE_FAST_PATH)
    queries = [sql for sql in probe["opening"] if not sql.startswith("PRAGMA")]
    assert queries == ["SELECT version_num FROM alembic_version"]
    assert probe["imported"] == []


def test_the_probe_sees_a_migration_and_an_import(tmp_path: Path) -> None:
    """The same probe on a new file: the open migrates (many statements) and the
    probe reports a module that is imported, so the checks above can fail."""
    probe = _probe(tmp_path / "new.sqlite", NOT_ON_THE_FAST_PATH)
    assert len([sql for sql in probe["opening"] if not sql.startswith("PRAGMA")]) > 1
    assert {"sqlalchemy", "alembic"} <= set(probe["imported"])
