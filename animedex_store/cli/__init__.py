"""``animedex-store``: the command line, a click group animedex can mount as ``animedex cache``.

:mod:`.group` holds the group and what every command shares; :mod:`.rows` and
:mod:`.maintenance` register the commands; :mod:`.selftest` holds the checks
behind ``animedex-store selftest``.
"""

from . import maintenance, rows  # noqa: F401 - importing them registers their commands
from .group import cli, main

__all__ = ["cli", "main"]
