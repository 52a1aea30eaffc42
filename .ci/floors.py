"""Print the declared lower bound of every runtime dependency as a pip constraint.

pyproject.toml is the one source of truth: ``sqlalchemy>=2.0.30`` becomes
``sqlalchemy==2.0.30``. CI installs the package with these constraints on the
oldest supported Python to prove the floors true.

    python .ci/floors.py > floors.txt && pip install -c floors.txt -e '.[test]'
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def floors(pyproject: Path = PYPROJECT) -> list[str]:
    dependencies = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    pins = []
    for requirement in dependencies:
        match = re.fullmatch(r"\s*([A-Za-z0-9._-]+)(?:\[[^]]*\])?\s*>=\s*([0-9][0-9A-Za-z.]*)\s*(?:,.*)?", requirement)
        if match is None:
            sys.exit(f"floors: {requirement!r} has no '>=' lower bound")
        pins.append(f"{match[1]}=={match[2]}")
    return pins


if __name__ == "__main__":
    print("\n".join(floors()))
