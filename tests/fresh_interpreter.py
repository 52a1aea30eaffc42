"""Run a snippet in a new interpreter and see which heavy packages it imported (README, "Start-up: what loads when").

An import can only be seen not to happen in a process that has imported
nothing yet: each check starts ``python -c`` with :data:`PRELUDE` in front of
its code. The snippet prints one JSON document as its last line of output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["HEAVY", "PRELUDE", "URL_ENV_VAR", "child_env", "run_fresh"]

#: Packages the SQLite fast path must not load, the async ones too (a module counts when its name is
#: one of these or starts with one of these plus ".").
HEAVY = ("sqlalchemy", "alembic", "pydantic", "click", "asyncio", "asyncpg", "asyncmy", "greenlet")
#: The environment variable naming the default target (README, "The API in 15 lines"), public.
URL_ENV_VAR = "ANIMEDEX_STORE_URL"
CHILD_TIMEOUT_SECONDS = 120

PRELUDE = f"""
import json, sys

HEAVY = {HEAVY!r}


def heavy_loaded():
    \"\"\"Which of HEAVY have a module in sys.modules now, sorted.\"\"\"
    names = list(sys.modules)
    return sorted(h for h in HEAVY if any(n == h or n.startswith(h + ".") for n in names))
"""


def child_env(**overrides: str) -> dict[str, str]:
    """This process's environment without ``$ANIMEDEX_STORE_URL`` (unless given), plus ``overrides``."""
    env = {key: value for key, value in os.environ.items() if key != URL_ENV_VAR}
    env.update(overrides)
    return env


def run_fresh(code: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> object:
    """Run :data:`PRELUDE` + ``code`` with ``args`` in a new interpreter started in ``cwd``
    (not the checkout, so nothing is imported from the current directory by accident);
    returns the JSON of its last line of output. A failing child fails the test with its stderr."""
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + code, *args],
        cwd=cwd,
        env=child_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, f"child failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.splitlines()[-1])
