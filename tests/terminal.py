"""Run the CLI with its stderr on a pseudo-terminal (POSIX), for tests of progress bars."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

__all__ = ["run_cli_on_a_terminal", "read_terminal"]


def run_cli_on_a_terminal(*arguments: str, timeout: float = 60) -> tuple[str, str]:
    """``animedex-store *arguments`` with stderr on a pseudo-terminal: ``(what the terminal showed,
    stdout)``; a non-zero exit fails the test."""
    import pty  # POSIX-only: imported here so that the modules using this collect everywhere

    terminal, child_side = pty.openpty()
    command = [sys.executable, "-c", "from animedex_store.cli import main; main()", *arguments]
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=child_side) as process:
        os.close(child_side)
        seen = read_terminal(terminal, deadline=time.monotonic() + timeout)
        assert process.stdout is not None
        stdout = process.stdout.read().decode()
        assert process.wait(timeout=timeout) == 0
    return seen, stdout


def read_terminal(terminal: int, deadline: float) -> str:
    """Everything written to the pseudo-terminal until the child closes it (or the deadline)."""
    chunks = []
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([terminal], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                break
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(terminal)
    return b"".join(chunks).decode(errors="replace")
