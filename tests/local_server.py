"""A WSGI app served on this machine for the HTTP-cache tests: werkzeug's threaded server.

pytest-httpbin's server is one thread behind a listen queue of 5 that closes
every connection: 100 connections opened at once (aiohttp-client-cache's
``test_gather``) overflow the queue, and the kernel drops handshakes the client
then retries with exponential backoff, for minutes. werkzeug's server answers
each request on a thread of its own, listens with a queue of 128, keeps
HTTP/1.1 connections alive, sends ``Date`` and streams chunked bodies (what
CacheControl's chunked path needs). Each server gets a free port, so parallel
test workers never clash.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from werkzeug.serving import make_server

__all__ = ["serving"]

# One line per request at INFO otherwise (aiohttp-client-cache's test modules set the root logger to INFO).
logging.getLogger("werkzeug").setLevel(logging.WARNING)


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 on a free port; yields ``http://localhost:<port>/``, by name: aiohttp
    keeps no cookie set by a host given as an IP address (its ``CookieJar(unsafe=False)``)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name=f"local-server-{server.server_port}", daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
