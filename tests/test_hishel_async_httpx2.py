"""hishel's own `tests/test_async_httpx2.py`, unchanged, on our storages on every engine (:mod:`hishel_suite`)."""

import pytest

pytest.importorskip("hishel", reason="hishel 2.0 needs Python 3.10 or later")
import hishel_suite  # noqa: E402 - after the skip

globals().update(hishel_suite.load("test_async_httpx2"))
