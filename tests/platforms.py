"""Skip markers for tests that need what only POSIX systems have.

The package is portable by construction (Windows and macOS are not run here);
these mark the tests whose mechanism itself is POSIX-only, so that they skip
with the reason elsewhere instead of failing or breaking collection.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys

import pytest

#: File modes (0600/0700, umask, chmod to make a file or directory read-only) are POSIX-only.
posix_file_modes = pytest.mark.skipif(sys.platform == "win32", reason="file modes and umask are POSIX-only")
#: Children started with ``fork`` (start within milliseconds, no re-import).
needs_fork = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)
#: ``kill -9`` of a child process.
needs_sigkill = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals (SIGKILL)")
#: A pseudo-terminal (the ``pty`` module).
needs_pty = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal (pty)")
