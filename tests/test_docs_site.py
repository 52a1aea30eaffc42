"""The documentation site: it builds with no warning, documents every public name, and renders.

The site is built as ``.ci/run`` builds it (``python -m sphinx -W --keep-going -n``: any warning,
an unresolved cross-reference included, fails), once: ``.ci/run`` builds it before the tests and
names the result in ``$ANIMEDEX_STORE_DOCS_SITE``; without that variable the first test here
that needs the site builds it into a directory shared by the run's workers. Without Sphinx (the
``docs`` extra) the tests skip with the reason, and so does the render test without Chromium;
under ``CI=true`` both fail instead.

What "every public name" is comes from the code (``docs/_ext/public_api.py``, which also drives
the generation): every name in ``animedex_store.__all__``, every public method of both
repository classes, every error, the seed drop-in's ``SqliteCache``, and every public class of
every module in ``animedex_store/integrations/``. Each must be an object in the built site's
inventory (``objects.inv``), that is, an anchor of the API reference.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sourcefiles import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "docs" / "_ext"))
import public_api  # noqa: E402 - docs/_ext is importable from here on

SITE_ENV_VAR = "ANIMEDEX_STORE_DOCS_SITE"
BUILD_TIMEOUT_SECONDS = 300
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_TIMEOUT_SECONDS = 60
#: The flags Chromium needs headless as root, with nothing fetched and nothing of the user's read.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable(reason: str) -> None:
    """Skip, or under ``CI=true`` fail: CI must check the site."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true)")
    pytest.skip(reason)


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """One worker at a time (POSIX; elsewhere each worker may build on its own)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_site(destination: Path) -> subprocess.CompletedProcess[str]:
    """``python -m sphinx -W --keep-going -n -b html docs DESTINATION``, as ``.ci/run`` runs it."""
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html"]
    command += ["-d", str(destination.parent / "doctrees"), "docs", str(destination)]
    return subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS, check=False
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built site's directory: ``$ANIMEDEX_STORE_DOCS_SITE``, or built once for this run."""
    given = os.environ.get(SITE_ENV_VAR)
    if given:
        path = Path(given)
        assert (path / "index.html").is_file(), f"${SITE_ENV_VAR}={given} holds no built site"
        return path
    if importlib.util.find_spec("sphinx") is None or importlib.util.find_spec("myst_parser") is None:
        _unavailable("the docs extra is not installed (pip install -e '.[docs]'), so the site cannot be built")
    basetemp = tmp_path_factory.getbasetemp()
    # Under xdist each worker's basetemp is in one directory of this run's own, shared by the workers.
    shared = basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp
    destination = shared / "docs-site" / "html"
    with _exclusive(shared / "docs-site.lock"):
        if not (destination / "index.html").is_file():
            result = build_site(destination)
            if result.returncode != 0:
                shutil.rmtree(destination, ignore_errors=True)
            assert result.returncode == 0, f"the site does not build cleanly:\n{result.stdout}\n{result.stderr}"
    return destination


def inventory(site: Path) -> set[str]:
    """The objects the site documents, from its ``objects.inv`` (Sphinx's inventory format, version 2)."""
    raw = (site / "objects.inv").read_bytes()
    header_end = 0
    for _ in range(4):  # four header lines, then the zlib-compressed entries
        header_end = raw.index(b"\n", header_end) + 1
    assert raw.startswith(b"# Sphinx inventory version 2")
    entries = zlib.decompress(raw[header_end:]).decode("utf-8").splitlines()
    return {line.split(" ", 1)[0] for line in entries if re.match(r"\S+ py:\w+ ", line)}


def expected_anchors() -> list[str]:
    names = [f"animedex_store.{name}" for name in public_api.package_names()]
    for repository in public_api.REPOSITORIES:
        names += [f"animedex_store.{repository}.{method}" for method in public_api.public_methods(repository)]
    names += [f"animedex_store.errors.{error.__name__}" for error in public_api.store_errors()]
    names += [
        "animedex_store.sqlite.SqliteCache",
        "animedex_store.sqlite.selftest",
        "animedex_store.testing.FrozenClock",
    ]
    for module in public_api.integration_modules():
        try:
            names += [f"{module}.{name}" for name in public_api.public_classes(module)]
        except ImportError:  # its library is not installed on this Python (the site was built where it is)
            names.append(module)
    return names


def test_every_public_name_has_an_anchor_in_the_api_reference(site: Path) -> None:
    documented = inventory(site)
    expected = expected_anchors()
    assert len(expected) > 60  # the names were found: both repositories' methods, the errors
    assert [name for name in expected if name not in documented] == []


def test_the_generated_pages_hold_what_the_code_says(site: Path) -> None:
    """The revisions table ends at the head revision, the CLI reference has every command, the
    errors table every error (the failure that issue 28 found: a table typed by hand, stopping at 0005)."""
    migrations = (site / "migrations.html").read_text(encoding="utf-8")
    head = public_api.revisions()[-1]["revision"]
    assert re.search(rf"The head revision is <code[^>]*><span[^>]*>{head}</span>", migrations)
    assert all(revision["file"] in migrations for revision in public_api.revisions())
    cli = (site / "cli.html").read_text(encoding="utf-8")
    from animedex_store.cli import cli as group

    commands = sorted(group.commands)  # type: ignore[attr-defined]
    assert len(commands) >= 10
    assert [command for command in commands if f'id="cli-animedex-store-{command}"' not in cli] == []
    errors = (site / "errors.html").read_text(encoding="utf-8")
    anchors = [f'id="animedex_store.errors.{error.__name__}"' for error in public_api.store_errors()]
    assert [anchor for anchor in anchors if anchor not in errors] == []


def chromium_dom(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, as headless Chromium prints it."""
    command = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_SECONDS, check=False)
    assert result.returncode == 0, f"chromium failed on {page}:\n{result.stderr[-2000:]}"
    return result.stdout


@pytest.mark.parametrize(
    ("page", "content"),
    [("index.html", "Getting started"), ("api.html", 'id="animedex_store.CacheRepository.get_or_fetch"')],
)
def test_chromium_renders_the_pages_with_navigation_and_a_search_box(
    site: Path, page: str, content: str, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).is_file():
        _unavailable(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    dom = chromium_dom(site / page, tmp_path / "profile")
    assert '<body data-theme="' in dom, "the theme's scripts did not run"  # furo's script sets it
    assert 'class="sidebar-tree"' in dom and 'href="getting-started.html"' in dom, "no navigation"
    assert re.search(r'<form class="sidebar-search-container"[^>]*action="search.html"', dom)
    assert re.search(r'<input class="sidebar-search"[^>]*name="q"', dom), "no search box"
    assert content in dom
