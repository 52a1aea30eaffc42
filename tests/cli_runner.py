"""Run the ``animedex-store`` click group in-process: a ``CliRunner`` that keeps stderr apart from
stdout on every click the package supports, and the checks every CLI test makes of a run.

The ``runner`` and ``cache_dir`` fixtures (``conftest.py``) give a runner whose default target is
under the test's ``tmp_path``."""

from __future__ import annotations

import json

from click.testing import CliRunner, Result

from animedex_store.cli import cli

__all__ = ["cli_runner", "invoke", "invoke_json", "assert_one_error_line"]


def cli_runner() -> CliRunner:
    """``result.stdout`` and ``result.stderr`` apart: click 8.2+ always does, 8.1 (Python 3.9's) needs asking."""
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 removed the argument
        return CliRunner()


def invoke(runner: CliRunner, *args: str, exit_code: int = 0) -> Result:
    """Run the CLI; check the exit code and that any failure was a clean exit, not a crash."""
    result = runner.invoke(cli, list(args))
    assert result.exit_code == exit_code, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def invoke_json(runner: CliRunner, *args: str, exit_code: int = 0) -> dict:
    return json.loads(invoke(runner, *args, "--json", exit_code=exit_code).stdout)


def assert_one_error_line(result: Result, *fragments: str) -> None:
    """Failures print exactly one line to stderr, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]
