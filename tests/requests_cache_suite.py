"""requests-cache's own test suite, from the sdist of the installed release, importable here.

requests-cache ships its tests in its sdist only (``tests/``, a package whose
modules import each other as ``tests.conftest``, ``tests.integration...``). At
test time :mod:`peer_sdist` unpacks them from the installed release's sdist (or
``$ANIMEDEX_STORE_RC_SDIST``), and this module puts that directory first on
``sys.path``. None of its files is copied into this project.

``USE_PYTEST_HTTPBIN=true`` is set before requests-cache's conftest is imported:
its ``httpbin_wrapper`` fixture then serves httpbin locally through
pytest-httpbin, so the suite runs offline. Import this module before any
``tests.*`` import. When the sdist cannot be had, the importing module is
skipped, or fails under ``CI=true``.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path

import requests_cache  # noqa: F401 - the installed package, bound before an sdist root goes on sys.path
from peer_sdist import import_first, peer_tests

__all__ = ["RELEASE", "ROOT"]

RELEASE = version("requests-cache")
SDIST_ENV_VAR = "ANIMEDEX_STORE_RC_SDIST"
_MARKER = Path("tests") / "integration" / "base_cache_test.py"

ROOT = peer_tests("requests-cache", RELEASE, marker=_MARKER, env_var=SDIST_ENV_VAR)
import_first(ROOT, "tests", rewrite=("integration", "conftest"))
# requests-cache's conftest reads this at import: its httpbin_wrapper then serves httpbin through pytest-httpbin.
os.environ["USE_PYTEST_HTTPBIN"] = "true"
