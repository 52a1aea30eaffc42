"""aiohttp-client-cache's own integration tests, from the sdist of the installed release, importable here.

aiohttp-client-cache ships its tests in its sdist only (``test/``, a package
whose modules import each other as ``test.conftest``, ``test.integration...``).
At test time :mod:`peer_sdist` unpacks them from the installed release's sdist
(or ``$ANIMEDEX_STORE_ACC_SDIST``), and this module puts that directory first on
``sys.path``, ahead of the standard library's own ``test`` package. None of its
files is copied into this project. Import this module before any ``test.*``
import. When the sdist cannot be had, the importing module is skipped, or fails
under ``CI=true``.

Its tests reach httpbin through ``test.conftest.httpbin()``, which reads
``$HTTPBIN_URL`` at call time, and its small ``test.server`` app through
``httpbin_custom()``, a fixed ``localhost:8181``: :func:`serve_httpbin` serves
both here, on free ports (:mod:`local_server`), and points both at them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import aiohttp_client_cache  # noqa: F401 - the installed package, bound before an sdist root goes on sys.path
import pytest
from local_server import serving
from peer_sdist import import_first, peer_tests

__all__ = ["RELEASE", "ROOT", "serve_httpbin"]

RELEASE = version("aiohttp-client-cache")
SDIST_ENV_VAR = "ANIMEDEX_STORE_ACC_SDIST"
_MARKER = Path("test") / "integration" / "base_backend_test.py"

ROOT = peer_tests("aiohttp-client-cache", RELEASE, marker=_MARKER, env_var=SDIST_ENV_VAR)
import_first(ROOT, "test", rewrite=("integration", "conftest"))  # before the standard library's `test`


@contextlib.contextmanager
def serve_httpbin() -> Iterator[str]:
    """httpbin and aiohttp-client-cache's ``test.server`` app, each on a free port of this machine, with
    ``test.conftest.httpbin()`` and the backend tests' ``httpbin_custom()`` pointing at them; yields
    httpbin's URL."""
    from httpbin import app as httpbin_app
    from test.integration import base_backend_test
    from test.server import app as custom_app

    with serving(httpbin_app) as httpbin_url, serving(custom_app) as custom_url, pytest.MonkeyPatch.context() as patch:
        patch.setenv("HTTPBIN_URL", httpbin_url)
        # Its only caller looks the name up at call time; upstream serves the app on a fixed port.
        patch.setattr(base_backend_test, "httpbin_custom", lambda path="": custom_url + path)
        yield httpbin_url
