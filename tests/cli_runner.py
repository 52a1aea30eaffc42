"""A click ``CliRunner`` that keeps stderr apart from stdout on every click the package supports."""

from __future__ import annotations

from click.testing import CliRunner


def cli_runner() -> CliRunner:
    """``result.stdout`` and ``result.stderr`` apart: click 8.2+ always does, 8.1 (Python 3.9's) needs asking."""
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 removed the argument
        return CliRunner()
