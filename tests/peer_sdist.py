"""A peer library's own tests, from the sdist of its installed release, unpacked once per machine.

Peer libraries (requests-cache, hishel, aiohttp-client-cache) ship their tests
in their sdist only. :func:`peer_tests` downloads that sdist with pip (``pip
download --no-deps --no-binary :all: <project>==<release>``; or takes the file
named by an environment variable), unpacks its tests folder (``tests/``, or
aiohttp-client-cache's ``test/``) into a cache directory named after the release
and the archive's hash, and returns that directory. None of the
peer's files is copied into this project. When the sdist cannot be had, the
importing module is skipped, or fails under ``CI=true``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

__all__ = ["peer_tests", "PIP_TIMEOUT_SECONDS"]

PIP_TIMEOUT_SECONDS = 120


def _unavailable(project: str, message: str) -> None:
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"{message}; CI=true requires {project}'s own tests")
    pytest.skip(message, allow_module_level=True)


def _download(project: str, release: str, cache: Path, env_var: str) -> Path:
    given = os.environ.get(env_var)
    if given:
        return Path(given)
    cached = cache / "sdist" / f"{project}-{release}.tar.gz"
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    # Into a directory of this process's own, then moved: parallel workers may download at once.
    with tempfile.TemporaryDirectory(prefix="download-", dir=cached.parent) as directory:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet"]
        command += ["--dest", directory, f"{project}=={release}"]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            _unavailable(project, f"pip download of the {project} {release} sdist took over {PIP_TIMEOUT_SECONDS} s")
        if result.returncode != 0:
            why = result.stderr.strip()[-300:]
            _unavailable(project, f"pip could not download the {project} {release} sdist: {why}")
        (downloaded,) = Path(directory).glob("*.tar.gz")
        os.replace(downloaded, cached)
    return cached


def _unpack(sdist: Path, release: str, cache: Path, marker: Path) -> Path:
    """Only the tests folder of ``sdist`` (``marker``'s first part: ``tests/``, or aiohttp-client-cache's
    ``test/``), unpacked once per archive (by its hash)."""
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()[:16]
    root = cache / f"tests-{release}-{digest}"
    if (root / marker).is_file():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="unpacking-", dir=cache))
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        folder = f"{top}/{marker.parts[0]}/"
        members = [m for m in archive.getmembers() if m.name.startswith(folder) and (m.isfile() or m.isdir())]
        for member in members:
            member.name = member.name[len(top) + 1 :]
        # The 'data' filter refuses links, absolute paths and '..' (Python 3.9.17+, 3.10.12+, 3.11.4+).
        options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(work, members=members, **options)  # noqa: S202 - the tests' files and folders only
    try:
        os.replace(work, root)  # atomic; another worker unpacking at the same time wins harmlessly
    except OSError:
        shutil.rmtree(work, ignore_errors=True)
    return root


def peer_tests(project: str, release: str, *, marker: Path, env_var: str) -> Path:
    """The directory holding the tests folder of ``project`` ``release``'s sdist (``marker``, a path
    in it, names the folder and shows it complete); ``$env_var`` may name the sdist instead of
    downloading it."""
    cache = Path(tempfile.gettempdir()) / f"animedex-store-{project}-tests"
    return _unpack(_download(project, release, cache, env_var), release, cache, marker)


def import_first(root: Path, package: str, *, rewrite: tuple[str, ...]) -> None:
    """Make ``package`` under ``root`` (a peer's tests) the one ``import package`` finds, ahead of any
    other of that name, with pytest's assertion rewriting for its modules ``rewrite``; ``RuntimeError``
    if another ``package`` is imported already."""
    imported = sys.modules.get(package)
    if imported is not None and Path(getattr(imported, "__file__", None) or "/").parent != root / package:
        raise RuntimeError(f"a module named {package!r} is imported already ({imported!r}): the peer's would clash")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    pytest.register_assert_rewrite(*(f"{package}.{module}" for module in rewrite))
