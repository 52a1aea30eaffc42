"""Read what a child process writes to a pseudo-terminal (POSIX), for tests of progress bars."""

from __future__ import annotations

import os
import select
import time

__all__ = ["read_terminal"]


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
