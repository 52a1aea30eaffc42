"""The wheel carries the revision scripts, and an installed (non-editable) wheel migrates with them.

A wheel is built from the checkout and installed, with its dependencies, into a
fresh venv. A new interpreter of that venv, isolated and outside the checkout,
creates a database, adopts a file left by the seed's v1 and round-trips rows,
while an audit hook records every file it opens: the revision scripts must come
from the installed ``animedex_store/_alembic`` and nothing from the checkout.

What ships is what CI checks: every Python file of the wheel is among the files
``.ci/run`` type-checks (``[tool.mypy] files``) and lints (``ruff check .``), and
``mypy --strict -p animedex_store`` is clean on the package as installed.

Building and installing need pip and the package index; when they cannot run,
the test is skipped with pip's words, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sourcefiles import REPO_ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from animedex_store.migrations.revisions import HEAD_REVISION
from benchmarks.seed_baseline import SEED_SCHEMA_V1

#: Building and installing the wheel takes a minute: .ci/run runs these on the default Python and the floors.
pytestmark = pytest.mark.slow

PACKAGED_SCRIPTS = "animedex_store/_alembic"
# Seconds a pip step may take: an unreachable index must not hang the suite.
PIP_TIMEOUT_SECONDS = 60
# In the environment, not on the command line, so that the pip an isolated build
# runs to fetch the build backend gets them too (its default retries take ~45 s).
PIP_ENVIRONMENT = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PIP_TIMEOUT": "10", "PIP_RETRIES": "1"}

CHILD = """
import contextlib, json, os, sqlite3, sys
from pathlib import Path
from typing import NoReturn

work, checkout, seed_v1_ddl = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
opened = set()

def _record(event, args):
    if event == "open" and isinstance(args[0], str):
        opened.add(os.path.abspath(args[0]))

sys.addaudithook(_record)

import animedex_store
from animedex_store import CacheRepository
from animedex_store.migrations import revisions

def revision(path):
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT version_num FROM alembic_version").fetchall()

fresh = work / "fresh.sqlite"
with CacheRepository(fresh) as repository:
    repository.set("anilist", "query", b"fresh", ttl_seconds=3600)
    fresh_payload = repository.get("anilist", "query")

legacy = work / "seed-v1.sqlite"
with contextlib.closing(sqlite3.connect(legacy)) as db:
    db.executescript(seed_v1_ddl)
    db.execute(
        "INSERT INTO cache_rows (backend, signature, payload, expires_at) VALUES (?, ?, ?, ?)",
        ("jikan", "old", b"legacy", 4102444800),  # 2100-01-01: not expired
    )
    db.commit()
with CacheRepository(legacy) as repository:
    legacy_payload = repository.get("jikan", "old")
    repository.set("jikan", "new", b"written", ttl_seconds=3600)
    written_payload = repository.get("jikan", "new")

print(json.dumps({
    "package": animedex_store.__file__,
    "script_location": str(revisions.script_location()),
    "revisions": {"fresh": revision(fresh), "seed-v1": revision(legacy)},
    "payloads": [p.decode() for p in (fresh_payload, legacy_payload, written_payload)],
    "opened": sorted(opened),
    "checkout_on_path": any(os.path.abspath(entry or ".") == checkout for entry in sys.path),
}))
"""


def _cannot_run(what: str, detail: str) -> NoReturn:
    """Fail in CI, skip elsewhere: a CI run must show the wheel was really built and installed."""
    message = f"{what} could not run: {detail.strip().splitlines()[-1] if detail.strip() else 'no output'}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(message)


def _pip(python: str | Path, args: list[str], what: str) -> None:
    """Run ``python -m pip`` with ``args``; skip (fail in CI) when it does not succeed in time."""
    try:
        result = subprocess.run(
            [str(python), "-m", "pip", *args, "--quiet"],
            env={**os.environ, **PIP_ENVIRONMENT},
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        _cannot_run(what, f"no answer within {PIP_TIMEOUT_SECONDS} s")
    if result.returncode != 0:
        _cannot_run(what, result.stderr or result.stdout)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a fresh venv with the wheel installed: its dependencies, its optional ones
    (requests-cache, zstd, hishel, aiohttp-client-cache and CacheControl where the Python takes them) and pytest,
    which the plugin imports."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=60)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # --no-compile: a child then reads the revision scripts themselves, which an audit hook sees.
    requirement = f"animedex-store[requests-cache,zstd,hishel,aiohttp-client-cache,cachecontrol] @ {wheel.as_uri()}"
    _pip(python, ["install", "--no-compile", requirement, "pytest"], "pip install of the wheel and its dependencies")
    return python


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from the checkout, as ``pip wheel`` builds it (isolated build backend)."""
    out = tmp_path_factory.mktemp("wheel")
    _pip(sys.executable, ["wheel", "--no-deps", "--wheel-dir", str(out), str(REPO_ROOT)], "pip wheel")
    (built,) = out.glob("animedex_store-*.whl")
    return built


def _source_scripts() -> dict[str, bytes]:
    """The checkout's revision scripts, keyed by their path inside ``alembic/``."""
    alembic_dir = REPO_ROOT / "alembic"
    files = [alembic_dir / "env.py", alembic_dir / "script.py.mako", *sorted(alembic_dir.glob("versions/*.py"))]
    assert len(files) > 3, f"no revision scripts under {alembic_dir}"
    return {file.relative_to(alembic_dir).as_posix(): file.read_bytes() for file in files}


def test_wheel_ships_every_revision_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        shipped = {
            name.removeprefix(f"{PACKAGED_SCRIPTS}/"): archive.read(name)
            for name in archive.namelist()
            if name.startswith(f"{PACKAGED_SCRIPTS}/")
        }
    source = _source_scripts()
    assert sorted(shipped) == sorted(source)
    assert [name for name in source if shipped[name] != source[name]] == [], "the wheel's copy differs from alembic/"


def test_wheel_ships_the_py_typed_marker(wheel: Path) -> None:
    """PEP 561: type checkers read the package's annotations only when ``py.typed`` is installed with it."""
    with zipfile.ZipFile(wheel) as archive:
        assert "animedex_store/py.typed" in archive.namelist()


def test_installed_wheel_migrates_from_its_own_scripts(installed: Path, tmp_path: Path) -> None:
    python, venv = installed, installed.parent.parent
    work = tmp_path / "work"
    work.mkdir()

    # -I: no PYTHONPATH, user site or current directory on sys.path; -B: no bytecode written.
    child = subprocess.run(
        [str(python), "-I", "-B", "-c", CHILD, str(work), str(REPO_ROOT), SEED_SCHEMA_V1],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)

    package_dir = Path(report["package"]).resolve().parent
    assert venv.resolve() in package_dir.parents, f"animedex_store imported from {package_dir}"
    assert not report["checkout_on_path"]
    packaged = package_dir / "_alembic"
    assert Path(report["script_location"]).resolve() == packaged
    assert report["revisions"] == {"fresh": [[HEAD_REVISION]], "seed-v1": [[HEAD_REVISION]]}
    assert report["payloads"] == ["fresh", "legacy", "written"]

    opened = [Path(path).resolve() for path in report["opened"]]
    assert not [path for path in opened if REPO_ROOT in path.parents], "the child read files of the checkout"
    read_scripts = {path.relative_to(packaged).as_posix() for path in opened if packaged in path.parents}
    assert {name for name in _source_scripts() if name.endswith(".py")} <= read_scripts


def _shipped_sources(wheel: Path) -> list[str]:
    """The checkout path of every Python file in the wheel (``animedex_store/_alembic`` is ``alembic/``)."""
    with zipfile.ZipFile(wheel) as archive:
        names = [name for name in archive.namelist() if name.endswith(".py")]
    sources = sorted(name.replace(f"{PACKAGED_SCRIPTS}/", "alembic/", 1) for name in names)
    assert len(sources) > 20 and "alembic/env.py" in sources, sources
    return sources


def _project_settings() -> dict[str, Any]:
    with REPO_ROOT.joinpath("pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def test_ci_checks_every_python_file_the_wheel_ships(wheel: Path) -> None:
    shipped = _shipped_sources(wheel)
    assert [source for source in shipped if not REPO_ROOT.joinpath(source).is_file()] == []

    settings = _project_settings()["tool"]
    type_checked: set[str] = set()
    for entry in settings["mypy"]["files"]:
        path = REPO_ROOT / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        type_checked.update(file.relative_to(REPO_ROOT).as_posix() for file in files)
    assert settings["mypy"]["strict"] is True
    assert [source for source in shipped if source not in type_checked] == []

    # ruff check's own list of what `ruff check .` reads; ruff format reads the same unless told otherwise.
    listed = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--show-files", "."],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    linted = {Path(line).resolve().relative_to(REPO_ROOT).as_posix() for line in listed if line.endswith(".py")}
    assert [source for source in shipped if source not in linted] == []
    assert "exclude" not in settings["ruff"].get("format", {})


def test_mypy_strict_is_clean_on_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    """As users get it: the package and its ``_alembic`` scripts, type-checked where pip put them."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--verbose"]
        + ["--python-executable", str(installed), "-p", "animedex_store"],
        cwd=tmp_path,  # not the checkout: mypy must find the installed package
        # ...and no PYTHONPATH (a checkout on it would be checked instead of the wheel, without _alembic)
        env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout
    checked = {line.split("module='")[1].split("'")[0] for line in result.stderr.splitlines() if "module='" in line}
    assert {"animedex_store._alembic.env", "animedex_store._alembic.versions.0001_seed_v1"} <= checked
