"""requests-cache's own test suite, from the sdist of the installed release, importable here.

requests-cache ships its tests in its sdist only (``tests/``, a package whose
modules import each other as ``tests.conftest``, ``tests.integration...``). At
test time this module downloads that sdist with pip (``pip download --no-deps
--no-binary :all: requests-cache==<installed version>``; or takes
``$ANIMEDEX_STORE_RC_SDIST``), unpacks its ``tests/`` into a cache directory
named after the release and the archive's hash, and puts that directory first
on ``sys.path``. None of its files is copied into this project.

``USE_PYTEST_HTTPBIN=true`` is set before requests-cache's conftest is imported:
its ``httpbin_wrapper`` fixture then serves httpbin locally through
pytest-httpbin, so the suite runs offline. Import this module before any
``tests.*`` import. When the sdist cannot be had, the importing module is
skipped, or fails under ``CI=true``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

import pytest
import requests_cache  # noqa: F401 - the installed package, bound before an sdist root goes on sys.path

__all__ = ["RELEASE", "ROOT"]

RELEASE = version("requests-cache")
SDIST_ENV_VAR = "ANIMEDEX_STORE_RC_SDIST"
_MARKER = Path("tests") / "integration" / "base_cache_test.py"
_CACHE = Path(tempfile.gettempdir()) / "animedex-store-requests-cache-tests"
PIP_TIMEOUT_SECONDS = 120


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"{message}; CI=true requires requests-cache's own tests")
    pytest.skip(message, allow_module_level=True)


def _download() -> Path:
    given = os.environ.get(SDIST_ENV_VAR)
    if given:
        return Path(given)
    cached = _CACHE / "sdist" / f"requests-cache-{RELEASE}.tar.gz"
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    # Into a directory of this process's own, then moved: parallel workers may download at once.
    with tempfile.TemporaryDirectory(prefix="download-", dir=cached.parent) as directory:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet"]
        command += ["--dest", directory, f"requests-cache=={RELEASE}"]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            _unavailable(f"pip download of the requests-cache {RELEASE} sdist took over {PIP_TIMEOUT_SECONDS} s")
        if result.returncode != 0:
            _unavailable(f"pip could not download the requests-cache {RELEASE} sdist: {result.stderr.strip()[-300:]}")
        (downloaded,) = Path(directory).glob("*.tar.gz")
        os.replace(downloaded, cached)
    return cached


def _unpack(sdist: Path) -> Path:
    """Only ``<release>/tests/`` of ``sdist``, unpacked once per archive (by its hash)."""
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()[:16]
    root = _CACHE / f"tests-{RELEASE}-{digest}"
    if (root / _MARKER).is_file():
        return root
    _CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="unpacking-", dir=_CACHE))
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        members = [m for m in archive.getmembers() if m.name.startswith(f"{top}/tests/") and (m.isfile() or m.isdir())]
        for member in members:
            member.name = member.name[len(top) + 1 :]
        # The 'data' filter refuses links, absolute paths and '..' (Python 3.9.17+, 3.10.12+, 3.11.4+).
        options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(work, members=members, **options)  # noqa: S202 - tests/ files and folders only
    try:
        os.replace(work, root)  # atomic; another worker unpacking at the same time wins harmlessly
    except OSError:
        shutil.rmtree(work, ignore_errors=True)
    return root


ROOT = _unpack(_download())
_imported = sys.modules.get("tests")
if _imported is not None and Path(getattr(_imported, "__file__", None) or "/").parent != ROOT / "tests":
    raise RuntimeError(f"a module named 'tests' is imported already ({_imported!r}): requests-cache's would clash")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# requests-cache's conftest reads this at import: its httpbin_wrapper then serves httpbin through pytest-httpbin.
os.environ["USE_PYTEST_HTTPBIN"] = "true"
pytest.register_assert_rewrite("tests.integration", "tests.conftest")
