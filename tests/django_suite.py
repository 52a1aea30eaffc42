"""Django's own cache tests, from the sdist of the installed release, run by Django's own ``tests/runtests.py``.

Django ships its test suite in its sdist only. :mod:`peer_sdist` unpacks the
installed release's ``tests/`` once per machine (or the sdist named by
``$ANIMEDEX_STORE_DJANGO_SDIST``). Each run gets a tree of its own beside it:
symlinks to every entry of that folder, except ``cache/`` (a folder of symlinks to
its files, plus our declaration ``django_runtests/tests_animedex_store.py``), and
copies of ``runtests.py`` (whose folder is the tree's root) and of our settings
``django_runtests/animedex_store_settings.py``. None of Django's files is copied
into this project, and none is changed.

:func:`run_django_tests` runs one label in one engine's setting: Django's
``default`` database (where its test models and the control's table live, a test
database of a generated name, created and dropped by runtests) and our ``LOCATION``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import django
from peer_sdist import peer_tests
from sqlalchemy.engine import make_url

from animedex_store.sql.sandbox import SANDBOX_PREFIX

__all__ = [
    "RELEASE",
    "OURS",
    "CONTROL",
    "DjangoRun",
    "database_setting",
    "expected_tests",
    "run_django_tests",
]

RELEASE = django.__version__
SDIST_ENV_VAR = "ANIMEDEX_STORE_DJANGO_SDIST"
_MARKER = Path("tests") / "cache" / "tests.py"
_OURS = Path(__file__).parent / "django_runtests"
#: The labels runtests runs: our declaration, and Django's own for its DatabaseCache (the control).
OURS = "cache.tests_animedex_store.StoreCacheTests"
CONTROL = "cache.tests.DBCacheTests"
RUN_TIMEOUT_SECONDS = 600
#: A test's line in runtests' verbose output: ``test_x (cache.tests.DBCacheTests.test_x) ... ok`` (before
#: Python 3.11 without the method's name in brackets; a docstring's first line may come before the dots).
_RESULT = re.compile(r"^(?P<test>test\w+) \([\w.]+\)(?:\n[^\n]*?)? \.\.\. (?P<outcome>ok|skipped|FAIL|ERROR)", re.M)


def _tree() -> Path:
    """A fresh run tree (see the module docstring); removed by the caller."""
    source = peer_tests("django", RELEASE, marker=_MARKER, env_var=SDIST_ENV_VAR) / "tests"
    root = Path(tempfile.mkdtemp(prefix="animedex-store-django-run-"))
    for entry in source.iterdir():
        if entry.name not in ("cache", "runtests.py"):
            (root / entry.name).symlink_to(entry)
    (root / "cache").mkdir()
    for entry in (source / "cache").iterdir():
        (root / "cache" / entry.name).symlink_to(entry)
    shutil.copy(_OURS / "tests_animedex_store.py", root / "cache")
    shutil.copy(_OURS / "animedex_store_settings.py", root)
    shutil.copy(source / "runtests.py", root)  # a copy: runtests.py takes its own folder as the tests' root
    return root


def database_setting(engine: str, url: str | None) -> dict[str, object]:
    """Django's ``DATABASES["default"]`` on ``engine``: SQLite in memory, or the server of ``url`` (a
    SQLAlchemy URL) with a test database of a generated name, which runtests creates and drops."""
    if engine == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3"}
    parsed = make_url(url or "")
    setting: dict[str, object] = {
        "NAME": parsed.database,
        "USER": parsed.username or "",
        "PASSWORD": parsed.password or "",
        "HOST": parsed.host or "",
        "PORT": str(parsed.port or ""),
        "TEST": {"NAME": f"{SANDBOX_PREFIX}django_{uuid.uuid4().hex[:12]}"},
    }
    if engine == "postgresql":
        return {"ENGINE": "django.db.backends.postgresql", **setting}
    # PyMySQL would negotiate TLS with the local server on every connection (conftest's SERVER_URLS).
    return {"ENGINE": "django.db.backends.mysql", **setting, "OPTIONS": {"charset": "utf8mb4", "ssl_disabled": True}}


@dataclass(frozen=True)
class DjangoRun:
    """What one runtests run reported: each test's outcome (``ok``, ``skipped``, ``FAIL``, ``ERROR``),
    its exit status and its output."""

    outcomes: dict[str, str]
    returncode: int
    output: str

    def count(self, outcome: str) -> int:
        return sum(1 for found in self.outcomes.values() if found == outcome)

    def summary(self) -> str:
        return ", ".join(f"{self.count(outcome)} {outcome}" for outcome in ("ok", "skipped", "FAIL", "ERROR"))


def run_django_tests(label: str, *, database: dict[str, object], location: str) -> DjangoRun:
    """Run ``label`` with Django's ``tests/runtests.py`` in one process, on ``database`` (Django's
    ``default``) with our cache at ``location``."""
    root = _tree()
    try:
        env = {
            **os.environ,
            "ANIMEDEX_STORE_DJANGO_DATABASE": json.dumps(database),
            "ANIMEDEX_STORE_DJANGO_LOCATION": location,
            "PYTHONWARNINGS": "",  # runtests sets its own warning filters
        }
        command = [sys.executable, str(root / "runtests.py"), "--settings=animedex_store_settings"]
        command += ["--parallel=1", "--noinput", "-v", "2", label]
        result = subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS, check=False
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    output = result.stdout + result.stderr
    outcomes = {found["test"]: found["outcome"] for found in _RESULT.finditer(output)}
    return DjangoRun(outcomes, result.returncode, output)


def expected_tests(*classes: str) -> set[str]:
    """The test methods of ``classes`` of Django's ``tests/cache/tests.py`` (inherited ones included
    when a class named after it is listed too), read from the source: what a run must report."""
    source = peer_tests("django", RELEASE, marker=_MARKER, env_var=SDIST_ENV_VAR) / _MARKER
    tree = ast.parse(source.read_text(encoding="utf-8"))
    methods = {
        node.name: {
            item.name
            for item in node.body
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name[:4] == "test"
        }
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }
    return set().union(*(methods[name] for name in classes))
